"""Reading the `SAGA` stream through an ephemeral, ordered, unacknowledged consumer of our own.

The participants' durable consumers are never touched. A reader creates its own consumer (in
memory, no acks, deleted on close and by the server `INACTIVE_S` after the reader vanished),
checks that deliveries arrive without a gap, and after a reconnect or a gap recreates it just
after the last stream sequence it delivered: a NATS restart neither loses nor repeats an event
(the ordered-consumer protocol, done by hand because nats-py's ordered push consumer only resets
on a missed heartbeat).

It pulls with plain pull requests on its own inbox (`$JS.API.CONSUMER.MSG.NEXT`) and reads the
sequence numbers from the reply subject: nats-py's `fetch()` costs a task and a `wait_for` per
message, and replaying a long stream was three times slower with it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from participants.contract import STREAM, SUBJECT_ROOT, decode_body
from participants.runtime import broker
from participants.runtime.jetstream import parse_ack_subject
from sagactl.errors import Unavailable

INACTIVE_S = 30.0  # the server deletes our consumer this long after we vanish
PULL_BATCH = 1000
PULL_EXPIRES_S = 1.0  # a following pull request lasts this long, then the next one is sent
ANSWER_GRACE_S = 2.0  # a pull request unanswered this long after it expired was lost
RETRY_S = 0.5
PROBE_EVERY_S = 5.0  # while idle, check that our consumer still exists


@dataclass(frozen=True)
class StreamEvent:
    """One message of the stream: where and when it was stored, and its body as published."""

    seq: int
    subject: str
    time: datetime
    data: bytes
    body: dict[str, Any] | None  # None when the data is not a JSON object
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def field(self, name: str) -> Any:
        return None if self.body is None else self.body.get(name)

    @property
    def event_type(self) -> str | None:
        return self.field("type")

    def as_json(self) -> dict[str, Any]:
        data: Any = self.body if self.body is not None else self.data.decode(errors="replace")
        return {"seq": self.seq, "subject": self.subject, "time": self.time.isoformat(), "data": data}


@dataclass(frozen=True)
class StartAt:
    """Where a reader starts: a stream sequence, a time, or (neither) the first message."""

    sequence: int | None = None
    time: datetime | None = None


class StreamReader:
    """Reads the stream in order from a start point; `read` may be called again to go on."""

    def __init__(self, nc: Client, subjects: tuple[str, ...] = (), start: StartAt = StartAt(), name: str = "sagactl",
                 stream: str = STREAM) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.subjects = subjects
        self.start = start
        self.position = 0  # the last stream sequence delivered to us
        self._prefix = name
        self._consumer: str | None = None
        self._inbox: Any = None
        self._expected = 1  # the next consumer sequence; anything else means a lost delivery
        self._stale = True
        self._buffer: list[Msg] = []
        self._arrived = asyncio.Event()
        self._owed = 0  # messages the open pull request may still bring; 0: none is open
        self._exhausted = False  # a no-wait request found nothing more

    @classmethod
    async def open(cls, urls: list[str], subjects: tuple[str, ...] = (), name: str = "sagactl",
                   follow: bool = False, stream: str = STREAM) -> "StreamReader":
        reader: StreamReader

        async def on_event(what: str) -> None:
            if what == "reconnected":
                reader._stale = True  # what was in flight to us while away is gone

        try:
            nc = await broker.connect(urls, name, reconnect_forever=follow, on_event=on_event)
        except broker.BrokerUnavailable as exc:
            raise Unavailable(str(exc)) from None
        reader = cls(nc, subjects, name=name, stream=stream)
        return reader

    async def bounds(self) -> tuple[int, int]:
        """The stream's first and last sequence."""
        info = await self._stream_info()
        return info.state.first_seq, info.state.last_seq

    async def producers(self) -> set[str]:
        """Participants that published on the stream, by subject (`saga.<producer>.<what>`)."""
        info = await self._stream_info(f"{SUBJECT_ROOT}.>")
        return {s.split(".")[1] for s in (info.state.subjects or {}) if s.count(".") >= 2}

    async def _stream_info(self, subjects_filter: str | None = None) -> Any:
        try:
            return await self.js.stream_info(self.stream, subjects_filter=subjects_filter)
        except NotFoundError:
            raise Unavailable(f"there is no {self.stream} stream yet (start a system with `sagactl up`)") from None
        except Exception as exc:
            raise Unavailable(f"cannot read the {self.stream} stream: {broker.describe(exc)}") from None

    async def read(self, follow: bool) -> AsyncIterator[StreamEvent]:
        """Yield events in stream order; without `follow`, stop once caught up with the stream."""
        probed = time.monotonic()
        while True:
            try:
                if self._stale:
                    await self._recreate()
                if self._owed <= 0:
                    await self._pull(follow)
            except Exception as exc:
                if not follow:
                    raise Unavailable(f"cannot read the {self.stream} stream: {broker.describe(exc)}") from None
                self._stale = True
                await asyncio.sleep(RETRY_S)
                continue
            try:
                await asyncio.wait_for(self._arrived.wait(), PULL_EXPIRES_S + ANSWER_GRACE_S)
            except asyncio.TimeoutError:
                if not follow:
                    raise Unavailable(f"the {self.stream} stream stopped answering") from None
                self._owed = 0  # the request was lost with a connection: ask again
                if time.monotonic() - probed > PROBE_EVERY_S:
                    probed = time.monotonic()
                    self._stale = self._stale or not await self._consumer_exists()
                continue
            self._arrived.clear()
            batch, self._buffer = self._buffer, []
            for msg in batch:
                delivery = parse_ack_subject(msg.reply)
                if delivery is None:
                    continue
                if delivery.consumer_seq != self._expected:
                    self._stale = True  # a delivery was lost: start again after the last one we have
                    break
                self._expected += 1
                if delivery.stream_seq > self.position:
                    self.position = delivery.stream_seq
                    stored = datetime.fromtimestamp(delivery.timestamp_ns / 1e9, timezone.utc)
                    yield StreamEvent(delivery.stream_seq, msg.subject, stored, msg.data, decode_body(msg.data),
                                      dict(msg.headers) if msg.headers else {})
                if not follow and delivery.pending == 0:
                    return
            else:
                if not follow and self._exhausted:
                    return

    async def close(self) -> None:
        await self._drop()
        if not self.nc.is_closed:
            await self.nc.close()

    async def _pull(self, follow: bool) -> None:
        """Ask for the next batch: waiting up to PULL_EXPIRES_S when following, else only what is there."""
        request: dict[str, Any] = {"batch": PULL_BATCH}
        if follow:
            request["expires"] = int(PULL_EXPIRES_S * 1e9)
        else:
            request["no_wait"] = True
        self._owed, self._exhausted = PULL_BATCH, False
        await self.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}", orjson.dumps(request),
                              reply=self._inbox.subject)

    async def _recreate(self) -> None:
        await self._drop()
        name = f"{self._prefix}-{uuid.uuid4().hex[:12]}"
        config = ConsumerConfig(name=name, ack_policy=AckPolicy.NONE, mem_storage=True, num_replicas=1,
                                inactive_threshold=INACTIVE_S)
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        elif self.subjects:
            config.filter_subjects = list(self.subjects)
        if self.position or self.start.sequence:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.position + 1 if self.position else max(self.start.sequence or 1, 1)
        elif self.start.time:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = self.start.time.astimezone(timezone.utc)
        else:
            config.deliver_policy = DeliverPolicy.ALL
        await self.js.add_consumer(self.stream, config)
        self._consumer = name
        self._buffer, self._owed, self._expected = [], 0, 1
        self._arrived.clear()
        self._inbox = await self.nc.subscribe(self.nc.new_inbox(), cb=self._on_message)
        self._stale = False

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            self._owed -= 1
        elif status == "100":
            return  # a heartbeat: this reader asks for none
        else:
            # 404 nothing more (no-wait), 408 the request expired, 409 the consumer went away.
            self._owed = 0
            self._exhausted = status == "404"
            self._stale = self._stale or status == "409"
        self._arrived.set()

    async def _drop(self) -> None:
        inbox, consumer = self._inbox, self._consumer
        self._inbox = self._consumer = None
        if inbox is not None:
            try:
                await inbox.unsubscribe()
            except Exception:
                pass
        if consumer is not None and self.nc.is_connected:
            try:
                await self.js.delete_consumer(self.stream, consumer)
            except Exception:
                pass  # gone with a restarted server, or left for INACTIVE_S to remove

    async def _consumer_exists(self) -> bool:
        try:
            await self.js.consumer_info(self.stream, self._consumer or "")
            return True
        except NotFoundError:
            return False
        except Exception:
            return True  # cannot tell now (disconnected); the reconnect callback covers that case


async def read_all(urls: list[str], name: str = "sagactl") -> list[StreamEvent]:
    """Every message the stream holds now, in order (a reader of its own that acks nothing)."""
    reader = await StreamReader.open(urls, name=name)
    try:
        await reader.bounds()
        return [event async for event in reader.read(follow=False)]
    finally:
        await reader.close()
