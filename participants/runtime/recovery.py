"""Unsent outbox rows nobody is publishing: claim them with a lease, look old ones up, hand back the rest.

A row stays unsent when the process that committed it died before its PubAck was marked (or
never heard that its COMMIT succeeded). Every live process of the participant sweeps: once a
second it claims unsent rows older than a grace (the committing process publishes its own
within milliseconds) whose lease has run out, and renews the lease on the rows it holds itself.
A dead replica's rows are thus taken over by a survivor within `LEASE_S`. The claim is one
transaction: PostgreSQL locks the rows with `FOR UPDATE SKIP LOCKED` (replicas sweeping at the
same moment take different rows), SQLite's `BEGIN IMMEDIATE` excludes the other writers.

Publishing a claimed row again is harmless while the stream's duplicate window still covers a
first copy. An older row may have been stored long ago and its consumers' inboxes may have
forgotten it, so it is looked up in the stream first (one scan of its subjects from the oldest
row's creation time) and only the ones not found are published. The lookup fails closed: an
error or a timeout raises, the rows stay unsent and are looked up again at a later sweep.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import Connection, Engine, or_, select

from participants.contract import STREAM
from participants.runtime.database import OutboxEntry, utc_datetime
from participants.runtime.transaction import transaction

CLOCK_SLACK = timedelta(seconds=5)  # the row's time is ours, the stream's is the server's
SCAN_TIMEOUT_S = 30.0
GRACE_S = 3.0  # an unsent row younger than this is its committing process's to publish
LEASE_S = 10.0  # a claim lasts this long; its holder renews it at every sweep
CLAIM_LIMIT = 4096

_OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]


class LookupFailed(Exception):
    """The stream could not be asked which rows it holds: publish nothing, ask again later."""


@dataclass(frozen=True)
class Claimed:
    subject: str
    payload: bytes
    event_id: str
    created_at: datetime  # UTC


def claim_unsent(
    bind: Engine | Connection, owner: str, *, grace_s: float = GRACE_S, lease_s: float = LEASE_S,
    also_from: str | None = None, limit: int = CLAIM_LIMIT,
) -> list[Claimed]:
    """Lease unsent rows older than `grace_s` that nobody else holds; renew the ones `owner` holds.

    `also_from` is a claimant prefix whose leases are taken over at once (a process restarted in
    the same replica slot: its previous incarnation is dead).
    """
    now = utc_datetime()
    with transaction(bind) as connection:
        free = [_OUTBOX.c.claimed_until.is_(None), _OUTBOX.c.claimed_until < now, _OUTBOX.c.claimed_by == owner]
        if also_from is not None:
            free.append(_OUTBOX.c.claimed_by.like(also_from + "%"))
        query = (
            select(_OUTBOX.c.id, _OUTBOX.c.subject, _OUTBOX.c.payload, _OUTBOX.c.event_id, _OUTBOX.c.created_at)
            .where(_OUTBOX.c.sent_at.is_(None), _OUTBOX.c.created_at < now - timedelta(seconds=grace_s),
                   or_(*free))
            .order_by(_OUTBOX.c.id)
            .limit(limit)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = connection.execute(query).all()
        if rows:
            connection.execute(
                _OUTBOX.update().where(_OUTBOX.c.id.in_([r[0] for r in rows]))
                .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease_s))
            )
    return [Claimed(s, bytes(p), i, _utc(c)) for _, s, p, i, c in rows]


def blind_limit_s(duplicate_window_s: float) -> float:
    """How old an event may be and still be published without asking the stream first: a little
    less than the duplicate window (which starts when a first copy was stored, after the row)."""
    return duplicate_window_s - min(5.0, duplicate_window_s / 2)


def needs_lookup(row: Claimed, duplicate_window_s: float) -> bool:
    """Near or past the duplicate window: a copy of it might already be in the stream, unprotected."""
    return row.created_at < utc_datetime() - timedelta(seconds=blind_limit_s(duplicate_window_s))


async def stored_already(nc: Client, rows: list[tuple[str, str, datetime]], duplicate_window_s: float) -> set[str]:
    """Event ids among unsent rows (subject, event id, created at) the stream already holds.

    Raises LookupFailed when the stream cannot say (an error, or no answer within SCAN_TIMEOUT_S).
    """
    now = datetime.now(timezone.utc)
    old = [(subject, event_id, _utc(created)) for subject, event_id, created in rows
           if _utc(created) < now - timedelta(seconds=duplicate_window_s)]
    if not old:
        return set()
    try:
        return await _scan(nc, old)
    except LookupFailed:
        raise
    except Exception as exc:
        raise LookupFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None


async def _scan(nc: Client, old: list[tuple[str, str, datetime]]) -> set[str]:
    wanted = {event_id for _, event_id, _ in old}
    found: set[str] = set()
    done = asyncio.get_running_loop().create_future()

    async def look(msg: Msg) -> None:
        event_id = (msg.headers or {}).get("Nats-Msg-Id")
        if event_id in wanted:
            found.add(event_id)
        if (found == wanted or msg.metadata.num_pending == 0) and not done.done():
            done.set_result(None)

    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=min(created for _, _, created in old) - CLOCK_SLACK,
        filter_subjects=sorted({subject for subject, _, _ in old}),
    )
    subscription = await nc.jetstream().subscribe(
        "", stream=STREAM, cb=look, ordered_consumer=True, config=config, pending_msgs_limit=-1, pending_bytes_limit=-1,
    )
    try:
        if (await subscription.consumer_info()).num_pending and not done.done():
            try:
                await asyncio.wait_for(done, SCAN_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise LookupFailed(f"the stream scan did not end within {SCAN_TIMEOUT_S:g} s") from None
    finally:
        try:
            await subscription.unsubscribe()
        except Exception:
            pass
    return found


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back without a zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

