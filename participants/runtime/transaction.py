"""Handled events and their local transaction: inbox check, handler, inbox row, outbox rows.

This is the heart of "nothing lost, nothing doubled": the consumed event id and the emitted
events commit together with the handler's changes, or not at all.

The daemon applies a fetched batch in one transaction (`apply_batch`): one set-based inbox
check, the handlers in delivery order on one session, the inbox and outbox rows written with
`executemany`, one commit. When anything in the batch fails, nothing of it is committed and the
daemon applies the events one by one (`apply_event`), so one poison event cannot hold back or
roll back its neighbours.

Every inbox row records the stream sequence it was consumed from (pruning waits for the
consumer's ack floor to pass it) and every outbox row the event that caused it: when that event
comes again (a redelivery, a copy under a new id) it is a duplicate, and its outbox rows still
unsent are handed back to be published before the duplicate is acked. That is what publishes
the events of a commit whose success the process never heard of (killed after COMMIT, or a
PostgreSQL connection lost while COMMIT succeeded).
"""

from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from participants.contract import Event, Refused, parse_event
from participants.runtime import interleave
from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.jetstream import PUBLISH_HEADROOM
from participants.runtime.participant import Participant, RequestHandler
from participants.runtime.settle import database_failed
from participants.runtime.sql import Statement, db_time, one_of, one_round_trip

class Message(NamedTuple):
    """An outbox row as the relay publishes it (the event id is its `Nats-Msg-Id`)."""

    subject: str
    payload: bytes
    event_id: str


# The runtime's own rows, written with executemany on the driver cursor (sql.py says why).
_INBOX, _OUTBOX = InboxEntry.__tablename__, OutboxEntry.__tablename__
INSERT_INBOX = Statement(
    f"INSERT INTO {_INBOX} (event_id, event_type, sale_id, handled_at, stream_seq) "
    "VALUES (:event_id, :event_type, :sale_id, :at, :seq)"
)
INSERT_OUTBOX = Statement(
    f"INSERT INTO {_OUTBOX} (event_id, subject, payload, created_at, cause_id) "
    "VALUES (:event_id, :subject, :payload, :at, :cause)"
)
# Outbox rows recent enough to republish blindly (the stream's duplicate window still covers a
# first copy); older ones are left to the sweep, which looks them up first. The daemon passes
# recovery.blind_limit_s of the stream's window; this is that of the default 120 s window.
REPUBLISH_WITHIN_S = 115.0
MARK_SENT = Statement(f"UPDATE {_OUTBOX} SET sent_at = :at WHERE event_id = :event_id")
# PostgreSQL: a batch's outbox rows and sent marks as one statement each instead of one a row
# (a statement is about 40 µs of CPU there, client's and server's), their rows as one JSON
# parameter (psycopg dumps a list of 64 strings as an array in 300 µs, orjson a list of rows in 5).
INSERT_OUTBOX_ROWS = Statement(
    f"INSERT INTO {_OUTBOX} (event_id, subject, payload, created_at, cause_id) "
    "SELECT r.i, r.s, convert_to(r.p, 'UTF8'), :at, r.c "
    "FROM ROWS FROM (json_to_recordset(:rows::json) AS (i text, s text, p text, c text)) WITH ORDINALITY AS r(i, s, p, c, n) "
    "ORDER BY r.n"
)
MARK_SENT_ROWS = Statement(
    f"UPDATE {_OUTBOX} SET sent_at = :at WHERE event_id = ANY(ARRAY(SELECT json_array_elements_text(:ids::json)))",
    plan_each_time=True,
)


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


# The largest event body the relay can publish: the server's max_payload (1 MiB by default)
# less the room PubAcks keeps for its headers, the relay's own limit. The daemon sets it from
# the server it connected to (set_max_event_bytes), once per process.
_max_event_bytes = (1 << 20) - PUBLISH_HEADROOM


def set_max_event_bytes(max_payload: int) -> None:
    global _max_event_bytes
    _max_event_bytes = max_payload - PUBLISH_HEADROOM


class EventTooLarge(Refused):
    """A handler decided an event the server could never store: refused before anything commits.
    Committed, it would sit in the outbox for good, unpublishable, and its saga stuck behind it."""


def outbox_messages(events: Sequence[Event]) -> list[Message]:
    messages = [Message(e.subject, e.to_bytes(), e.event_id) for e in events]
    for (_, payload, event_id), event in zip(messages, events):
        if len(payload) > _max_event_bytes:
            raise EventTooLarge(f"decided a {event.type} event of {len(payload)} bytes, over the "
                                f"{_max_event_bytes} an event may carry (the server's max_payload less headers)")
        if " " in event_id or not event_id.isprintable():
            # The relay writes it into a `Nats-Msg-Id` header line as it is (jetstream.event_command).
            raise Refused(f"decided a {event.type} event whose id {event_id!r} has whitespace or control characters")
    return messages


def write_outbox(
    connection: Connection, messages: Sequence[Message], now: datetime, causes: Sequence[str | None] | None = None
) -> None:
    """Insert outbox rows; `causes[n]` is the consumed event that decided `messages[n]`."""
    at = db_time(connection, now)
    causes = causes if causes is not None else [None] * len(messages)
    if connection.dialect.name == "postgresql":
        if messages:
            rows = [{"i": i, "s": s, "p": p.decode(), "c": c} for (s, p, i), c in zip(messages, causes)]
            INSERT_OUTBOX_ROWS.execute(connection, at=at, rows=orjson.dumps(rows).decode())
        return
    INSERT_OUTBOX.run_many(
        connection,
        [{"event_id": i, "subject": s, "payload": p, "at": at, "cause": c} for (s, p, i), c in zip(messages, causes)],
    )


def unsent_of(connection: Connection, causes: Sequence[str], since: datetime) -> list[Message]:
    """Unsent outbox rows decided by these consumed events and created after `since`, in order."""
    if not causes:
        return []
    among, params = one_of(connection, "cause_id", causes)
    query = Statement(
        f"SELECT subject, payload, event_id FROM {_OUTBOX} "
        f"WHERE {among} AND sent_at IS NULL AND created_at > :since ORDER BY id", plan_each_time=True
    )
    return [Message(s, bytes(p), i) for s, p, i in query.rows(connection, since=db_time(connection, since), **params)]


def mark_sent(connection: Connection, event_ids: Sequence[str], now: datetime) -> None:
    """Record that the relay has these outbox rows stored in the stream."""
    at = db_time(connection, now)
    if connection.dialect.name == "postgresql":
        if event_ids:
            MARK_SENT_ROWS.execute(connection, at=at, ids=orjson.dumps(list(event_ids)).decode())
        return
    MARK_SENT.run_many(connection, [{"event_id": i, "at": at} for i in event_ids])


def seen(connection: Connection, event_ids: Sequence[str]) -> set[str]:
    """The ids among `event_ids` that are already in the inbox: one query for a whole batch."""
    if not event_ids:
        return set()
    among, params = one_of(connection, "event_id", event_ids)
    return {row[0] for row in Statement(f"SELECT event_id FROM {_INBOX} WHERE {among}", plan_each_time=True).rows(connection, **params)}


# PostgreSQL: record a batch's events in the inbox in one statement, learning which were new. The
# unique index decides (no plan to go wrong: an `IN` check planned while the table was small kept
# scanning all of it, 400 ms a batch at 40,000 rows), a replica racing for the same event waits
# for the other's commit and then sees it as recorded, and sorted ids take row locks in one
# order, so two replicas claiming overlapping batches cannot deadlock.
CLAIM = Statement(
    f"INSERT INTO {_INBOX} (event_id, event_type, sale_id, handled_at, stream_seq) "
    "SELECT r.i, r.t, r.s, :at, r.q FROM json_to_recordset(:rows::json) AS r(i text, t text, s int, q bigint) "
    "ORDER BY r.i ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def claim(connection: Connection, events: Sequence[Event], seqs: Sequence[int | None], at: Any) -> set[str]:
    """Insert the inbox rows of these events (PostgreSQL); the ids that were not there yet."""
    rows: dict[str, dict[str, Any]] = {}
    for event, seq in zip(events, seqs):
        row = rows.get(event.event_id)
        if row is None:
            rows[event.event_id] = {"i": event.event_id, "t": event.type, "s": event.sale_id, "q": seq}
        elif seq is not None and (row["q"] is None or seq > row["q"]):
            row["q"] = seq  # a copy delivered later: prune only once the floor passed it too
    return {r[0] for r in CLAIM.rows(connection, at=at, rows=orjson.dumps(list(rows.values())).decode())}


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction on the engine (a pooled connection) or on a connection the caller keeps open."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        with bind.begin():
            yield bind


def record_outbox(session: Session, events: Sequence[Event], cause: str | None = None) -> list[Message]:
    """Add events to the outbox in the session's transaction; return them as messages to publish."""
    messages = outbox_messages(events)
    write_outbox(session.connection(), messages, utc_datetime(), [cause] * len(messages))
    return messages


def apply_batch(
    bind: Engine | Connection,
    participant: Participant,
    events: Sequence[Event],
    on_first: Callable[[], None] = lambda: None,
    sent: Sequence[str] = (),
    sequences: Sequence[int | None] | None = None,
    republish_within_s: float = REPUBLISH_WITHIN_S,
) -> BatchResult | None:
    """Apply a batch in one transaction; None (and nothing committed) when any part of it failed.

    `on_first` runs after the first event was applied (the `mid_batch` crash point); `sent` are
    outbox event ids the relay has stored meanwhile, marked in the same transaction for free;
    `sequences[n]` is the stream sequence `events[n]` was consumed from. The messages returned
    include the unsent outbox rows of duplicates (younger than `republish_within_s`): published
    again before the duplicate is acked.
    """
    now = utc_datetime()
    outcomes: list[Outcome] = []
    inbox: list[dict[str, Any]] = []
    messages: list[Message] = []
    causes: list[str | None] = []
    duplicates: list[str] = []
    seqs = sequences if sequences is not None else [None] * len(events)
    try:
        with transaction(bind) as connection:
            at = db_time(connection, now)
            claims = connection.dialect.name == "postgresql"
            if claims:  # the inbox rows go in first; those already there are the duplicates
                ids = {e.event_id for e in events}
                known = ids - claim(connection, events, seqs, at)
            else:
                known = seen(connection, [e.event_id for e in events])
            fresh: list[Event] = []
            for event in events:
                if event.event_id not in known:  # a second copy inside this batch is a duplicate too
                    known.add(event.event_id)
                    fresh.append(event)
            first = on_first if len(events) > 1 else lambda: None
            with Session(bind=connection) as session:
                decided = iter(handle_all(connection, session, participant, fresh, first))
                session.flush()
            applied = iter(fresh)
            next_fresh = next(applied, None)
            for event, seq in zip(events, seqs):
                if event is not next_fresh:
                    outcomes.append(Outcome(Applied.DUPLICATE))
                    duplicates.append(event.event_id)
                    continue
                next_fresh = next(applied, None)
                emitted = next(decided)
                if not claims:
                    inbox.append({"event_id": event.event_id, "event_type": event.type, "sale_id": event.sale_id,
                                  "at": at, "seq": seq})
                ready = outbox_messages(emitted)
                messages.extend(ready)
                causes.extend([event.event_id] * len(ready))
                outcomes.append(Outcome(Applied.DONE, emitted))
            with one_round_trip(connection):
                INSERT_INBOX.run_many(connection, inbox)
                write_outbox(connection, messages, now, causes)
                mark_sent(connection, sent, now)
            # Only when the batch has duplicates: no extra statement on the common path.
            again = unsent_of(connection, duplicates, now - timedelta(seconds=republish_within_s))
    except Exception as exc:
        if database_failed(exc):  # not the events' fault: the daemon naks the batch
            raise
        return None
    decided_now = {m.event_id for m in messages}
    return BatchResult(outcomes, messages + [m for m in again if m.event_id not in decided_now])


def handle_all(connection: Connection, session: Session, participant: Participant, events: Sequence[Event],
               on_first: Callable[[], None] = lambda: None) -> list[list[Event]]:
    """Each event's handler on the batch's session; what each decided, in order.

    On PostgreSQL the handlers take turns at their statements (participants/runtime/interleave.py);
    `on_first` runs once the first of them has finished.
    """
    if len(events) > 1 and participant.interleave and connection.dialect.name == "postgresql" and interleave.available():
        turns = interleave.Turns(connection.connection.driver_connection)
        session.info[interleave.TURNS] = turns
        try:
            return interleave.run(turns, [e.sale_id for e in events],
                                  [partial(participant.handle, e, session) for e in events], on_first)
        finally:
            del session.info[interleave.TURNS]
    decided = []
    for event in events:
        decided.append(participant.handle(event, session))
        if len(decided) == 1:
            on_first()
    return decided


def apply_event(
    engine: Engine, participant: Participant, event: Event, stream_seq: int | None = None,
    republish_within_s: float = REPUBLISH_WITHIN_S,
) -> Outcome:
    """Apply one consumed event exactly once; handler errors propagate with nothing committed.

    A duplicate's outcome carries, as `emitted`, the events its first application decided that
    are still unsent (younger than `republish_within_s`): the caller publishes them before acking.
    """
    with Session(engine) as session:
        if session.get(InboxEntry, event.event_id) is not None:
            since = utc_datetime() - timedelta(seconds=republish_within_s)
            again = unsent_of(session.connection(), [event.event_id], since)
            session.rollback()
            return Outcome(Applied.DUPLICATE, [parse_event(payload) for _, payload, _ in again])
        emitted = participant.handle(event, session)
        session.add(InboxEntry(
            event_id=event.event_id, event_type=event.type, sale_id=event.sale_id, handled_at=utc_datetime(),
            stream_seq=stream_seq,
        ))
        record_outbox(session, emitted, cause=event.event_id)
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
