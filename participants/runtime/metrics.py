"""Prometheus metrics of a participant process, served on /metrics (prometheus-client).

Every participant process serves them by default on a free loopback port (env
`SAGACTL_METRICS_PORT` fixes the port, `SAGACTL_METRICS_HOST` binds elsewhere,
`SAGACTL_METRICS=off` turns them off) and says where in its discovery and ping replies
(`metrics_url`). docs/observe.md lists the metrics.

The hot path only adds to plain integers and dicts (one call per handled event, which the
runtime already logs, and one histogram observation per batch); the Prometheus families are
built from them when a scrape asks, on the HTTP server's thread. A participant adds its own
metrics with `counter`, `gauge` and `histogram` below: they are served with the runtime's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from participants.contract import TERMINAL_TYPES, type_for_subject
from participants.runtime.settings import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from participants.contract import Event

disable_created_metrics()  # no `_created` series beside every counter: half the scrape, nothing lost
# A participant's own metrics (`counter`, `gauge`, `histogram`): one registry per process.
USER_REGISTRY = CollectorRegistry(auto_describe=True)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
SAGA_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INBOX_SAMPLE_S = 5.0
# Submit times kept for the saga duration: oldest forgotten first (a saga that never ends).
MAX_OPEN_SAGAS = 100_000


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter of your participant's own, served on its /metrics beside the runtime's."""
    return Counter(name, documentation, labelnames, registry=USER_REGISTRY)


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    return Gauge(name, documentation, labelnames, registry=USER_REGISTRY)


def histogram(name: str, documentation: str, labelnames: Sequence[str] = (),
              buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Histogram:
    return Histogram(name, documentation, labelnames, buckets=buckets, registry=USER_REGISTRY)


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port

    @classmethod
    def from_env(cls) -> "MetricsSettings":
        enabled = os.environ.get("SAGACTL_METRICS", "on").strip().lower() not in ("off", "0", "false", "no")
        raw_port = os.environ.get("SAGACTL_METRICS_PORT", "").strip()
        try:
            port = int(raw_port) if raw_port else 0
        except ValueError:
            raise ConfigError(f"SAGACTL_METRICS_PORT must be a port number, not {raw_port!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"SAGACTL_METRICS_PORT must be between 0 and 65535, not {port}")
        return cls(enabled, os.environ.get("SAGACTL_METRICS_HOST", "").strip() or "127.0.0.1", port)


class RuntimeMetrics(Collector):
    """What the runtime counts for one participant process; also its Prometheus collector."""

    def __init__(self, participant: str, settings: MetricsSettings | None = None) -> None:
        self.participant = participant
        self.settings = settings or MetricsSettings()
        self.url: str | None = None
        self.outbox_backlog: Callable[[], int] = lambda: 0
        self.inbox_rows = 0
        self._handled: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._sagas: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._redeliveries = 0
        self._dead_letters = 0
        self._submitted: dict[int, float] = {}
        self._server = None
        self._sampler: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        self.registry.register(USER_REGISTRY)
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open fds
        label = (participant,)
        self._batch_seconds = Histogram("sagactl_handle_seconds", "Seconds to handle one pulled batch (apply, commit, hand to the relay).",
                                        ["participant"], buckets=BATCH_SECONDS_BUCKETS, registry=self.registry).labels(*label)
        self._batch_size = Histogram("sagactl_batch_size", "Messages in one pulled batch.", ["participant"],
                                     buckets=BATCH_SIZE_BUCKETS, registry=self.registry).labels(*label)
        self._saga_seconds = Histogram("sagactl_saga_duration_seconds", "Seconds from a saga's submit to its terminal event (sale service).",
                                       ["participant"], buckets=SAGA_SECONDS_BUCKETS, registry=self.registry).labels(*label)

    # -- the hot path: plain arithmetic -----------------------------------------------------
    def batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def handled(self, event_type: str, applied: bool, emitted: Sequence[Event], deliveries: int) -> None:
        self._handled[(event_type, "applied" if applied else "duplicate")] += 1
        if deliveries > 1:
            self._redeliveries += 1
        for event in emitted:
            if event.type in TERMINAL_TYPES:
                self._ended(event)

    def settled(self, subject: str, action: str, deliveries: int) -> None:
        """An event not acked: naked to retry later, or dead-lettered (its body may be unreadable)."""
        event_type = type_for_subject(subject) or "unknown"
        self._handled[(event_type, "retried" if action == "retry" else "dead_lettered")] += 1
        if deliveries > 1:
            self._redeliveries += 1
        if action != "retry":
            self._dead_letters += 1

    def requested(self, emitted: Sequence[Event]) -> None:
        """Events a control request emitted (a submit): each starts a saga's clock."""
        now = time.monotonic()
        for event in emitted:
            if len(self._submitted) >= MAX_OPEN_SAGAS:
                self._submitted.pop(next(iter(self._submitted)))
            self._submitted[event.sale_id] = now

    def _ended(self, event: Event) -> None:
        status = event.type.removesuffix("_SALE") if event.type.endswith("_SALE") else event.type
        self._sagas[(status, event.reason or "")] += 1
        started = self._submitted.pop(event.sale_id, None)
        if started is not None:  # known only to the replica that took the submit, since it started
            self._saga_seconds.observe(time.monotonic() - started)

    def sample_inbox(self, count: Callable[[], int], stopping: asyncio.Event) -> None:
        """Count the inbox every few seconds on the event loop (between batches, never beside one)."""
        self._sampler = asyncio.get_running_loop().create_task(self._sample_inbox(count, stopping))

    async def _sample_inbox(self, count: Callable[[], int], stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                self.inbox_rows = count()
            except Exception:  # a locked or unreachable database: keep the last figure
                pass
            try:
                await asyncio.wait_for(stopping.wait(), INBOX_SAMPLE_S)
            except asyncio.TimeoutError:
                pass

    # -- serving ----------------------------------------------------------------------------
    def serve(self) -> str | None:
        """Start the /metrics server (a daemon thread); return its URL, None when metrics are off."""
        if not self.settings.enabled:
            return None
        self._server, _ = start_http_server(self.settings.port, addr=self.settings.host, registry=self.registry)
        host, port = self._server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}/metrics"
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() returns once serve_forever looks at its flag, which it does between
        # connections or every 0.5 s: a connection of our own makes that now, not half a
        # second into every graceful stop.
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        address = server.server_address[:2]
        deadline = time.monotonic() + 1.0
        while stopper.is_alive() and time.monotonic() < deadline:
            try:
                socket.create_connection(address, timeout=0.1).close()
            except OSError:
                pass
            stopper.join(0.02)
        server.server_close()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Build the families from the plain counts (on the scrape's thread: copy, then read)."""
        name = self.participant
        handled = CounterMetricFamily("sagactl_events_handled", "Events this participant handled, by type and outcome.",
                                      labels=["participant", "type", "outcome"])
        for (event_type, outcome), count in dict(self._handled).items():
            handled.add_metric([name, event_type, outcome], count)
        yield handled
        sagas = CounterMetricFamily("sagactl_sagas", "Sagas that reached their terminal event here, by status and reason.",
                                    labels=["participant", "status", "reason"])
        for (status, reason), count in dict(self._sagas).items():
            sagas.add_metric([name, status, reason], count)
        yield sagas
        yield _single(CounterMetricFamily, "sagactl_redeliveries", "Deliveries of an event after its first.", name, self._redeliveries)
        yield _single(CounterMetricFamily, "sagactl_dead_letters", "Events this participant parked in the dead-letter stream.",
                      name, self._dead_letters)
        yield _single(GaugeMetricFamily, "sagactl_outbox_backlog", "Committed events not yet stored in the stream.",
                      name, self.outbox_backlog())
        yield _single(GaugeMetricFamily, "sagactl_inbox_rows", "Rows in the inbox (event ids handled, until pruned); sampled.",
                      name, self.inbox_rows)


def _single(kind: type, metric: str, documentation: str, participant: str, value: float):  # type: ignore[no-untyped-def]
    family = kind(metric, documentation, labels=["participant"])
    family.add_metric([participant], value)
    return family


def count_inbox(connection: "Connection") -> int:
    """Rows in the inbox table, in a short transaction of their own."""
    from sqlalchemy import text

    from participants.runtime.database import InboxEntry

    with connection.begin():
        return int(connection.execute(text(f"SELECT count(*) FROM {InboxEntry.__tablename__}")).scalar_one())
