"""One pulled batch, from messages to settled: parse, apply, hand to the relay, settle the rest.

All events of a batch are applied in one transaction; when that fails the events are applied
one by one (a poison event cannot roll back its neighbours). When the database itself fails
(settle.database_failed) nothing is tried alone: the events are naked with backoff and the
connection reopened. The committed events go to the outbox relay, and the consumed messages
are acked once the relay has them stored in the stream.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from sqlalchemy.exc import IntegrityError

from participants.contract import ContractError, Event, parse_event, replay_subject
from participants.runtime import jetstream
from participants.runtime.crashpoints import AFTER_COMMIT, MID_BATCH
from participants.runtime.participant import as_events
from participants.runtime.settle import Verdict, database_failed, failure_action
from participants.runtime.transaction import (
    Applied,
    Message,
    Outcome,
    apply_batch,
    apply_event,
    outbox_messages,
    seen,
)

if TYPE_CHECKING:
    from participants.runtime.daemon import ParticipantDaemon


class BatchHandler:
    """Handles the batches of the daemon it serves (its database, relay, settler and log)."""

    def __init__(self, daemon: "ParticipantDaemon") -> None:
        self.daemon = daemon

    async def handle(self, msgs: list[Msg]) -> None:
        """Apply a batch, hand its events to the relay with the acks to send once they are stored."""
        started = time.perf_counter()
        events: list[tuple[Msg, Event]] = []
        settled: list[tuple[Msg, Verdict]] = []
        for msg in msgs:
            try:
                events.append((msg, self._parse(msg)))
            except ContractError as exc:
                settled.append((msg, Verdict("dead", f"poison: {exc}")))
        to_ack: list[Msg] = []
        messages: list[Message] = []
        try:
            batch = self._apply_batch(events) if events else None
        except Exception as exc:  # the database failed, not an event: all of them again later
            batch, events = None, self._database_failed(exc, events, settled)
        if batch is not None:
            outcomes, messages = batch
            per_event_ms = (time.perf_counter() - started) * 1000 / len(events)
            for (msg, event), outcome in zip(events, outcomes):
                to_ack.append(msg)
                self._log_outcome(msg, event, outcome, per_event_ms)
        else:
            for index, (msg, event) in enumerate(events):
                try:
                    verdict, emitted = self._apply_one(msg, event)
                except Exception as exc:
                    self._database_failed(exc, events[index:], settled)
                    break
                if verdict.action == "ack":
                    to_ack.append(msg)
                    messages.extend(outbox_messages(emitted))
                    if index == 0 and len(events) > 1:
                        self.daemon.crash.reach(MID_BATCH)
                else:
                    settled.append((msg, verdict))
        if os.environ.get("SAGACTL_DEBUG_BATCH"):
            self.daemon.log.write("batch", size=len(msgs), age_ms=round((time.time() - int(msgs[0].reply.split(".")[7]) / 1e9) * 1000, 2),
                           took_ms=round((time.perf_counter() - started) * 1000, 2), backlog=self.daemon.relay.backlog)
        self.daemon.log.flush()
        self.daemon.metrics.batch(len(msgs), time.perf_counter() - started)
        if to_ack:
            self.daemon.crash.reach(AFTER_COMMIT)
            replies = [msg.reply for msg in to_ack]
            self.daemon.relay.submit(messages, then=lambda: self.daemon.settler.ack(replies))  # type: ignore[union-attr]
        for msg, verdict in settled:
            self.daemon.metrics.settled(msg.subject, verdict.action, jetstream.delivery_info(msg.reply)[1])
            if self.daemon.tracing.enabled:
                self.daemon.tracing.settled(msg.headers, msg.data, verdict.action, jetstream.delivery_info(msg.reply)[1])
            await self.daemon.settler.settle(msg, verdict)

    def _apply_batch(self, events: list[tuple[Msg, Event]]) -> tuple[list[Outcome], list[Message]] | None:
        """All events in one transaction (or, raw, in memory); None when the batch failed as a
        whole, raising when the database itself failed."""
        if self.daemon.simulation is not None:
            outcomes = [Outcome(Applied.DONE, as_events(self.daemon.simulation.handle(e))) for _, e in events]
            return outcomes, [m for o in outcomes for m in outbox_messages(o.emitted)]
        assert self.daemon.relay is not None
        sent = self.daemon.relay.take_sent()
        try:
            result = apply_batch(self.daemon.db.get(), self.daemon.participant, [e for _, e in events], lambda: self.daemon.crash.reach(MID_BATCH),
                                 sent, [jetstream.delivery_info(m.reply)[0] for m, _ in events], self.daemon.blind_within_s)
        except Exception:  # the database failed (the caller naks the batch): mark those sent later
            self.daemon.relay.give_back(sent)
            raise
        if result is None:
            self.daemon.relay.give_back(sent)
            self.daemon.db.reset()
            return None
        return result.outcomes, result.messages

    def _parse(self, msg: Msg) -> Event:
        event = parse_event(msg.data)
        if event.type not in self.daemon.participant.handlers:
            raise ContractError(f"{self.daemon.participant.name} does not handle {event.type}")
        if msg.subject != event.subject and msg.subject != replay_subject(self.daemon.participant.name):
            raise ContractError(f"{event.type} published on {msg.subject}, expected {event.subject}")
        return event

    def _apply_one(self, msg: Msg, event: Event) -> tuple[Verdict, list[Event]]:
        """Apply one event in its own transaction and say what to tell JetStream about it."""
        started = time.perf_counter()
        _, deliveries = jetstream.delivery_info(msg.reply)
        try:
            outcome = apply_event(self.daemon.engine, self.daemon.participant, event, jetstream.delivery_info(msg.reply)[0], self.daemon.blind_within_s)
        except Exception as exc:
            if database_failed(exc):
                raise  # the batch's caller naks this event and the rest
            if isinstance(exc, IntegrityError) and self._applied_elsewhere(event):
                # A racing replica committed this event first and the handler's own insert hit
                # its row: not this event's failure; the redelivery sees it as a duplicate.
                return Verdict("retry", "raced with another replica"), []
            error = f"{type(exc).__name__}: {exc}"
            self.daemon.log.write(
                "failed", flush=False, event_id=event.event_id, sale_id=event.sale_id, type=event.type,
                deliveries=deliveries, error=error,
            )
            return Verdict(failure_action(exc, deliveries, self.daemon.settings.max_deliver), error), []
        if outcome.applied is Applied.RACED:
            return Verdict("retry", "raced with another replica"), []
        self._log_outcome(msg, event, outcome, (time.perf_counter() - started) * 1000)
        return Verdict("ack"), outcome.emitted

    def _applied_elsewhere(self, event: Event) -> bool:
        try:
            with self.daemon.engine.connect() as connection:
                return bool(seen(connection, [event.event_id]))
        except Exception:
            return False

    def _database_failed(self, exc: BaseException, events: list[tuple[Msg, Event]],
                         settled: list[tuple[Msg, Verdict]]) -> list[tuple[Msg, Event]]:
        """Nak these events with backoff and reopen the database: nothing is their fault."""
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        self.daemon.log.write("database_failed", flush=False, events=len(events), error=error)
        for msg, event in events:
            self.daemon.log.write("failed", flush=False, event_id=event.event_id, sale_id=event.sale_id, type=event.type,
                           deliveries=jetstream.delivery_info(msg.reply)[1], error=error, transient=True)
        self.daemon.db.reset(reopen=True)
        settled.extend((msg, Verdict("retry", error)) for msg, _ in events)
        return []

    def _log_outcome(self, msg: Msg, event: Event, outcome: Outcome, ms: float) -> None:
        deliveries = jetstream.delivery_info(msg.reply)[1]
        self.daemon.metrics.handled(event.type, outcome.applied is Applied.DONE, outcome.emitted, deliveries)
        if self.daemon.tracing.enabled:
            self.daemon.tracing.handled(msg.headers, event, "applied" if outcome.applied is Applied.DONE else "duplicate",
                                 outcome.emitted, deliveries, ms / 1000)
        self.daemon.log.write(
            "handled" if outcome.applied is Applied.DONE else "duplicate",
            flush=False,
            event_id=event.event_id,
            sale_id=event.sale_id,
            type=event.type,
            emitted=[e.type for e in outcome.emitted],
            reason=next((e.reason for e in outcome.emitted if e.reason), None),
            deliveries=deliveries,
            ms=round(ms, 3),
        )

