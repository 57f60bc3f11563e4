"""The outbox relay: publishes events that transactions committed, then lets their cause be acked.

A handler's events are rows in `saga_outbox`, written in the same transaction as its database
change. After the commit the daemon hands the same events to the relay with what to do once
they are stored (ack the consumed messages). The relay publishes everything queued in one round
with `Nats-Msg-Id` = event id, the PubAcks collected on one subscription; a group's follow-up
runs only when all its events are stored. While a round waits for its PubAcks the daemon is
already applying the next batch. A group leaves the queue only once stored: a publish that
raises (disconnected with the buffer full, a message over the server's size limit, anything)
keeps it queued; a group that raises on its own goes to the back so it holds up nobody.

Rows are marked sent a moment later, in one UPDATE for many rows. Rows that stay unsent (this
process or another replica died first, or never heard its COMMIT succeed) are swept: every
process claims them with a lease and publishes them, old ones only after looking them up in the
stream (participants/runtime/recovery.py). Housekeeping prunes sent outbox rows and inbox rows
the consumer's ack floor has passed (participants/runtime/retention.py) so neither table grows with history.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from nats.aio.client import Client
from sqlalchemy import Connection, Engine

from participants.contract import STREAM
from participants.runtime import recovery
from participants.runtime.crashpoints import AFTER_PUBLISH, CrashPoints
from participants.runtime.database import utc_datetime
from participants.runtime.eventlog import EventLog
from participants.runtime.jetstream import PubAcks
from participants.runtime.retention import Retention, prune
from participants.runtime.transaction import Message, mark_sent, transaction

PUBLISH_TIMEOUT_S = 5.0
MAX_ROUND = 4096  # messages published per round
MARK_EVERY_S = 0.1
SWEEP_EVERY_S = 1.0
HOUSEKEEPING_EVERY_S = 5.0
INFO_TIMEOUT_S = 2.0


@dataclass
class _Group:
    messages: list[Message]
    then: Callable[[], Awaitable[None]] | None
    since: float  # time.monotonic() when its oldest event was committed


class OutboxRelay:
    def __init__(
        self, bind: Engine | Connection | None, nc: Client, crash: CrashPoints, log: EventLog,
        retention: Retention | None = None, *, consumer: str | None = None, duplicate_window_s: float = 120.0,
        slot: str = "1",
    ) -> None:
        self._bind = bind  # None in raw mode: nothing to recover, mark or prune
        self._nc = nc
        self._pubacks = PubAcks(nc)
        self._crash = crash
        self._log = log
        self._retention = retention
        self._consumer = consumer  # the durable whose ack floor lets inbox rows go; None: keep them
        self._window_s = duplicate_window_s
        # A lease holder's name: this replica slot and this process (a restart in the slot takes over).
        self._slot = f"{slot}:"
        self._owner = f"{slot}:{os.getpid()}"
        self._queue: deque[_Group] = deque()
        self._held: set[str] = set()  # event ids queued, in flight or stored and not yet marked sent
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._queued = 0
        self._to_mark: list[str] = []
        self._marked_at = time.monotonic()

    @property
    def backlog(self) -> int:
        """Messages queued or in flight."""
        return self._queued

    async def start(self) -> None:
        """Subscribe for PubAcks and queue what a previous run in this slot committed but never marked sent."""
        await self._pubacks.start()
        if self._bind is not None:
            try:
                await self.sweep(starting=True)
            except Exception as exc:  # a locked database: the periodic sweep takes them
                self._log.write("sweep_failed", error=f"{type(exc).__name__}: {exc}")

    def submit(
        self, messages: list[Message], then: Callable[[], Awaitable[None]] | None = None, age_s: float = 0.0
    ) -> None:
        """Queue committed events (committed `age_s` ago); `then` runs once all of them are stored."""
        self._queue.append(_Group(messages, then, time.monotonic() - age_s))
        self._queued += len(messages)
        self._held.update(m.event_id for m in messages)
        self._idle.clear()
        self._wake.set()

    def take_sent(self) -> list[str]:
        """Event ids stored in the stream and not yet marked: the daemon marks them in its next batch."""
        ids, self._to_mark = self._to_mark, []
        self._marked_at = time.monotonic()
        self._held.difference_update(ids)
        return ids

    def give_back(self, ids: list[str]) -> None:
        """Ids `take_sent` returned whose batch did not commit."""
        self._to_mark.extend(ids)
        self._held.update(ids)

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued is published and its follow-up has run."""
        await self._idle.wait()

    async def run(self, stopping: asyncio.Event) -> None:
        upkeep = asyncio.create_task(self._upkeep(stopping)) if self._bind is not None else None
        delay = 0.05
        try:
            while not stopping.is_set() or self._queue:
                if not self._queue:
                    self._idle.set()
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=MARK_EVERY_S)
                    except asyncio.TimeoutError:
                        pass
                    self._mark_sent()
                    continue
                try:
                    failed = await self._round()
                except Exception as exc:  # _round keeps every group queued; this is only a last guard
                    self._log.write("relay_retry", error=str(exc) or type(exc).__name__)
                    failed = True
                self._mark_sent()
                if failed:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                else:
                    delay = 0.05
        finally:
            if upkeep is not None:
                upkeep.cancel()
            self._mark_sent(force=True)

    async def _round(self) -> bool:
        """Publish queued groups once; True when some message was not stored (it stays queued).

        The groups stay at the head of the queue while their PubAcks are awaited (submit only
        appends), and only what was stored leaves it. Nothing is published while disconnected:
        the client would buffer it and send it on reconnect, however late that is.
        """
        self._expire()
        if not self._nc.is_connected:
            return True
        count = 0
        size = 0
        for group in self._queue:
            if count and size + len(group.messages) > MAX_ROUND:
                break
            count += 1
            size += len(group.messages)
        groups = [self._queue[n] for n in range(count)]
        try:
            stored = await self._pubacks.publish_all([m for g in groups for m in g.messages], PUBLISH_TIMEOUT_S)
            results: list[list[bool] | None] = []
            position = 0
            for group in groups:
                results.append(stored[position : position + len(group.messages)])
                position += len(group.messages)
        except Exception as exc:
            self._log.write("relay_retry", error=f"{type(exc).__name__}: {exc}")
            # Find the group at fault: each alone (a too-large message fails only its own group).
            results = []
            for group in groups:
                try:
                    results.append(await self._pubacks.publish_all(group.messages, PUBLISH_TIMEOUT_S))
                except Exception:
                    results.append(None)
        if size:
            self._crash.reach(AFTER_PUBLISH)
        for _ in groups:
            self._queue.popleft()
        retry: list[_Group] = []
        raised: list[_Group] = []
        for group, flags in zip(groups, results):
            if flags is None:
                raised.append(group)
                continue
            done = [m for m, ok in zip(group.messages, flags) if ok]
            self._queued -= len(done)
            self._to_mark.extend(m.event_id for m in done)
            if len(done) == len(group.messages):
                await self._follow_up(group)
            else:  # keep only what was not stored; the follow-up waits for the rest
                retry.append(_Group([m for m, ok in zip(group.messages, flags) if not ok], group.then, group.since))
        self._queue.extendleft(reversed(retry))
        self._queue.extend(raised)
        if retry:
            self._log.write("relay_retry", error=f"{sum(len(g.messages) for g in retry)} events without PubAck")
        return bool(retry or raised)

    def _expire(self) -> None:
        """Hand groups queued for about a duplicate window back to the table.

        A first copy may be in the stream already (stored, its PubAck lost); publishing it again
        after the duplicate window would store a second. The rows stay unsent, so the sweep takes
        them and looks them up first; the consumed events they answer are not acked, come back
        as duplicates and are acked then.
        """
        if self._bind is None or not self._queue:
            return
        limit = time.monotonic() - recovery.blind_limit_s(self._window_s)
        expired = [g for g in self._queue if g.since < limit]
        if not expired:
            return
        self._queue = deque(g for g in self._queue if g.since >= limit)
        for group in expired:
            self._queued -= len(group.messages)
            self._held.difference_update(m.event_id for m in group.messages)
        self._log.write("relay_expired", events=sum(len(g.messages) for g in expired))

    async def _follow_up(self, group: _Group) -> None:
        if group.then is None:
            return
        try:
            await group.then()
        except Exception as exc:  # the events are stored; an ack not sent is a redelivery, a duplicate
            self._log.write("follow_up_failed", error=f"{type(exc).__name__}: {exc}")

    def _mark_sent(self, force: bool = False) -> None:
        """Mark sent rows in a transaction of our own when no batch came along to carry them."""
        if self._bind is None or not self._to_mark:
            self._held.difference_update(self._to_mark)
            self._to_mark.clear()
            return
        if not force and time.monotonic() - self._marked_at < MARK_EVERY_S:
            return
        ids = self.take_sent()
        try:
            with transaction(self._bind) as connection:
                mark_sent(connection, ids, utc_datetime())
        except Exception as exc:  # a locked database: the rows stay unsent and are swept later, harmlessly
            self._log.write("mark_sent_failed", error=str(exc))

    # -- the sweep and housekeeping, beside the publishing loop -----------------------------
    async def _upkeep(self, stopping: asyncio.Event) -> None:
        housekept_at = time.monotonic()
        while not stopping.is_set():
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.sweep()
                if time.monotonic() - housekept_at >= HOUSEKEEPING_EVERY_S:
                    housekept_at = time.monotonic()
                    await self._housekeeping()
            except Exception as exc:  # the rows stay where they are; the next pass tries again
                self._log.write("sweep_failed", error=f"{type(exc).__name__}: {exc}")

    async def sweep(self, starting: bool = False) -> None:
        """Claim unsent rows nobody publishes (recovery.claim_unsent) and queue them.

        Starting, rows of any age are taken, and the leases of this slot's previous process.
        Rows near or past the duplicate window are looked up first; when the lookup fails they stay
        unsent (claimed by us, so the next sweep asks again): never a blind republish.
        """
        assert self._bind is not None
        try:
            claimed = recovery.claim_unsent(
                self._bind, self._owner, grace_s=0.0 if starting else recovery.GRACE_S,
                also_from=self._slot if starting else None,
            )
        except Exception as exc:  # a locked database: the next sweep tries again
            self._log.write("sweep_failed", error=f"{type(exc).__name__}: {exc}")
            return
        rows = [r for r in claimed if r.event_id not in self._held]
        old = [r for r in rows if recovery.needs_lookup(r, self._window_s)]
        if old:
            try:
                stored = await recovery.stored_already(self._nc, [(r.subject, r.event_id, r.created_at) for r in old],
                                                       recovery.blind_limit_s(self._window_s))
            except recovery.LookupFailed as exc:
                self._log.write("outbox_recovery_failed", error=str(exc), kept_unsent=len(old))
                stored = {r.event_id for r in old}  # not to publish now; not marked either
            else:
                if stored:  # a failure here leaves them unsent and claimed: looked up again next time
                    with transaction(self._bind) as connection:
                        mark_sent(connection, sorted(stored), utc_datetime())
                    self._log.write("outbox_recovered", stored_already=len(stored))
            rows = [r for r in rows if r.event_id not in stored]
        rows = [r for r in rows if r.event_id not in self._held]  # queued meanwhile (a duplicate's republish)
        if rows:
            self._log.write("outbox_swept", rows=len(rows))
            now = utc_datetime()
            looked_up = {r.event_id for r in old}
            young = [r for r in rows if r.event_id not in looked_up]
            if young:  # published blindly, only while the duplicate window still covers them
                age = (now - min(r.created_at for r in young)).total_seconds()
                self.submit([Message(r.subject, r.payload, r.event_id) for r in young], age_s=age)
            absent = [r for r in rows if r.event_id in looked_up]
            if absent:  # the stream has no copy: the next one stored is the first
                self.submit([Message(r.subject, r.payload, r.event_id) for r in absent])

    async def _housekeeping(self) -> None:
        if self._bind is None or self._retention is None:
            return
        try:
            prune(self._bind, self._retention, await self._ack_floor())
        except Exception as exc:
            self._log.write("prune_failed", error=str(exc))

    async def _ack_floor(self) -> int | None:
        """The consumer's ack floor (stream sequence), None when it cannot be asked (disconnected)."""
        if self._consumer is None or not self._nc.is_connected:
            return None
        try:
            info = await self._nc.jetstream().consumer_info(STREAM, self._consumer, timeout=INFO_TIMEOUT_S)
        except Exception:
            return None
        return info.ack_floor.stream_seq if info.ack_floor is not None else None
