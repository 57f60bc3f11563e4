"""Handled events and their local transaction: inbox check, handler, inbox row, outbox rows.

This is the heart of "nothing lost, nothing doubled": the consumed event id and the emitted
events commit together with the handler's changes, or not at all.

The daemon applies a fetched batch in one transaction (`apply_batch`): one set-based inbox
check, the handlers in delivery order on one session, the inbox and outbox rows written with
`executemany`, one commit. When anything in the batch fails, nothing of it is committed and the
daemon applies the events one by one (`apply_event`), so one poison event cannot hold back or
roll back its neighbours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import Connection, Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from participants.contract import Event
from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.participant import Participant, RequestHandler

# (subject, payload, event id): an outbox row as the relay publishes it.
Message = tuple[str, bytes, str]

_INBOX = InboxEntry.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]
_SEEN = select(_INBOX.c.event_id).where(_INBOX.c.event_id.in_(bindparam("ids", expanding=True)))


class Applied(enum.Enum):
    DONE = "done"
    DUPLICATE = "duplicate"  # already in the inbox: a redelivery or a republished copy
    RACED = "raced"  # another replica committed the same event first; retry to see it as duplicate


@dataclass
class Outcome:
    applied: Applied
    emitted: list[Event] = field(default_factory=list)


@dataclass
class BatchResult:
    outcomes: list[Outcome]  # one per event, in order
    messages: list[Message]  # the outbox rows committed, in order, to publish


def outbox_messages(events: Sequence[Event]) -> list[Message]:
    return [(e.subject, e.to_bytes(), e.event_id) for e in events]


def write_outbox(connection: Connection, messages: Sequence[Message], now: datetime) -> None:
    if messages:
        connection.execute(
            insert(_OUTBOX),
            [{"event_id": i, "subject": s, "payload": p, "created_at": now} for s, p, i in messages],
        )


def record_outbox(session: Session, events: Sequence[Event]) -> list[Message]:
    """Add events to the outbox in the session's transaction; return them as messages to publish."""
    messages = outbox_messages(events)
    write_outbox(session.connection(), messages, utc_datetime())
    return messages


def apply_batch(
    engine: Engine, participant: Participant, events: Sequence[Event], on_first: Callable[[], None] = lambda: None
) -> BatchResult | None:
    """Apply a batch in one transaction; None (and nothing committed) when any part of it failed.

    `on_first` runs after the first event was applied (the `mid_batch` crash point).
    """
    now = utc_datetime()
    outcomes: list[Outcome] = []
    inbox: list[dict[str, Any]] = []
    messages: list[Message] = []
    try:
        with engine.begin() as connection:
            seen = set(connection.execute(_SEEN, {"ids": [e.event_id for e in events]}).scalars())
            with Session(bind=connection) as session:
                for event in events:
                    if event.event_id in seen:  # includes a second copy inside this batch
                        outcomes.append(Outcome(Applied.DUPLICATE))
                        continue
                    seen.add(event.event_id)
                    emitted = participant.handle(event, session)
                    inbox.append({"event_id": event.event_id, "event_type": event.type, "sale_id": event.sale_id, "handled_at": now})
                    messages.extend(outbox_messages(emitted))
                    outcomes.append(Outcome(Applied.DONE, emitted))
                    if len(outcomes) == 1 and len(events) > 1:
                        on_first()
                session.flush()
            if inbox:
                connection.execute(insert(_INBOX), inbox)
            write_outbox(connection, messages, now)
    except Exception:
        return None
    return BatchResult(outcomes, messages)


def apply_event(engine: Engine, participant: Participant, event: Event) -> Outcome:
    """Apply one consumed event exactly once; handler errors propagate with nothing committed."""
    with Session(engine) as session:
        if session.get(InboxEntry, event.event_id) is not None:
            session.rollback()
            return Outcome(Applied.DUPLICATE)
        emitted = participant.handle(event, session)
        session.add(
            InboxEntry(event_id=event.event_id, event_type=event.type, sale_id=event.sale_id, handled_at=utc_datetime())
        )
        record_outbox(session, emitted)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return Outcome(Applied.RACED)
    return Outcome(Applied.DONE, emitted)


def run_request(
    engine: Engine, handler: RequestHandler, body: dict[str, Any]
) -> tuple[dict[str, Any], list[Event], list[Message]]:
    """Run a control request in one transaction with its events; also return them as messages."""
    with Session(engine) as session:
        reply, emitted = handler(body, session)
        messages = record_outbox(session, emitted)
        session.commit()
    return reply, list(emitted), messages


def apply_request(engine: Engine, handler: RequestHandler, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    """Run a control request (such as the sale service's submit) in one transaction with its events."""
    reply, emitted, _ = run_request(engine, handler, body)
    return reply, emitted
