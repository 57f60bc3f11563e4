"""The outbox relay: publishes events that transactions committed, then lets their cause be acked.

A handler's events are rows in `saga_outbox`, written in the same transaction as its database
change. After the commit the daemon hands the same events to the relay with what to do once
they are stored (ack the consumed messages). The relay publishes everything queued in one round
with `Nats-Msg-Id` = event id, the PubAcks collected on one subscription; a group's follow-up
runs only when all its events are stored. While a round waits for its PubAcks the daemon is
already applying the next batch.

Rows are marked sent a moment later, in one UPDATE for many rows; a crash before that
republishes them on restart (the relay starts by queueing every unsent row), and the stream's
duplicate window and every consumer's inbox make that copy harmless. Housekeeping prunes sent
outbox rows and old inbox rows (see `Retention`) so neither table grows with history.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from nats.aio.client import Client
from sqlalchemy import Connection, Engine, select, text

from participants.runtime.crashpoints import AFTER_PUBLISH, CrashPoints
from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.eventlog import EventLog
from participants.runtime.jetstream import PubAcks
from participants.runtime.transaction import Message, mark_sent, transaction

PUBLISH_TIMEOUT_S = 5.0
MAX_ROUND = 4096  # messages published per round
MARK_EVERY_S = 0.1
HOUSEKEEPING_EVERY_S = 5.0
PRUNE_CHUNK = 20_000

# (subject, event id, created at) of unsent rows -> the event ids the stream holds already.
StoredAlready = Callable[[list[tuple[str, str, datetime]]], Awaitable[set[str]]]

_OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]
_INBOX = InboxEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Retention:
    """How long handled-event bookkeeping is kept.

    An inbox row must outlive every way its event can come back: a redelivery (at most
    `max_deliver` deliveries, each after at most ack_wait plus the retry delay) and a republished
    copy the stream does not drop (after its duplicate window). Sent outbox rows are only kept for
    inspection.
    """

    inbox_s: float
    outbox_sent_s: float

    @classmethod
    def for_consumer(cls, duplicate_window_s: float, max_deliver: int, ack_wait_s: float, max_retry_delay_s: float,
                     outbox_sent_s: float = 60.0) -> "Retention":
        return cls(duplicate_window_s + max_deliver * (ack_wait_s + max_retry_delay_s), outbox_sent_s)


@dataclass
class _Group:
    messages: list[Message]
    then: Callable[[], Awaitable[None]] | None


class OutboxRelay:
    def __init__(
        self, bind: Engine | Connection | None, nc: Client, crash: CrashPoints, log: EventLog,
        retention: Retention | None = None,
    ) -> None:
        self._bind = bind  # None in raw mode: nothing to recover, mark or prune
        self._pubacks = PubAcks(nc)
        self._crash = crash
        self._log = log
        self._retention = retention
        self._queue: deque[_Group] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._queued = 0
        self._to_mark: list[str] = []
        self._marked_at = time.monotonic()
        self._housekept_at = time.monotonic()
        self._started = time.monotonic()

    @property
    def backlog(self) -> int:
        """Messages queued or in flight."""
        return self._queued

    async def start(self, stored_already: StoredAlready | None = None) -> None:
        """Subscribe for PubAcks and queue what a previous run committed but never marked sent.

        `stored_already` names the rows the stream holds already (participants/runtime/recovery.py):
        those are marked sent instead of published again.
        """
        await self._pubacks.start()
        self._started = time.monotonic()
        if self._bind is None:
            return
        with transaction(self._bind) as connection:
            rows = connection.execute(
                select(_OUTBOX.c.subject, _OUTBOX.c.payload, _OUTBOX.c.event_id, _OUTBOX.c.created_at)
                .where(_OUTBOX.c.sent_at.is_(None))
                .order_by(_OUTBOX.c.id)
            ).all()
        if rows and stored_already is not None:
            stored = await stored_already([(s, i, c) for s, _, i, c in rows])
            if stored:
                with transaction(self._bind) as connection:
                    mark_sent(connection, sorted(stored), utc_datetime())
                self._log.write("outbox_recovered", stored_already=len(stored))
                rows = [row for row in rows if row[2] not in stored]
        if rows:
            self.submit([(s, bytes(p), i) for s, p, i, _ in rows])

    def submit(self, messages: list[Message], then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Queue committed events; `then` runs once all of them are stored in the stream."""
        self._queue.append(_Group(messages, then))
        self._queued += len(messages)
        self._idle.clear()
        self._wake.set()

    def take_sent(self) -> list[str]:
        """Event ids stored in the stream and not yet marked: the daemon marks them in its next batch."""
        ids, self._to_mark = self._to_mark, []
        self._marked_at = time.monotonic()
        return ids

    def give_back(self, ids: list[str]) -> None:
        """Ids `take_sent` returned whose batch did not commit."""
        self._to_mark.extend(ids)

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued is published and its follow-up has run."""
        await self._idle.wait()

    async def run(self, stopping: asyncio.Event) -> None:
        delay = 0.05
        while not stopping.is_set() or self._queue:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=MARK_EVERY_S)
                except asyncio.TimeoutError:
                    pass
                self._housekeeping()
                continue
            try:
                failed = await self._round()
            except Exception as exc:  # disconnected, closing: keep the groups, retry
                self._log.write("relay_retry", error=str(exc) or type(exc).__name__)
                failed = True
            self._housekeeping()
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                delay = 0.05
        self._mark_sent(force=True)

    async def _round(self) -> bool:
        """Publish queued groups once; True when some message was not stored (it stays queued)."""
        groups: list[_Group] = []
        size = 0
        while self._queue and (not groups or size + len(self._queue[0].messages) <= MAX_ROUND):
            group = self._queue.popleft()
            groups.append(group)
            size += len(group.messages)
        stored = await self._pubacks.publish_all([m for g in groups for m in g.messages], PUBLISH_TIMEOUT_S)
        if size:
            self._crash.reach(AFTER_PUBLISH)
        position = 0
        retry: list[_Group] = []
        for group in groups:
            count = len(group.messages)
            flags = stored[position : position + count]
            position += count
            if all(flags):
                self._queued -= count
                self._to_mark.extend(m[2] for m in group.messages)
                if group.then is not None:
                    await group.then()
            else:
                # Keep only what was not stored; the follow-up waits for the rest.
                kept = [m for m, ok in zip(group.messages, flags) if not ok]
                self._queued -= count - len(kept)
                self._to_mark.extend(m[2] for m, ok in zip(group.messages, flags) if ok)
                retry.append(_Group(kept, group.then))
        self._queue.extendleft(reversed(retry))
        self._mark_sent()
        if retry:
            self._log.write("relay_retry", error=f"{sum(len(g.messages) for g in retry)} events without PubAck")
        return bool(retry)

    def _mark_sent(self, force: bool = False) -> None:
        """Mark sent rows in a transaction of our own when no batch came along to carry them."""
        if self._bind is None or not self._to_mark:
            self._to_mark.clear()
            return
        if not force and time.monotonic() - self._marked_at < MARK_EVERY_S:
            return
        ids = self.take_sent()
        try:
            with transaction(self._bind) as connection:
                mark_sent(connection, ids, utc_datetime())
        except Exception as exc:  # a locked database: the rows are republished later, harmlessly
            self._log.write("mark_sent_failed", error=str(exc))

    def _housekeeping(self) -> None:
        self._mark_sent()
        if self._bind is None or self._retention is None:
            return
        if time.monotonic() - self._housekept_at < HOUSEKEEPING_EVERY_S:
            return
        self._housekept_at = time.monotonic()
        if self._housekept_at - self._started < self._retention.inbox_s:
            # Events this participant applied before a restart may still come back (unacked when
            # it died): keep their inbox rows until they have had the time to.
            return
        try:
            prune(self._bind, self._retention)
        except Exception as exc:
            self._log.write("prune_failed", error=str(exc))


def prune(bind: Engine | Connection, retention: Retention) -> None:
    """Delete sent outbox rows and inbox rows past their retention, oldest first, in bounded chunks."""
    now = utc_datetime()
    inbox_before = now - timedelta(seconds=retention.inbox_s)
    outbox_before = now - timedelta(seconds=retention.outbox_sent_s)
    with transaction(bind) as connection:
        if connection.dialect.name == "sqlite":
            # Rows are inserted in time order, so the oldest rowids are the old rows: a bounded
            # scan from the start instead of a full one (handled_at has no index).
            connection.execute(text(
                "DELETE FROM saga_inbox WHERE rowid IN (SELECT rowid FROM saga_inbox ORDER BY rowid LIMIT :n) "
                "AND handled_at < :before"), {"n": PRUNE_CHUNK, "before": _sqlite_time(inbox_before)})
        else:
            connection.execute(_INBOX.delete().where(_INBOX.c.handled_at < inbox_before))
        connection.execute(_OUTBOX.delete().where(_OUTBOX.c.sent_at.is_not(None), _OUTBOX.c.sent_at < outbox_before))


def _sqlite_time(moment: object) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (naive ISO text), for a text() comparison."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # type: ignore[attr-defined]
