"""The JetStream wire protocol the hot path speaks directly, on plain core-NATS subscriptions.

Why not the client's `fetch()` and `js.publish()`: `fetch` creates a task, an inbox and a
`wait_for` per call and per message, and `js.publish` a future per message; at tens of thousands
of events per second that bookkeeping was the largest cost (see docs/performance.md). The
protocol underneath is documented and small:

- pull: publish `{"batch": n, "expires": ns}` to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
  with a reply subject; up to n messages arrive on it (each under its own subject), then, if
  fewer, a 408 status at expiry whose `Nats-Pending-Messages` header says how many were owed;
- ack: publish `+ACK`, `-NAK {"delay": ns}` or `+TERM` to a message's reply subject, whose tokens
  carry the stream sequence and the delivery count;
- publish: a plain publish with a reply subject gets the PubAck (`{"stream":..,"seq":..}` or
  `{"error":..}`) on that subject, so a batch's PubAcks can share one wildcard subscription.

A batch's events and acks are written as protocol commands built here and handed to the
client's outgoing buffer at once (`send_all`), not through `nc.publish` one by one, which
validates both subjects, encodes the headers and looks at the flusher for every message.

This is the one module that relies on nats-py 2.16.0's (pinned) internals: a status message
carries `{"Status": "408", "Description": ...}` in `msg.headers`, with empty data, and the
client's outgoing buffer is `_pending` / `_pending_data_size`, flushed by `_flush_pending`; a
subscription without a callback queues its messages on `_pending_queue` (counted in `_pending_size`).
tests/test_jetstream_wire.py fails loudly if either changes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, NamedTuple, Sequence

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, ConnectionDrainingError, MaxPayloadError, OutboundBufferLimitError

from participants.runtime.tracing import TRACEPARENTS

NATS_PY_VERSION = "2.16.0"  # the version whose behaviour this module was written and tested against
STATUS = "Status"
DESCRIPTION = "Description"
PENDING_MESSAGES = "Nats-Pending-Messages"
ACK = b"+ACK"
RECONNECT_CHECK_S = 0.1  # how often a publish waiting for PubAcks looks for a reconnect
# An idle pull request expires every few seconds (408): this much later without one, or a message,
# the consumer no longer serves us (deleted, its server lost it). A busy loop gets the margin.
SERVED_GRACE_S = 5.0
# Room for a published event's headers (Nats-Msg-Id, traceparent) within max_payload.
PUBLISH_HEADROOM = 512
TERM = b"+TERM"


def status_of(msg: Msg) -> str | None:
    """The status code of a server status message (408, 409 ...), None for a real message."""
    headers = msg.headers
    if headers and not msg.data:
        return headers.get(STATUS)
    return None


# Token positions in an ack subject, `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`;
# the newer form has `<domain>.<account hash>` after `$JS.ACK` (two more) and a random token at the end.
_DELIVERED, _STREAM_SEQ, _CONSUMER_SEQ, _TIMESTAMP, _PENDING = 4, 5, 6, 7, 8


class AckSubject(NamedTuple):
    """What a JetStream message's ack (reply) subject says about its delivery."""

    stream_seq: int
    deliveries: int  # how often this message was delivered, this time included
    consumer_seq: int
    timestamp_ns: int  # when the stream stored it
    pending: int  # messages matching the consumer still after this one


def parse_ack_subject(reply: str) -> AckSubject | None:
    """Every field of an ack subject; None for a reply subject that is not one."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    base = 0 if len(tokens) == 9 else 2
    return AckSubject(int(tokens[base + _STREAM_SEQ]), int(tokens[base + _DELIVERED]), int(tokens[base + _CONSUMER_SEQ]),
                      int(tokens[base + _TIMESTAMP]), int(tokens[base + _PENDING]))


def delivery_info(reply: str) -> tuple[int, int]:
    """(stream sequence, delivery count) of a JetStream message: `parse_ack_subject`'s two fields
    the hot path needs, without building the rest (this runs for every consumed event)."""
    tokens = reply.split(".")
    base = 0 if len(tokens) == 9 else 2
    return int(tokens[base + _STREAM_SEQ]), int(tokens[base + _DELIVERED])


def nak_body(delay_s: float) -> bytes:
    return b"-NAK " + orjson.dumps({"delay": int(delay_s * 1e9)})


def ack_command(reply: str, body: bytes = ACK) -> bytes:
    """`PUB <reply> <n>` with `body`: an ack, nak or term of the message delivered with `reply`."""
    return b"PUB %s %d\r\n%s\r\n" % (reply.encode(), len(body), body)


def event_command(subject: str, reply: str, msg_id: str, payload: bytes, traceparent: str | None = None) -> bytes:
    """`HPUB` of an event with its `Nats-Msg-Id` (the stream's duplicate check) and a traceparent."""
    headers = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n" % msg_id.encode()
    if traceparent is not None:
        headers += b"traceparent: %s\r\n" % traceparent.encode()
    headers += b"\r\n"
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject.encode(), reply.encode(), len(headers),
                                                len(headers) + len(payload), headers, payload)


async def send_all(nc: Client, commands: list[bytes], payload_bytes: int = 0) -> None:
    """Queue protocol commands on the client's outgoing buffer and wake its flusher once.

    What `nc.publish` does for each message, once for all (the same errors when the client is
    closed, draining, or disconnected with its reconnect buffer full; then none of them is
    queued). The subjects are the stream's, our inboxes' or the server's reply subjects, so they
    are not validated again.
    """
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    size = sum(map(len, commands))
    if not nc.is_connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise OutboundBufferLimitError
    nc._pending.extend(commands)
    nc._pending_data_size += size
    nc.stats["out_msgs"] += len(commands)
    nc.stats["out_bytes"] += payload_bytes
    if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
        await nc._flush_pending(force_flush=True)
    elif nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


class PullConsumer:
    """Keep pull requests outstanding on a durable consumer and buffer what arrives.

    Credit: each request asks for `batch` messages and lives `expires_s`. A new request goes out
    whenever the messages still owed to us drop below `2 * batch`, so the server always has
    somewhere to deliver while the participant works on the previous batch. A delivered message
    arrives under its own subject, so credit is one counter: each message takes one off, and a
    request that ends early (408 at expiry, 409) takes off what its `Nats-Pending-Messages`
    header says it still owed. With no word from the server for longer than a request lives
    (a reconnect lost them), the credit starts again from zero.
    """

    def __init__(self, nc: Client, stream: str, consumer: str, batch: int, expires_s: float = 5.0) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._batch = batch
        self._expires_s = expires_s
        self._request = orjson.dumps({"batch": batch, "expires": int(expires_s * 1e9)})
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._owed = 0
        self._heard_at = time.monotonic()
        self._served_at = time.monotonic()  # the last message or expired request: the consumer serves us
        self._buffer: deque[Msg] = deque()
        self._stopping = False
        self.problems: deque[str] = deque(maxlen=20)  # 409 descriptions, for the participant's log

    async def start(self) -> None:
        # No callback: the client queues what arrives and `_drain` takes it all in one go when the
        # batch loop asks, with no task step and no coroutine per message.
        self._sub = await self._nc.subscribe(self._inbox, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await self._top_up()

    def _drain(self) -> None:
        if self._sub is None:
            return
        queue = self._sub._pending_queue
        while not queue.empty():
            self._take(queue.get_nowait())

    def _take(self, msg: Msg) -> None:
        """A message off the subscription's queue, counted out of it as nats-py does."""
        assert self._sub is not None
        self._sub._pending_size -= len(msg.data)
        self._on_message(msg)

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop pulling and give back what was delivered but never handed out.

        Without the NAKs those messages would wait out the consumer's ack wait (30 s) before
        another replica or the restarted process could have them. Requests already granted may
        still be filling while we stop, so the subscription stays open until they are (or until
        the server has been silent a moment), NAKing whatever arrives.
        """
        self._stopping = True
        await self._give_back()
        deadline = time.monotonic() + grace_s
        while self._owed > 0 and self._nc.is_connected and time.monotonic() < deadline:
            heard = self._heard_at
            await asyncio.sleep(0.05)
            self._drain()
            if self._heard_at == heard and time.monotonic() - heard > 0.2:
                break  # nothing more is coming now; an idle request expires by itself
            await self._give_back()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
        await self._give_back()

    async def _give_back(self) -> None:
        self._drain()
        while self._buffer:
            msg = self._buffer.popleft()
            if msg.reply:
                try:
                    await self._nc.publish(msg.reply, nak_body(0))
                except Exception:  # NATS away: they come back after the ack wait instead
                    self._buffer.clear()
                    return

    def served_recently(self) -> bool:
        """Whether the consumer answered our pull requests lately (a message, or one expiring
        empty): a deleted consumer or a server that lost it answers with errors or not at all."""
        self._drain()
        return time.monotonic() - self._served_at < self._expires_s + SERVED_GRACE_S

    def forget_requests(self) -> None:
        """After a reconnect the server may have lost our pull requests: ask again from zero."""
        self._owed = 0

    async def next_batch(self, timeout: float) -> list[Msg]:
        """Up to `batch` buffered messages; waits at most `timeout` for the first one."""
        self._drain()
        await self._top_up()
        if not self._buffer:
            assert self._sub is not None
            try:
                first = await asyncio.wait_for(self._sub._pending_queue.get(), timeout)
            except asyncio.TimeoutError:
                if time.monotonic() - self._heard_at > self._expires_s + 1.0:
                    self._owed = 0
                await self._top_up()
                return []
            self._take(first)
            # What arrived in the same read (a ping, a control request) woke its own task in this
            # same step: let it run before a batch that may hold the loop for a busy timeout.
            await asyncio.sleep(0)
            self._drain()
        take = min(len(self._buffer), self._batch)
        batch = [self._buffer.popleft() for _ in range(take)]
        await self._top_up()
        return batch

    async def _top_up(self) -> None:
        if self._stopping or not self._nc.is_connected:
            return
        if self._owed == 0:
            self._heard_at = time.monotonic()  # a fresh start of the silence clock
        while self._owed + len(self._buffer) < 2 * self._batch:
            self._owed += self._batch
            await self._nc.publish(self._api, self._request, reply=self._inbox)

    def _on_message(self, msg: Msg) -> None:
        self._heard_at = time.monotonic()
        status = status_of(msg)
        if status is None:
            self._served_at = self._heard_at
            if self._owed > 0:
                self._owed -= 1
            self._buffer.append(msg)
            return
        # 408 request expired, 409 consumer deleted / leadership change / max waiting, 404 none.
        headers = msg.headers or {}
        pending = headers.get(PENDING_MESSAGES)
        if pending is not None and pending.isdigit():
            self._owed = max(self._owed - int(pending), 0)
        else:
            self._owed = 0
        if status == "408":
            self._served_at = self._heard_at
        if status == "409":
            self.problems.append(str(headers.get(DESCRIPTION, "409")))


class _Pending:
    """The PubAcks one `publish_all` call still waits for."""

    __slots__ = ("remaining", "stored", "done")

    def __init__(self, count: int, done: "asyncio.Future[None]") -> None:
        self.remaining = count
        self.stored = [False] * count
        self.done = done


class PubAcks:
    """Publish to JetStream with the PubAcks of many messages collected on one subscription."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._counter = 0
        self._waiting: dict[str, tuple[_Pending, int]] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def publish_all(self, messages: Sequence[tuple[str, bytes, str]], timeout: float) -> list[bool]:
        """Publish (subject, payload, msg id) messages (transaction.Message), each with `Nats-Msg-Id`;
        True for each one stored.

        Waits until every PubAck arrived or `timeout` passed; a message without a PubAck counts as
        not stored (the caller republishes it; the stream's duplicate window drops the copy).
        """
        if not messages:
            return []
        # nats-py checks only the payload against max_payload; the server counts the headers too
        # and closes a connection that goes over, after which nats-py gives up on it for good.
        limit = self._nc.max_payload - PUBLISH_HEADROOM
        for subject, payload, _ in messages:
            if len(payload) > limit:
                raise MaxPayloadError(f"{subject}: {len(payload)} bytes and headers exceed the server's max_payload")
        pending = _Pending(len(messages), asyncio.get_running_loop().create_future())
        replies = []
        commands = []
        for index, (subject, payload, msg_id) in enumerate(messages):
            self._counter += 1
            reply = f"{self._prefix}.{self._counter}"
            replies.append(reply)
            self._waiting[reply] = (pending, index)
            # Tracing on: the span that emitted the event is its parent.
            traceparent = TRACEPARENTS.pop(msg_id, None) if TRACEPARENTS else None
            commands.append(event_command(subject, reply, msg_id, payload, traceparent))
        reconnects = self._nc.stats["reconnects"]
        deadline = time.monotonic() + timeout
        try:
            await send_all(self._nc, commands, sum(len(m[1]) for m in messages))
            # In slices: a PubAck owed by a server we lost never comes, so after a reconnect the
            # rest count as not stored at once (republished, deduplicated by their msg ids)
            # instead of after the whole timeout.
            while not pending.done.done() and self._nc.stats["reconnects"] == reconnects:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(pending.done), min(left, RECONNECT_CHECK_S))
                except asyncio.TimeoutError:
                    pass
        finally:
            for reply in replies:
                self._waiting.pop(reply, None)
        return pending.stored

    async def _on_ack(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject, None)
        if entry is None:
            return
        pending, index = entry
        if status_of(msg) is None:  # a 503 status means no stream took the message
            try:
                pending.stored[index] = "error" not in orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                pass
        pending.remaining -= 1
        if pending.remaining == 0 and not pending.done.done():
            pending.done.set_result(None)
