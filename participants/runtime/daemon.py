"""The participant process: consume, apply in one transaction, publish, ack; answer control requests.

Order of work for a fetched batch: each event is applied in its own transaction (so one poison
event cannot roll back its neighbours), then the outbox is flushed, then the batch is acked.
An ack is only ever sent after the commit it confirms.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Literal

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from participants.contract import (
    DEAD_LETTER_SUBJECT_ROOT,
    DISCOVER_SUBJECT,
    STREAM,
    SUBJECTS,
    ContractError,
    control_subject,
    parse_event,
)
from participants.runtime import broker
from participants.runtime.crashpoints import AFTER_COMMIT, MID_BATCH, CrashPoints
from participants.runtime.database import create_schema, make_engine, seed_once, table_rows
from participants.runtime.eventlog import EventLog
from participants.runtime.outbox import OutboxRelay
from participants.runtime.participant import Participant
from participants.runtime.settings import Settings
from participants.runtime.transaction import Applied, apply_event, apply_request

FETCH_TIMEOUT_S = 0.5
DECLARE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Verdict:
    action: Literal["ack", "retry", "dead"]
    error: str = ""


def retry_delay(deliveries: int) -> float:
    """Backoff for a failed event: 0.2 s, 0.4 s, 0.8 s ... capped at 5 s."""
    return min(0.2 * 2 ** max(deliveries - 1, 0), 5.0)


class ParticipantDaemon:
    def __init__(self, participant: Participant, settings: Settings) -> None:
        self.participant = participant
        self.settings = settings
        self.log = EventLog(participant.name, settings.replica)
        self.crash = CrashPoints(settings.crash_point)
        self.engine = make_engine(settings.db_url, settings.sqlite_synchronous)
        self.stopping = asyncio.Event()
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.relay: OutboxRelay | None = None

    # -- start and stop -------------------------------------------------------------------
    async def serve(self) -> None:
        create_schema(self.engine, self.participant.all_tables)
        if seed_once(self.engine, self.participant.seed()):
            self.log.write("seeded")
        self.nc = await broker.connect(
            self.settings.nats_urls, f"{self.participant.name}-{self.settings.replica}", on_event=self._on_connection
        )
        self.js = self.nc.jetstream()
        durable = self.participant.name
        await self._declare(durable)
        self.relay = OutboxRelay(self.engine, self.js, self.crash, self.log)
        await self._subscribe_control()
        subscription = await self.js.pull_subscribe_bind(durable=durable, stream=STREAM)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        relay_task = asyncio.create_task(self.relay.run(self.stopping))
        self.relay.wake()  # publish what a previous run committed but never published
        self.log.write("ready", pid=os.getpid(), subjects=self.participant.subjects)
        try:
            await self._consume(subscription)
        finally:
            relay_task.cancel()
            try:
                await asyncio.wait_for(self.relay.flush(), timeout=3)
            except Exception:
                pass
            # Everything is acked and published by now; a drain would wait for the idle pull
            # request to expire, so flush what is buffered and close.
            try:
                await self.nc.flush(timeout=2)
            except Exception:
                pass
            await self.nc.close()
            self.engine.dispose()
            self.log.write("stopped")

    async def _declare(self, durable: str) -> None:
        """Create the streams and this participant's consumer, waiting out a server still starting."""
        assert self.js is not None
        config = broker.consumer_config(
            durable, self.participant.subjects, self.settings.max_deliver, self.settings.ack_wait_s,
            only_new=not self.participant.replay_history,
        )
        deadline = time.monotonic() + DECLARE_TIMEOUT_S
        while True:
            try:
                await broker.ensure_streams(self.js, self.settings.stream_replicas)
                await broker.ensure_consumer(self.js, config)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise broker.BrokerUnavailable(f"JetStream is not usable: {broker.describe(exc)}") from None
                await asyncio.sleep(0.2)

    async def _on_connection(self, what: str) -> None:
        self.log.write("nats", state=what)

    # -- control requests ---------------------------------------------------------------
    async def _subscribe_control(self) -> None:
        assert self.nc is not None
        name = self.participant.name
        await self.nc.subscribe(control_subject(name, "ping"), cb=self._on_ping)
        await self.nc.subscribe(DISCOVER_SUBJECT, cb=self._on_discover)
        await self.nc.subscribe(control_subject(name, "state"), queue=name, cb=self._on_state)
        for verb in self.participant.requests:
            await self.nc.subscribe(control_subject(name, verb), queue=name, cb=self._on_request)

    async def _on_ping(self, msg: Msg) -> None:
        body = {"participant": self.participant.name, "replica": self.settings.replica, "pid": os.getpid()}
        await msg.respond(orjson.dumps(body))

    async def _on_discover(self, msg: Msg) -> None:
        """Say who we are; the event types this process knows let a CLI show events it never imported."""
        body = {
            "participant": self.participant.name,
            "replica": self.settings.replica,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "handles": sorted(self.participant.handlers),
            "requests": sorted(self.participant.requests),
            "tables": [t.__tablename__ for t in self.participant.tables],  # type: ignore[attr-defined]
            "event_types": dict(SUBJECTS),
        }
        await msg.respond(orjson.dumps(body))

    async def _on_state(self, msg: Msg) -> None:
        from sqlmodel import Session

        with Session(self.engine) as session:
            tables = {t.__tablename__: table_rows(session, t) for t in self.participant.tables}  # type: ignore[attr-defined]
            session.rollback()
        await msg.respond(orjson.dumps({"participant": self.participant.name, "tables": tables}))

    async def _on_request(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[1]
        try:
            body = orjson.loads(msg.data)
            if not isinstance(body, dict):
                raise ContractError("request body is not a JSON object")
            reply, emitted = apply_request(self.engine, self.participant.requests[verb], body)
        except (ContractError, orjson.JSONDecodeError) as exc:
            reply, emitted = {"error": str(exc)}, []
        except Exception as exc:
            self.log.write("request_failed", request=verb, error=repr(exc))
            reply, emitted = {"error": f"{self.participant.name} could not handle {verb}: {exc}"}, []
        await msg.respond(orjson.dumps(reply))
        if emitted:
            self.crash.reach(AFTER_COMMIT)
            self.relay.wake()  # type: ignore[union-attr]

    # -- consuming -----------------------------------------------------------------------
    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self.stopping.is_set():
            try:
                msgs = await subscription.fetch(self.settings.batch_size, timeout=FETCH_TIMEOUT_S)
            except nats.errors.TimeoutError:
                continue
            except Exception as exc:  # disconnected, server restarting: the client reconnects
                self.log.write("fetch_retry", error=broker.describe(exc))
                await asyncio.sleep(0.5)
                continue
            await self._handle_batch(msgs)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        verdicts: list[tuple[Msg, Verdict]] = []
        committed = 0
        for msg in msgs:
            verdict = self._handle_one(msg)
            verdicts.append((msg, verdict))
            if verdict.action == "ack":
                committed += 1
                if committed == 1 and len(msgs) > 1:
                    self.crash.reach(MID_BATCH)
        if committed:
            self.crash.reach(AFTER_COMMIT)
            try:
                await self.relay.flush()  # type: ignore[union-attr]
            except Exception as exc:  # rows stay in the outbox; the relay loop retries
                self.log.write("relay_retry", error=broker.describe(exc))
                self.relay.wake()  # type: ignore[union-attr]
        for msg, verdict in verdicts:
            try:
                if verdict.action == "ack":
                    await msg.ack()
                elif verdict.action == "retry":
                    await msg.nak(delay=retry_delay(msg.metadata.num_delivered))
                else:
                    await self._dead_letter(msg, verdict.error)
                    await msg.term()
            except Exception as exc:  # a lost ack means a redelivery, which the inbox absorbs
                self.log.write("settle_failed", action=verdict.action, error=broker.describe(exc))

    def _handle_one(self, msg: Msg) -> "Verdict":
        """Apply one event in its own transaction and say what to tell JetStream about it."""
        started = time.perf_counter()
        deliveries = msg.metadata.num_delivered
        try:
            event = parse_event(msg.data)
            if event.type not in self.participant.handlers:
                raise ContractError(f"{self.participant.name} does not handle {event.type}")
            if msg.subject != event.subject:
                raise ContractError(f"{event.type} published on {msg.subject}, expected {event.subject}")
        except ContractError as exc:
            return Verdict("dead", f"poison: {exc}")
        try:
            outcome = apply_event(self.engine, self.participant, event)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.log.write(
                "failed", event_id=event.event_id, sale_id=event.sale_id, type=event.type,
                deliveries=deliveries, error=error,
            )
            return Verdict("dead" if deliveries >= self.settings.max_deliver else "retry", error)
        if outcome.applied is Applied.RACED:
            return Verdict("retry", "raced with another replica")
        self.log.write(
            "handled" if outcome.applied is Applied.DONE else "duplicate",
            event_id=event.event_id,
            sale_id=event.sale_id,
            type=event.type,
            emitted=[e.type for e in outcome.emitted],
            reason=next((e.reason for e in outcome.emitted if e.reason), None),
            deliveries=deliveries,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return Verdict("ack")

    async def _dead_letter(self, msg: Msg, error: str) -> None:
        """Park an event that cannot be applied, with why, so it blocks nothing and is not lost."""
        assert self.js is not None
        meta = msg.metadata
        headers = {
            "Sagactl-Error": error[:1000],
            "Sagactl-Subject": msg.subject,
            "Sagactl-Participant": self.participant.name,
            "Sagactl-Stream-Seq": str(meta.sequence.stream),
            "Sagactl-Deliveries": str(meta.num_delivered),
            "Nats-Msg-Id": f"dlq-{self.participant.name}-{meta.sequence.stream}",
        }
        await self.js.publish(f"{DEAD_LETTER_SUBJECT_ROOT}.{self.participant.name}", msg.data, headers=headers)
        self.log.write("dead_letter", stream_seq=meta.sequence.stream, error=error)


def run(participant: Participant, settings: Settings | None = None) -> None:
    """Run a participant until SIGTERM or SIGINT; the entry point of every participant process."""
    settings = settings or Settings.from_env(participant.name)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    daemon = ParticipantDaemon(participant, settings)
    try:
        asyncio.run(daemon.serve())
    except broker.BrokerUnavailable as exc:
        daemon.log.write("fatal", error=str(exc))
        raise SystemExit(3) from None

