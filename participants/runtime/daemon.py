"""The participant process: its lifecycle and the consume loop (apply in one transaction, publish, ack).

Order of work for a pulled batch: all its events are applied in one transaction (one by one,
each in its own, when the batch fails: a poison event cannot roll back its neighbours); the
committed events go to the outbox relay, and the consumed messages are acked once the relay
has them stored in the stream. An ack is only ever sent after the commit and the publish it
confirms. While the relay waits for PubAcks the loop applies the next batch. A batch's way
from messages to settled is batches.py; the control endpoints live in control.py; what a failed
event becomes (retry, dead letter) in settle.py; the kept database connection in kept.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.exc import ArgumentError, OperationalError

from participants.contract import STREAM
from participants.runtime import broker, jetstream, recovery
from participants.runtime.batches import BatchHandler
from participants.runtime.control import ControlEndpoints
from participants.runtime.crashpoints import CrashPoints
from participants.runtime.database import OutdatedSchema, create_schema, make_engine, seed_once
from participants.runtime.eventlog import EventLog
from participants.runtime.faults import with_faults
from participants.runtime.kept import KeptConnection
from participants.runtime.metrics import MetricsSettings, RuntimeMetrics, count_inbox
from participants.runtime.outbox import OutboxRelay
from participants.runtime.participant import Participant, RequestHandler, Simulation
from participants.runtime.retention import Retention
from participants.runtime.settings import ConfigError, Settings
from participants.runtime.settle import MAX_RETRY_DELAY_S, Settler, database_failed
from participants.runtime.tracing import Tracing
from participants.runtime.transaction import run_request, set_max_event_bytes

FETCH_TIMEOUT_S = 0.5
PULL_EXPIRES_S = 5.0
DECLARE_TIMEOUT_S = 15.0
# Replicas creating one new SQLite file together wait for each other's schema lock this long.
STARTUP_BUSY_TIMEOUT_S = 30.0
# Stop pulling while this many committed events wait for their PubAck (NATS slow or away).
MAX_RELAY_BACKLOG = 8192


class ParticipantDaemon:
    def __init__(self, participant: Participant, settings: Settings) -> None:
        self.participant = with_faults(participant)  # injected faults, when the environment sets any
        self.settings = settings
        self.log = EventLog(participant.name, settings.replica)
        self.crash = CrashPoints(settings.crash_point)
        self.metrics = RuntimeMetrics(participant.name, MetricsSettings.from_env())
        self.tracing = Tracing(participant.name, settings.replica)  # off unless OTEL_* variables ask
        # The busy timeout bounds how long the event loop can wait for a lock: short, with the
        # retry by a delayed NAK (settle.py); only the start (schema, seed) waits longer.
        self.engine = make_engine(settings.db_url, settings.sqlite_synchronous, settings.sqlite_busy_timeout_s)
        self.simulation: Simulation | None = None
        if settings.raw:
            if participant.simulate is None:
                raise broker.BrokerUnavailable(f"{participant.name} cannot run raw: it declares no simulation")
            self.simulation = participant.simulate()
        self.stopping = asyncio.Event()
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.relay: OutboxRelay | None = None
        self.blind_within_s = recovery.blind_limit_s(broker.DUPLICATE_WINDOW_S)  # from the stream's window, once asked
        self.puller: jetstream.PullConsumer | None = None
        self.settler: Settler  # once connected
        self.db = KeptConnection(self.engine)
        self.batches = BatchHandler(self)
        self.lost: str | None = None  # why the NATS connection closed for good, if it did

    # -- start and stop -------------------------------------------------------------------
    async def serve(self) -> None:
        starting = make_engine(self.settings.db_url, self.settings.sqlite_synchronous, STARTUP_BUSY_TIMEOUT_S)
        try:
            create_schema(starting, self.participant.all_tables)
            if seed_once(starting, self.participant.seed()):
                self.log.write("seeded")
        finally:
            starting.dispose()
        self.db.get()
        self.nc = await broker.connect(
            self.settings.nats_urls, f"{self.participant.name}-{self.settings.replica}", on_event=self._on_connection
        )
        self.js = self.nc.jetstream()
        set_max_event_bytes(self.nc.max_payload)  # a handler's event larger than that is refused, not queued
        self.settler = Settler(self.participant.name, self.nc, self.js, self.log)
        durable = self.participant.name
        await self._declare(durable)
        settings = self.settings
        window = await self._duplicate_window()
        retention = Retention.for_consumer(
            window, settings.max_deliver, settings.ack_wait_s, MAX_RETRY_DELAY_S, settings.outbox_keep_s
        )
        self.blind_within_s = recovery.blind_limit_s(window)  # a duplicate's unsent rows younger than this are republished
        self.relay = OutboxRelay(None if settings.raw else self.engine, self.nc, self.crash, self.log, retention,
                                 consumer=durable, duplicate_window_s=window, slot=str(settings.replica))
        await self.relay.start()  # what a previous process in this slot never marked sent
        self.metrics.outbox_backlog = lambda: self.relay.backlog  # type: ignore[union-attr]
        self.metrics.serve()
        if not settings.raw:
            self.metrics.sample_inbox(lambda: count_inbox(self.db.get()), self.stopping)
        await ControlEndpoints(self).subscribe()
        self.puller = jetstream.PullConsumer(self.nc, STREAM, durable, settings.batch_size, PULL_EXPIRES_S)
        await self.puller.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        relay_task = asyncio.create_task(self.relay.run(self.stopping))
        periodic = self.participant.periodic
        periodic_task = asyncio.create_task(self._periodic(*periodic)) if periodic and not settings.raw else None
        self.log.write("ready", pid=os.getpid(), subjects=self.participant.subjects, raw=settings.raw,
                       replicas=settings.replicas, batch=settings.batch_size, metrics_url=self.metrics.url)
        try:
            await self._consume(self.puller)
        finally:
            if periodic_task is not None:
                periodic_task.cancel()
            await self.puller.stop()
            try:
                await asyncio.wait_for(relay_task, timeout=3)  # publishes and acks what is queued
            except Exception:
                relay_task.cancel()
            # Everything is acked and published by now; a drain would wait for the pull requests
            # to expire, so flush what is buffered and close.
            try:
                await self.nc.flush(timeout=2)
            except Exception:
                pass
            try:
                await self.nc.close()
            except Exception:  # stopped while NATS was away: the client's transport is already gone
                pass
            self.db.reset()
            self.engine.dispose()
            self.metrics.stop()
            self.tracing.shutdown()
            self.log.write("stopped")
        if self.lost is not None:
            raise broker.BrokerUnavailable(f"the NATS connection closed for good: {self.lost}")

    async def _declare(self, durable: str) -> None:
        """Create the streams and this participant's consumer, waiting out a server still starting."""
        assert self.js is not None
        settings = self.settings
        config = broker.consumer_config(
            durable, self.participant.subjects, settings.ack_wait_s, only_new=not self.participant.replay_history
        )
        deadline = time.monotonic() + DECLARE_TIMEOUT_S
        while True:
            try:
                await broker.ensure_streams(self.js, settings.stream_replicas, settings.stream_max_age_s, settings.stream_max_bytes,
                                            settings.stream_duplicate_window_s)
                await broker.ensure_consumer(self.js, config)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise broker.BrokerUnavailable(f"JetStream is not usable: {broker.describe(exc)}") from None
                await asyncio.sleep(0.2)

    async def _duplicate_window(self) -> float:
        """The SAGA stream's duplicate window as the server has it (another process may have created it)."""
        assert self.js is not None
        try:
            return float((await self.js.stream_info(STREAM)).config.duplicate_window or broker.DUPLICATE_WINDOW_S)
        except Exception:
            return broker.DUPLICATE_WINDOW_S

    async def _on_connection(self, what: str) -> None:
        if what == "reconnected" and self.puller is not None:
            self.puller.forget_requests()
        self.log.write("nats", state=what)
        if what == "closed" and not self.stopping.is_set():
            # nats-py gave up (a protocol error, a server that closed us): nothing is consumed
            # any more, so exit non-zero for a supervisor to see, rather than run off-line.
            self.lost = str(self.nc.last_error or "closed by the client") if self.nc else "closed"
            self.stopping.set()

    @property
    def consuming(self) -> bool:
        """Connected, pulling, and served by the consumer lately (the ping reply says so)."""
        return (self.nc is not None and self.nc.is_connected and self.puller is not None
                and not self.stopping.is_set() and self.puller.served_recently())

    async def _periodic(self, every_s: float, handler: RequestHandler) -> None:
        """The participant's periodic work, at once at start and then every `every_s` seconds."""
        while not self.stopping.is_set():
            try:
                _, _, messages = run_request(self.db.get(), handler, {})
            except Exception as exc:  # its database failing: try again next time
                self.log.write("periodic_failed", error=repr(exc))
                self.db.reset(reopen=database_failed(exc))
                messages = []
            if messages:
                self.relay.submit(messages)  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self.stopping.wait(), every_s)
            except asyncio.TimeoutError:
                pass

    # -- consuming -----------------------------------------------------------------------
    async def _consume(self, puller: jetstream.PullConsumer) -> None:
        assert self.relay is not None
        while not self.stopping.is_set():
            # With messages buffered every await below can complete without suspending, and a
            # loop that never suspends never runs the SIGTERM handler: yield once per batch.
            await asyncio.sleep(0)
            if self.relay.backlog > MAX_RELAY_BACKLOG:  # NATS slow or away: stop taking more work
                await asyncio.sleep(0.01)
                continue
            try:
                msgs = await puller.next_batch(FETCH_TIMEOUT_S)
            except Exception as exc:  # disconnected, server restarting: the client reconnects
                self.log.write("fetch_retry", error=broker.describe(exc))
                await asyncio.sleep(0.5)
                continue
            while puller.problems:
                self.log.write("pull_status", description=puller.problems.popleft())
            if msgs:
                await self.batches.handle(msgs)


def run(participant: Participant, settings: Settings | None = None) -> None:
    """Run a participant until SIGTERM or SIGINT; the entry point of every participant process."""
    try:
        settings = settings or Settings.from_env(participant.name)
        daemon = ParticipantDaemon(participant, settings)
    except (ConfigError, ArgumentError) as exc:  # before any database or connection is opened: nothing changed
        EventLog(participant.name).write("fatal", error=f"configuration error: {exc}")
        raise SystemExit(2) from None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(daemon.serve())
    except broker.BrokerUnavailable as exc:
        daemon.log.write("fatal", error=str(exc))
        raise SystemExit(3) from None
    except OutdatedSchema as exc:  # a database made by an older version: no migration
        daemon.log.write("fatal", error=f"database: {exc}")
        raise SystemExit(2) from None
    except OperationalError as exc:  # the database is unreachable or refused us at start
        daemon.log.write("fatal", error=f"database: {' '.join(str(exc.orig).split())}")
        raise SystemExit(3) from None

