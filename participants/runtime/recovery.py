"""Before republishing old unsent outbox rows: which of them the stream holds already.

A row stays unsent when the process died between publishing it and marking it sent. On restart
the relay publishes it again, which is harmless while the stream's duplicate window still
covers the first copy (the stream drops the second) and while every consumer's inbox still
remembers the event. After a longer downtime neither holds: the inboxes are pruned (see
`outbox.Retention`) and a blind republish stores a second copy that is applied again (stock
debited twice). So rows older than the duplicate window are looked up first, with one scan of
their subjects from the oldest row's creation time, and only the ones not found are published.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from participants.contract import STREAM

CLOCK_SLACK = timedelta(seconds=5)  # the row's time is ours, the stream's is the server's
SCAN_TIMEOUT_S = 30.0


async def stored_already(nc: Client, rows: list[tuple[str, str, datetime]], duplicate_window_s: float) -> set[str]:
    """Event ids among unsent rows (subject, event id, created at) the stream already holds."""
    now = datetime.now(timezone.utc)
    old = [(subject, event_id, _utc(created)) for subject, event_id, created in rows
           if _utc(created) < now - timedelta(seconds=duplicate_window_s)]
    if not old:
        return set()
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
            await asyncio.wait_for(done, SCAN_TIMEOUT_S)
    finally:
        await subscription.unsubscribe()
    return found


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back without a zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
