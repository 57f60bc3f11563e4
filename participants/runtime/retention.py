"""How long the runtime's own rows are kept: inbox rows until no copy of their event can come back,
sent outbox rows for inspection. The relay calls `prune` every few seconds (outbox.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, Engine, text

from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.transaction import transaction

PRUNE_CHUNK = 20_000

_OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]
_INBOX = InboxEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Retention:
    """How long handled-event bookkeeping is kept, at least.

    An inbox row is pruned only once the consumer's ack floor has passed its stream sequence
    (nothing at or below the floor is delivered again), and not before it is `inbox_s` old: a
    consumer position that went back (a nats-server restarted before syncing it) or a copy
    republished within the duplicate window must still find it. Sent outbox rows are only kept
    for inspection.
    """

    inbox_s: float
    outbox_sent_s: float

    @classmethod
    def for_consumer(cls, duplicate_window_s: float, max_deliver: int, ack_wait_s: float, max_retry_delay_s: float,
                     outbox_sent_s: float = 60.0) -> "Retention":
        return cls(duplicate_window_s + max_deliver * (ack_wait_s + max_retry_delay_s), outbox_sent_s)


def prune(bind: Engine | Connection, retention: Retention, ack_floor: int | None) -> None:
    """Delete sent outbox rows past their retention, and inbox rows both at or below the
    consumer's `ack_floor` and past their retention; oldest first, in bounded chunks.

    No floor (the consumer could not be asked): no inbox row goes. A row without a stream
    sequence (applied outside a consumer) is never pruned.
    """
    now = utc_datetime()
    inbox_before = now - timedelta(seconds=retention.inbox_s)
    outbox_before = now - timedelta(seconds=retention.outbox_sent_s)
    with transaction(bind) as connection:
        if ack_floor is not None and connection.dialect.name == "sqlite":
            # Rows are inserted in time order, so the oldest rowids are the old rows: a bounded
            # scan from the start instead of a full one (handled_at has no index).
            connection.execute(text(
                "DELETE FROM saga_inbox WHERE rowid IN (SELECT rowid FROM saga_inbox ORDER BY rowid LIMIT :n) "
                "AND handled_at < :before AND stream_seq <= :floor"),
                {"n": PRUNE_CHUNK, "before": _sqlite_time(inbox_before), "floor": ack_floor})
        elif ack_floor is not None:
            connection.execute(_INBOX.delete().where(
                _INBOX.c.handled_at < inbox_before, _INBOX.c.stream_seq <= ack_floor))
        connection.execute(_OUTBOX.delete().where(_OUTBOX.c.sent_at.is_not(None), _OUTBOX.c.sent_at < outbox_before))


def _sqlite_time(moment: object) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (naive ISO text), for a text() comparison."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # type: ignore[attr-defined]
