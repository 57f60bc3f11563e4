"""Each sale's events as JetStream holds them, read in one pass: what `sagactl check` judges.

A one-shot read of a whole stream (SAGA, or the dead-letter stream) up to its last sequence,
with nats-py's ordered push consumer (ephemeral, in memory, no acks, so the participants'
durable consumers are never disturbed): 20,000 events in about 0.2 s. `sagactl.streams.reader`
is the reader that follows the stream for `tail` and `trace`, surviving NATS restarts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from participants.contract import (
    ROLLBACK_INVENTORY,
    STREAM,
    STREAM_SUBJECTS,
    UPDATED_INVENTORY,
    decode_body,
)
from sagactl.errors import Unavailable

# A read taking longer than this (plus 1 s per 20,000 messages) has stalled.
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of a sale, as the stream holds it."""

    seq: int
    type: str
    event_id: str
    producer: str
    time: float  # the stream's timestamp, seconds since the epoch
    reason: str | None = None


@dataclass
class SaleHistory:
    sale_id: int
    product_id: int
    user_id: int
    quantity: int
    value: str
    steps: list[HistoryEvent] = field(default_factory=list)

    @property
    def last(self) -> HistoryEvent:
        return self.steps[-1]

    def has(self, event_type: str) -> bool:
        return any(s.type == event_type for s in self.steps)

    def event_ids(self, event_type: str) -> set[str]:
        return {s.event_id for s in self.steps if s.type == event_type}

    @property
    def holds_stock(self) -> bool:
        """Inventory debited stock for this sale and has not credited it back (a ROLLBACK_INVENTORY
        after an UPDATED_INVENTORY is the credit: for a refused payment or a canceled sale)."""
        return self.has(UPDATED_INVENTORY) and not self.has(ROLLBACK_INVENTORY)


async def last_seq(js: JetStreamContext, stream: str) -> tuple[int, int]:
    """(number of messages, last sequence) of a stream; (0, 0) when it does not exist."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return 0, 0
    return info.state.messages, info.state.last_seq


async def read_stream(js: JetStreamContext, stream: str, subject: str, on_msg: Callable[[Msg], None]) -> int:
    """Call `on_msg` for every message of `stream` up to its last sequence now; return that sequence.

    Stops at the last sequence (or when the server says nothing is pending, which covers a
    deleted last message), so it ends even while new messages keep arriving.
    """
    messages, until = await last_seq(js, stream)
    if not messages:
        return until
    done = asyncio.get_running_loop().create_future()

    async def deliver(msg: Msg) -> None:
        meta = msg.metadata
        if meta.sequence.stream <= until:
            on_msg(msg)
        if (meta.sequence.stream >= until or meta.num_pending == 0) and not done.done():
            done.set_result(None)

    subscription = await js.subscribe(
        subject, stream=stream, cb=deliver, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
        pending_msgs_limit=-1, pending_bytes_limit=-1,
    )
    try:
        await asyncio.wait_for(done, timeout=READ_TIMEOUT_S + messages / 20_000)
    except asyncio.TimeoutError:
        raise Unavailable(f"reading stream {stream} stalled before sequence {until}") from None
    finally:
        await subscription.unsubscribe()
    return until


async def read_histories(js: JetStreamContext) -> tuple[dict[int, SaleHistory], int]:
    """Every sale's history from the SAGA stream, and the last sequence read.

    Bodies that are not saga events (malformed JSON, missing fields) are skipped: the dead-letter
    list is where they are reported, and they stay in the stream for good.
    """
    sales: dict[int, SaleHistory] = {}

    def add(msg: Msg) -> None:
        body = decode_body(msg.data)
        if body is None:
            return
        try:
            sale_id, event_type, event_id = body["sale_id"], body["type"], body["event_id"]
            if not (isinstance(sale_id, int) and isinstance(event_type, str) and isinstance(event_id, str)):
                return
            history = sales.get(sale_id)
            if history is None:
                history = sales[sale_id] = SaleHistory(
                    sale_id, int(body["product_id"]), int(body["user_id"]), int(body["quantity"]), str(body["value"])
                )
        except (KeyError, TypeError, ValueError):
            return
        meta = msg.metadata
        history.steps.append(
            HistoryEvent(meta.sequence.stream, event_type, event_id, str(body.get("producer", "?")), meta.timestamp.timestamp(), body.get("reason"))
        )

    until = await read_stream(js, STREAM, STREAM_SUBJECTS[0], add)
    return sales, until
