"""The outbox relay: publishes events that handlers committed, then marks them sent.

A handler's events are rows in `saga_outbox`, written in the same transaction as its database
change. The relay publishes unsent rows in commit order with `Nats-Msg-Id` = event id and marks
them sent only after JetStream's PubAck. A crash between the two republishes on restart; the
stream's duplicate window and every consumer's inbox make that copy harmless.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.js import JetStreamContext
from sqlalchemy import Engine, delete, update
from sqlmodel import Session, col, select

from participants.runtime.crashpoints import AFTER_PUBLISH, CrashPoints
from participants.runtime.database import OutboxEntry, utc_datetime
from participants.runtime.eventlog import EventLog

PUBLISH_BATCH = 256
PUBLISH_TIMEOUT_S = 5.0
# Sent rows are kept a while for inspection, then pruned so the table does not grow with history.
KEEP_SENT = timedelta(minutes=10)


class OutboxRelay:
    def __init__(self, engine: Engine, js: JetStreamContext, crash: CrashPoints, log: EventLog) -> None:
        self._engine = engine
        self._js = js
        self._crash = crash
        self._log = log
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask the background loop to publish soon (after a commit made outside `flush`)."""
        self._wake.set()

    async def flush(self) -> int:
        """Publish every unsent row; return how many were published."""
        published = 0
        async with self._lock:
            while True:
                with Session(self._engine) as session:
                    rows = session.exec(
                        select(OutboxEntry.id, OutboxEntry.event_id, OutboxEntry.subject, OutboxEntry.payload)
                        .where(col(OutboxEntry.sent_at).is_(None))
                        .order_by(col(OutboxEntry.id))
                        .limit(PUBLISH_BATCH)
                    ).all()
                    session.rollback()
                if not rows:
                    return published
                await asyncio.gather(
                    *(
                        self._js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": event_id})
                        for _, event_id, subject, payload in rows
                    )
                )
                self._crash.reach(AFTER_PUBLISH)
                with Session(self._engine) as session:
                    session.exec(
                        update(OutboxEntry)
                        .where(col(OutboxEntry.id).in_([row[0] for row in rows]))
                        .values(sent_at=utc_datetime())
                    )
                    session.commit()
                published += len(rows)

    def prune(self) -> None:
        with Session(self._engine) as session:
            session.exec(
                delete(OutboxEntry).where(
                    col(OutboxEntry.sent_at).is_not(None), col(OutboxEntry.sent_at) < utc_datetime() - KEEP_SENT
                )
            )
            session.commit()

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish whatever is pending: on a wake-up, and every second to retry after failures."""
        delay = 0.1
        ticks = 0
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                delay = 0.1
                ticks += 1
                if ticks % 60 == 0:
                    self.prune()
            except Exception as exc:  # NATS down or slow: keep the rows, try again later
                self._log.write("relay_retry", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
