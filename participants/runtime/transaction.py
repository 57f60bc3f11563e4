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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from participants.contract import Event
from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.participant import Participant, RequestHandler
from participants.runtime.settle import database_failed
from participants.runtime.sql import Statement, db_time

# (subject, payload, event id): an outbox row as the relay publishes it.
Message = tuple[str, bytes, str]

# The runtime's own rows, written with executemany on the driver cursor (sql.py says why).
_INBOX, _OUTBOX = InboxEntry.__tablename__, OutboxEntry.__tablename__
INSERT_INBOX = Statement(
    f"INSERT INTO {_INBOX} (event_id, event_type, sale_id, handled_at) VALUES (:event_id, :event_type, :sale_id, :at)"
)
INSERT_OUTBOX = Statement(
    f"INSERT INTO {_OUTBOX} (event_id, subject, payload, created_at) VALUES (:event_id, :subject, :payload, :at)"
)
MARK_SENT = Statement(f"UPDATE {_OUTBOX} SET sent_at = :at WHERE event_id = :event_id")


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
    at = db_time(connection, now)
    INSERT_OUTBOX.run_many(connection, [{"event_id": i, "subject": s, "payload": p, "at": at} for s, p, i in messages])


def mark_sent(connection: Connection, event_ids: Sequence[str], now: datetime) -> None:
    """Record that the relay has these outbox rows stored in the stream."""
    at = db_time(connection, now)
    MARK_SENT.run_many(connection, [{"event_id": i, "at": at} for i in event_ids])


def seen(connection: Connection, event_ids: Sequence[str]) -> set[str]:
    """The ids among `event_ids` that are already in the inbox: one query for a whole batch."""
    if not event_ids:
        return set()
    names = ", ".join(f":i{n}" for n in range(len(event_ids)))
    query = Statement(f"SELECT event_id FROM {_INBOX} WHERE event_id IN ({names})")
    return {row[0] for row in query.rows(connection, **{f"i{n}": v for n, v in enumerate(event_ids)})}


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction on the engine (a pooled connection) or on a connection the caller keeps open."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        with bind.begin():
            yield bind


def record_outbox(session: Session, events: Sequence[Event]) -> list[Message]:
    """Add events to the outbox in the session's transaction; return them as messages to publish."""
    messages = outbox_messages(events)
    write_outbox(session.connection(), messages, utc_datetime())
    return messages


def apply_batch(
    bind: Engine | Connection,
    participant: Participant,
    events: Sequence[Event],
    on_first: Callable[[], None] = lambda: None,
    sent: Sequence[str] = (),
) -> BatchResult | None:
    """Apply a batch in one transaction; None (and nothing committed) when any part of it failed.

    `on_first` runs after the first event was applied (the `mid_batch` crash point); `sent` are
    outbox event ids the relay has stored meanwhile, marked in the same transaction for free.
    """
    now = utc_datetime()
    outcomes: list[Outcome] = []
    inbox: list[dict[str, Any]] = []
    messages: list[Message] = []
    try:
        with transaction(bind) as connection:
            known = seen(connection, [e.event_id for e in events])
            at = db_time(connection, now)
            with Session(bind=connection) as session:
                for event in events:
                    if event.event_id in known:  # includes a second copy inside this batch
                        outcomes.append(Outcome(Applied.DUPLICATE))
                        continue
                    known.add(event.event_id)
                    emitted = participant.handle(event, session)
                    inbox.append({"event_id": event.event_id, "event_type": event.type, "sale_id": event.sale_id, "at": at})
                    messages.extend(outbox_messages(emitted))
                    outcomes.append(Outcome(Applied.DONE, emitted))
                    if len(outcomes) == 1 and len(events) > 1:
                        on_first()
                session.flush()
            INSERT_INBOX.run_many(connection, inbox)
            write_outbox(connection, messages, now)
            mark_sent(connection, sent, now)
    except Exception as exc:
        if database_failed(exc):  # not the events' fault: the daemon naks the batch
            raise
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
            if session.get(InboxEntry, event.event_id) is not None:
                return Outcome(Applied.RACED)
            # Not a race on the inbox but the handler's own rows breaking a constraint: a failure
            # like any other (retried, then dead-lettered), never an endless silent retry.
            raise
    return Outcome(Applied.DONE, emitted)


def run_request(
    bind: Engine | Connection, handler: RequestHandler, body: dict[str, Any]
) -> tuple[dict[str, Any], list[Event], list[Message]]:
    """Run a control request in one transaction with its events; also return them as messages."""
    with transaction(bind) as connection, Session(bind=connection) as session:
        reply, emitted = handler(body, session)
        messages = record_outbox(session, emitted)
        session.flush()
    return reply, list(emitted), messages


def apply_request(engine: Engine, handler: RequestHandler, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    """Run a control request (such as the sale service's submit) in one transaction with its events."""
    reply, emitted, _ = run_request(engine, handler, body)
    return reply, emitted
