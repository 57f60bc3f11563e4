"""What `sagactl top` shows, gathered live: the stream as it grows, the consumers, every replica.

Two sources, both read only. The stream, followed from a little before its end by our own
ordered consumer (streams/reader.py: a NATS restart neither loses nor repeats an event): rates,
latencies (stream time of CREATED_SALE to the terminal event) and the latest sagas come from
it. A sample every interval: the stream's per-subject counts (sagas in flight = created minus
ended, exact whatever the window), the consumers' pending and redelivered counts, the dead-letter
stream, and each replica's /metrics (outbox backlog, dead letters, CPU, memory).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from participants.contract import CREATED_SALE, DEAD_LETTER_STREAM, STREAM, SUBJECTS, TERMINAL_TYPES
from participants.flow import final_status
from sagactl.streams.reader import StartAt, StreamEvent, StreamReader

WINDOW_S = 10.0  # rates and percentiles over this much of the stream's recent time
BACKFILL = 500  # messages read from before the end at start, so the screen is not empty
MAX_SAGAS = 2000  # sagas kept in memory (their events, for the trace key)
DISCOVER_EVERY_S = 5.0


@dataclass
class Saga:
    sale_id: int
    events: list[StreamEvent] = field(default_factory=list)

    @property
    def status(self) -> str:
        return final_status(e.event_type or "" for e in self.events)

    @property
    def created(self) -> datetime:
        return self.events[0].time

    @property
    def last(self) -> StreamEvent:
        return self.events[-1]


@dataclass
class Replica:
    participant: str
    replica: int
    pid: int | None
    metrics_url: str | None
    outbox: float | None = None
    dead_letters: float | None = None
    cpu_percent: float | None = None
    rss_mb: float | None = None


@dataclass
class TopView:
    """One frame's figures."""

    nats_error: str | None = None
    events_per_s: float = 0.0
    sagas_per_s: float = 0.0
    in_flight: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    consumers: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int | None = None
    replicas: list[Replica] = field(default_factory=list)
    latest: list[Saga] = field(default_factory=list)
    stuck: list[Saga] = field(default_factory=list)


class TopCollector:
    """Keeps the figures of a running system current; `view()` is the frame to draw now."""

    def __init__(self, nc: Any, expected: list[str], stuck_after_s: float = 30.0) -> None:
        self.nc = nc
        self.expected = expected
        self.stuck_after_s = stuck_after_s
        self.sagas: OrderedDict[int, Saga] = OrderedDict()
        self._recent: deque[StreamEvent] = deque()  # events of the last WINDOW_S, by stream time
        self._ended: deque[tuple[datetime, float]] = deque()  # (stream time, saga ms) of the last WINDOW_S
        self._sample = TopView()
        self._replicas: dict[tuple[str, int], Replica] = {}
        self._cpu: dict[tuple[str, int], tuple[float, float]] = {}
        self._discovered = 0.0
        self._reader: StreamReader | None = None
        self._end = -1  # the stream's last sequence when following began

    async def follow(self) -> None:
        """Read the stream from a little before its end, for ever (a NATS restart included)."""
        while True:
            try:
                last = (await self.nc.jetstream().stream_info(STREAM)).state.last_seq
                break
            except Exception as exc:  # no stream yet, or NATS away: say so, ask again
                self._sample.nats_error = f"cannot read the {STREAM} stream: {exc or type(exc).__name__}"
                await asyncio.sleep(1.0)
        self._end = last
        self._reader = StreamReader(self.nc, start=StartAt(sequence=max(last - BACKFILL, 1)), name="sagactl-top")
        async for event in self._reader.read(follow=True):
            self._add(event)

    def _add(self, event: StreamEvent) -> None:
        sale_id = event.field("sale_id")
        if not isinstance(sale_id, int):
            return
        saga = self.sagas.get(sale_id)
        if saga is None:
            saga = self.sagas[sale_id] = Saga(sale_id)
            if len(self.sagas) > MAX_SAGAS:
                self.sagas.popitem(last=False)
        saga.events.append(event)
        self.sagas.move_to_end(sale_id)
        self._recent.append(event)
        if event.event_type in TERMINAL_TYPES and saga.events[0].event_type == CREATED_SALE:
            self._ended.append((event.time, (event.time - saga.created).total_seconds() * 1000))

    def caught_up(self) -> bool:
        """Whether what the stream held when following began has been read."""
        return self._end == 0 or (self._reader is not None and self._reader.position >= self._end)

    async def sample(self) -> None:
        """Ask NATS and every replica for their figures now; keep the last good ones on failure."""
        view = self._sample
        try:
            js = self.nc.jetstream()
            info = await js.stream_info(STREAM, subjects_filter="saga.>")
            counts = info.state.subjects or {}
            created = counts.get(SUBJECTS[CREATED_SALE], 0)
            view.in_flight = max(created - sum(counts.get(SUBJECTS[t], 0) for t in TERMINAL_TYPES), 0)
            view.consumers = [{"name": c.name, "pending": c.num_pending, "ack_pending": c.num_ack_pending,
                               "redelivered": c.num_redelivered} for c in await js.consumers_info(STREAM)
                              if c.config.durable_name]  # the participants', not readers such as ours
            try:
                view.dead_letters = (await js.stream_info(DEAD_LETTER_STREAM)).state.messages
            except Exception:
                view.dead_letters = 0
            if time.monotonic() - self._discovered > DISCOVER_EVERY_S:
                await self._discover()
            await self._scrape()
            view.nats_error = None
        except Exception as exc:
            view.nats_error = f"NATS: {type(exc).__name__}: {exc}".rstrip(": ")

    async def _discover(self) -> None:
        from sagactl.client import SagaClient

        answers = await SagaClient(self.nc).participants(expected=self.expected)
        found = {}
        for a in answers:
            key = (a["participant"], int(a.get("replica") or 1))
            known = self._replicas.get(key)
            found[key] = known if known and known.pid == a.get("pid") else Replica(key[0], key[1], a.get("pid"), a.get("metrics_url"))
        self._replicas = dict(sorted(found.items()))
        self._discovered = time.monotonic()

    async def _scrape(self) -> None:
        from sagactl.system.metrics import scrape
        from prometheus_client.parser import text_string_to_metric_families

        async def one(key: tuple[str, int], replica: Replica) -> None:
            if not replica.metrics_url:
                return
            try:
                text = await asyncio.to_thread(scrape, replica.metrics_url, 1.0)
            except Exception:
                replica.outbox = replica.dead_letters = replica.cpu_percent = replica.rss_mb = None
                return
            values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            replica.outbox = values.get("sagactl_outbox_backlog")
            replica.dead_letters = values.get("sagactl_dead_letters_total")
            rss = values.get("process_resident_memory_bytes")
            replica.rss_mb = None if rss is None else rss / 1e6
            cpu, now = values.get("process_cpu_seconds_total"), time.monotonic()
            before = self._cpu.get(key)
            if cpu is not None:
                if before and now > before[1]:
                    replica.cpu_percent = max(cpu - before[0], 0.0) / (now - before[1]) * 100
                self._cpu[key] = (cpu, now)

        await asyncio.gather(*(one(k, r) for k, r in self._replicas.items()))

    def view(self) -> TopView:
        now = datetime.now(timezone.utc)
        while self._recent and (now - self._recent[0].time).total_seconds() > WINDOW_S:
            self._recent.popleft()
        while self._ended and (now - self._ended[0][0]).total_seconds() > WINDOW_S:
            self._ended.popleft()
        view = self._sample
        view.events_per_s = len(self._recent) / WINDOW_S
        view.sagas_per_s = len(self._ended) / WINDOW_S
        durations = sorted(ms for _, ms in self._ended)
        view.p50_ms = durations[int(0.5 * (len(durations) - 1))] if durations else None
        view.p99_ms = durations[int(0.99 * (len(durations) - 1))] if durations else None
        view.replicas = list(self._replicas.values())
        sagas = list(self.sagas.values())
        view.latest = sagas[-12:][::-1]
        view.stuck = [s for s in sagas if s.status == "PENDING"
                      and (now - s.last.time).total_seconds() > self.stuck_after_s][-8:]
        return view

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
