"""The saga's history: the `SAGA` stream read through an ephemeral, ordered, unacknowledged consumer.

The participants' durable consumers are never touched. A reader creates its own consumer (in
memory, no acks, deleted on close and by the server after `INACTIVE_S` if the reader dies),
checks that deliveries arrive without a gap, and after a reconnect or a gap recreates it just
after the last stream sequence it delivered, so a NATS restart neither loses nor repeats an event
(the ordered-consumer protocol, done by hand because nats-py's ordered push consumer only resets
on a missed heartbeat).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable, Literal

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from participants.contract import STREAM, SUBJECT_ROOT
from participants.runtime import broker
from sagactl.errors import Unavailable, UsageError

INACTIVE_S = 30.0  # the server deletes our consumer this long after we vanish
FETCH_BATCH = 512
FETCH_TIMEOUT_S = 1.0
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

    @classmethod
    def of(cls, msg: Msg) -> "StreamEvent":
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            body = None
        meta = msg.metadata
        return cls(meta.sequence.stream, msg.subject, meta.timestamp, msg.data, body if isinstance(body, dict) else None)

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


@dataclass(frozen=True)
class Selection:
    """Which events to show. Types filter on the server (by subject), the rest here."""

    subjects: tuple[str, ...] = ()
    sale_id: int | None = None
    services: frozenset[str] = frozenset()
    # The server starts a consumer at a time, but one after the last message starts it at the
    # first one: the time is checked here too.
    since: datetime | None = None

    @property
    def everything(self) -> bool:
        return not self.subjects and self.sale_id is None and not self.services and self.since is None

    def matches(self, event: StreamEvent) -> bool:
        if self.since is not None and event.time < self.since:
            return False
        if self.sale_id is not None and event.field("sale_id") != self.sale_id:
            return False
        return not self.services or event.field("producer") in self.services


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`90s`, `5m`, `2h`, `1d` ago, or an ISO 8601 timestamp (local time when it has no zone)."""
    now = now or datetime.now(timezone.utc)
    duration = _DURATION.match(text)
    if duration:
        return now - timedelta(seconds=float(duration.group(1)) * _UNITS[duration.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since: {text!r} is neither a duration (30s, 5m, 2h, 1d) nor an ISO timestamp") from None
    return moment if moment.tzinfo else moment.astimezone()


class StreamReader:
    """Reads the stream in order from a start point; `read` may be called again to go on."""

    def __init__(self, nc: Client, subjects: tuple[str, ...] = (), start: StartAt = StartAt(), name: str = "sagactl") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subjects = subjects
        self.start = start
        self.position = 0  # the last stream sequence delivered to us
        self._prefix = name
        self._consumer: str | None = None
        self._sub: Any = None
        self._expected = 1  # the next consumer sequence; anything else means a lost delivery
        self._stale = True

    @classmethod
    async def open(cls, urls: list[str], subjects: tuple[str, ...] = (), name: str = "sagactl",
                   follow: bool = False) -> "StreamReader":
        reader: StreamReader

        async def on_event(what: str) -> None:
            if what == "reconnected":
                reader._stale = True  # what was in flight to us while away is gone

        try:
            nc = await broker.connect(urls, name, reconnect_forever=follow, on_event=on_event)
        except broker.BrokerUnavailable as exc:
            raise Unavailable(str(exc)) from None
        reader = cls(nc, subjects, name=name)
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
            return await self.js.stream_info(STREAM, subjects_filter=subjects_filter)
        except NotFoundError:
            raise Unavailable(f"there is no {STREAM} stream yet (start a system with `sagactl up`)") from None
        except Exception as exc:
            raise Unavailable(f"cannot read the {STREAM} stream: {broker.describe(exc)}") from None

    async def read(self, follow: bool) -> AsyncIterator[StreamEvent]:
        """Yield events in stream order; without `follow`, stop once caught up with the stream."""
        probed = time.monotonic()
        while True:
            if self._stale:
                try:
                    await self._recreate()
                except Exception as exc:
                    if not follow:
                        raise Unavailable(f"cannot read the {STREAM} stream: {broker.describe(exc)}") from None
                    await asyncio.sleep(RETRY_S)
                    continue
                if not follow and await self._caught_up():
                    return
            try:
                msgs = await self._sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                if not follow and await self._caught_up():
                    return
                if follow and time.monotonic() - probed > PROBE_EVERY_S:
                    probed = time.monotonic()
                    self._stale = not await self._consumer_exists()
                continue
            except Exception as exc:
                if not follow:
                    raise Unavailable(f"lost the {STREAM} stream while reading: {broker.describe(exc)}") from None
                self._stale = True
                await asyncio.sleep(RETRY_S)
                continue
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.consumer != self._expected:
                    self._stale = True  # a delivery was lost: start again after the last one we have
                    break
                self._expected += 1
                if meta.sequence.stream <= self.position:
                    continue
                self.position = meta.sequence.stream
                yield StreamEvent.of(msg)
            else:
                if not follow and msgs and msgs[-1].metadata.num_pending == 0:
                    return

    async def close(self) -> None:
        await self._drop()
        if not self.nc.is_closed:
            await self.nc.close()

    async def _recreate(self) -> None:
        await self._drop()
        name = f"{self._prefix}-{uuid.uuid4().hex[:12]}"
        config = ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=INACTIVE_S,
            max_waiting=16,
        )
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
        await self.js.add_consumer(STREAM, config)
        self._consumer = name
        self._sub = await self.js.pull_subscribe_bind(consumer=name, stream=STREAM)
        self._expected = 1
        self._stale = False

    async def _drop(self) -> None:
        sub, consumer = self._sub, self._consumer
        self._sub = self._consumer = None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        if consumer is not None and self.nc.is_connected:
            try:
                await self.js.delete_consumer(STREAM, consumer)
            except Exception:
                pass  # gone with a restarted server, or left for INACTIVE_S to remove

    async def _caught_up(self) -> bool:
        try:
            info = await self.js.consumer_info(STREAM, self._consumer or "")
        except Exception as exc:
            raise Unavailable(f"cannot read the {STREAM} stream: {broker.describe(exc)}") from None
        return info.num_pending == 0

    async def _consumer_exists(self) -> bool:
        try:
            await self.js.consumer_info(STREAM, self._consumer or "")
            return True
        except NotFoundError:
            return False
        except Exception:
            return True  # cannot tell now (disconnected); the reconnect callback covers that case


@dataclass(frozen=True)
class Origin:
    """Where `tail` starts: new events only, the whole stream, a time, or the last N matches."""

    mode: Literal["new", "all", "since", "last"] = "new"
    since: datetime | None = None
    last: int = 0


async def tail(
    urls: list[str],
    selection: Selection,
    origin: Origin,
    follow: bool,
    emit: Callable[[StreamEvent], None],
    known_services: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Emit the selected events from `origin` on; with `follow`, keep going until cancelled."""
    reader = await StreamReader.open(urls, selection.subjects, name="sagactl-tail", follow=follow)
    try:
        first, last = await reader.bounds()
        unknown = selection.services - known_services - await reader.producers()
        if unknown:
            raise UsageError(f"--service: unknown participant {sorted(unknown)[0]!r} "
                             f"(known: {', '.join(sorted(known_services | await reader.producers()))})")
        if origin.mode == "new":
            reader.start = StartAt(sequence=last + 1)
        elif origin.mode == "since":
            reader.start = StartAt(time=origin.since)
        elif origin.mode == "last" and selection.everything:
            reader.start = StartAt(sequence=max(first, last - origin.last + 1, 1))
        elif origin.mode == "last":
            # Which events are the last N matches is only known after reading them all.
            kept: deque[StreamEvent] = deque(maxlen=origin.last)
            async for event in reader.read(follow=False):
                if selection.matches(event):
                    kept.append(event)
            for event in kept:
                emit(event)
            if not follow:
                return
        async for event in reader.read(follow):
            if selection.matches(event):
                emit(event)
    finally:
        await reader.close()


async def sale_events(urls: list[str], sale_id: int) -> list[StreamEvent]:
    """Every message of one saga, in stream order (the whole stream is read: subjects carry no id)."""
    reader = await StreamReader.open(urls, name="sagactl-trace")
    try:
        await reader.bounds()
        return [e async for e in reader.read(follow=False) if e.field("sale_id") == sale_id]
    finally:
        await reader.close()
