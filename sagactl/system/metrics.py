"""Read every participant's /metrics and merge them: what `sagactl metrics` prints.

Participants say where their metrics are in their discovery reply (`metrics_url`), so this
finds the replicas on any machine the same way `participant list` does. Replicas of one
participant are summed (counters, gauges and histogram buckets alike: every figure the runtime
exports is additive); each sample keeps its `participant` label, which the process metrics
(`process_cpu_seconds_total`, `process_resident_memory_bytes`) are given here.
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 2.0


@dataclass
class Merged:
    """The samples of all participants summed by (name, labels), and which replicas answered."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted({dict(ls)[label] for (n, ls) in self.samples if n == name and label in dict(ls)})

    def quantile(self, name: str, q: float, **labels: str) -> float | None:
        """A quantile from a histogram's summed buckets (the upper bound of the bucket it falls in)."""
        buckets: dict[float, float] = {}
        for bound in {dict(ls)["le"] for (n, ls) in self.samples if n == f"{name}_bucket"}:
            buckets[float(bound)] = self.value(f"{name}_bucket", le=bound, **labels)
        total = buckets.get(float("inf"), 0.0)
        if not total:
            return None
        for bound in sorted(buckets):
            if buckets[bound] >= q * total:
                return bound
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "participants": self.sources,
            "samples": [{"name": n, "labels": dict(ls), "value": v} for (n, ls), v in sorted(self.samples.items())],
        }


def scrape(url: str, timeout: float = SCRAPE_TIMEOUT_S) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an http URL a participant gave)
        return response.read().decode("utf-8")


def merge(answers: list[dict[str, Any]], texts: dict[str, str | Exception]) -> Merged:
    """Sum the scraped texts of the discovery `answers` (participant, replica, metrics_url)."""
    merged = Merged()
    for answer in sorted(answers, key=lambda a: (a.get("participant", ""), a.get("replica") or 0)):
        url = answer.get("metrics_url")
        source = {"participant": answer["participant"], "replica": answer.get("replica"), "metrics_url": url}
        merged.sources.append(source)
        text = texts.get(url or "")
        if text is None:
            source["error"] = "metrics are off" if not url else "not scraped"
            continue
        if isinstance(text, Exception):
            source["error"] = f"{type(text).__name__}: {text}"
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                labels.setdefault("participant", answer["participant"])
                key = (sample.name, tuple(sorted(labels.items())))
                merged.samples[key] = merged.samples.get(key, 0.0) + sample.value
    return merged


async def scrape_all(answers: list[dict[str, Any]]) -> Merged:
    """Scrape every replica at once (each in a thread), then merge."""
    urls = [a["metrics_url"] for a in answers if a.get("metrics_url")]

    async def one(url: str) -> str | Exception:
        try:
            return await asyncio.to_thread(scrape, url)
        except Exception as exc:  # a replica that stopped since it answered: say so, keep the others
            return exc

    results = await asyncio.gather(*(one(u) for u in urls))
    return merge(answers, dict(zip(urls, results)))


async def metrics_urls(nc: Any, running: set[tuple[str, int]], window: float = 0.5) -> dict[tuple[str, int], str | None]:
    """(participant, replica) -> its metrics URL (None: off), from the discovery replies.

    Returns as soon as every `running` process answered (no grace period: `status` stays fast),
    else after `window` seconds with whatever answered.
    """
    import orjson

    from participants.contract import DISCOVER_SUBJECT

    found: dict[tuple[str, int], str | None] = {}
    complete = asyncio.Event()

    async def collect(msg: Any) -> None:
        try:
            answer = orjson.loads(msg.data)
            found[(answer["participant"], int(answer.get("replica") or 1))] = answer.get("metrics_url")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if running <= set(found):
            complete.set()

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(DISCOVER_SUBJECT, b"{}", reply=inbox)
        try:
            await asyncio.wait_for(complete.wait(), window if running else 0)
        except asyncio.TimeoutError:
            pass
    finally:
        await subscription.unsubscribe()
    return found


def file_sd_targets(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prometheus `file_sd_configs` entries: one per replica that serves metrics."""
    from urllib.parse import urlsplit

    result = []
    for source in sources:
        if not source.get("metrics_url"):
            continue
        url = urlsplit(source["metrics_url"])
        result.append({"targets": [url.netloc],
                       "labels": {"participant": source["participant"], "replica": str(source["replica"]),
                                  "__metrics_path__": url.path}})
    return result
