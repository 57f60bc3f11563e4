"""PostgreSQL: a batch's handlers take turns, so that their statements share round trips.

On PostgreSQL each statement a handler runs is a round trip to the server (an UPDATE by key:
about 190 µs on the 2-core machine, 85 of them the participant's own CPU; docs/performance.md),
and a batch's handlers ran one after the other: 64 inventory events, 128 round trips. Here each
fresh event of a batch is handled in a greenlet of its own. A `Statement` run in a handler is
queued and the handler gives way; once every handler waits on a statement (or has finished), the
queued statements go to the server in one pipeline (results.run_each: one round trip) and each
handler resumes with its result. The same 64 events take two round trips of handler statements.

What this asks of a handler is what replicas of a participant already ask of it
(docs/participants.md): between two statements of yours, statements of handlers of *other
sales* may run, in the same transaction. Decide with single conditional statements (`UPDATE ...
SET quantity = quantity - :q WHERE ... AND quantity >= :q`), never with a read followed by a
write of a row that another sale may share. Events of the same sale never interleave: a later
one starts once the earlier one has finished, in delivery order. ORM work in a handler runs as
before, a round trip at a time, at the point the handler reaches it. A participant whose handlers
must run strictly one after the other declares `Participant(..., interleave=False)`.

SQLite gains nothing from this (a statement there is a function call, not a round trip), so the
runtime interleaves only on PostgreSQL.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Hashable, Sequence, TypeVar

from participants.runtime.results import Result, run_each

try:
    import greenlet
except ImportError:  # the postgres extra installs it; without it handlers run one after the other
    greenlet = None  # type: ignore[assignment]

T = TypeVar("T")

# Where Statement.run finds the turns of the batch its session is handling.
TURNS = "sagactl.interleave.turns"


def available() -> bool:
    return greenlet is not None


class Turns:
    """The statements queued by handlers waiting for their results; sent as one pipeline."""

    def __init__(self, driver_connection: Any) -> None:
        self._driver = driver_connection
        self._hub = greenlet.getcurrent()
        self._queued: list[tuple[Any, bytes, Sequence[Any]]] = []  # (greenlet, sql, values)
        self._results: dict[Any, Result] = {}

    def execute(self, sql: bytes, values: Sequence[Any]) -> Any:
        """Run a statement (`sql.numbered` SQL and its values): from a handler, give way
        until it ran with the others queued; its result, read as a cursor's."""
        current = greenlet.getcurrent()
        if current is self._hub:
            return run_each(self._driver, [(sql, values)])[0]
        self._queued.append((current, sql, values))
        self._hub.switch()
        return self._results.pop(current)

    def _send(self) -> list[Any]:
        """Run every queued statement in one round trip; whose turn is next, in the order queued.

        The statements of one turn belong to different handlers, so the order among them is one
        they could have met in anyway."""
        queued, self._queued = self._queued, []
        for (waiting, _, _), result in zip(queued, run_each(self._driver, [(sql, values) for _, sql, values in queued])):
            self._results[waiting] = result
        return [waiting for waiting, *_ in queued]


def run(turns: Turns, keys: Sequence[Hashable], calls: Sequence[Callable[[], T]],
        on_first: Callable[[], None] = lambda: None) -> list[T]:
    """Run `calls` taking turns at their statements; their results in order.

    Calls with equal keys (one sale's events) run one after the other, in order. `on_first` runs
    once, when the first of them has finished. The first exception of any call, or of a round
    trip, ends the others where they wait and is raised.
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    index_of: dict[Any, int] = {}
    busy: set[Hashable] = set()
    not_started = deque(range(len(calls)))
    ready: list[Any] = []
    finished = 0

    def body(index: int) -> Callable[[], None]:
        def call() -> None:
            try:
                results[index] = calls[index]()
            except Exception as exc:
                errors.append(exc)
        return call

    try:
        while True:
            blocked = set(busy)
            later: deque[int] = deque()
            for index in not_started:
                if keys[index] in blocked:  # behind an earlier event of the same sale
                    later.append(index)
                else:
                    busy.add(keys[index])
                    handler = greenlet.greenlet(body(index))
                    index_of[handler] = index
                    ready.append(handler)
                blocked.add(keys[index])
            not_started = later
            for handler in ready:
                handler.switch()
                if handler.dead:
                    index = index_of.pop(handler)
                    if errors:
                        raise errors[0]
                    busy.discard(keys[index])
                    finished += 1
                    if finished == 1:
                        on_first()
            ready = turns._send() if turns._queued else []
            if not ready and not not_started:
                return results
    finally:
        for handler in index_of:  # still waiting on a statement: end it there
            if not handler.dead:
                handler.throw()
