"""The saga's history for people: which events to show, from where, and the events of one sale.

The reading itself (an ephemeral ordered consumer that never disturbs the participants) is in
`sagactl.streams.reader`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Literal

from sagactl.errors import UsageError
from sagactl.streams.reader import StartAt, StreamEvent, StreamReader, read_all

__all__ = ["Origin", "Selection", "StreamEvent", "parse_since", "sale_events", "tail"]


@dataclass(frozen=True)
class Selection:
    """Which events to show. Types filter on the server (by subject), the rest here."""

    subjects: tuple[str, ...] = ()
    sale_id: int | None = None
    services: frozenset[str] = frozenset()
    # The server starts a consumer at a time, but nats-server 2.15 given a time after the last
    # message starts it at the first one: the time is checked here too.
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
    known_services: frozenset[str] | set[str] = frozenset(),
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
    return [e for e in await read_all(urls, name="sagactl-trace") if e.field("sale_id") == sale_id]
