"""The participant API: what a saga participant declares; the runtime does everything else.

A participant is a name, its tables (SQLModel classes) with seed rows, and one handler per event
type it consumes. A handler gets the event and an open database session inside the runtime's
transaction and returns the events to emit (`event.follow(...)`): one, a list, or None. It never
commits, acks or publishes: the runtime records the consumed event id (inbox) and the emitted
events (outbox) in the same transaction, commits, publishes after the commit and acks after that.
A handler that raises has changed nothing; the event is retried with backoff and, after the last
attempt, parked in the dead-letter stream. docs/participants.md is the tutorial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from sqlmodel import Session, SQLModel

from participants.contract import Event, replay_subject, subject_for

HandlerResult = Event | Sequence[Event] | None
Handler = Callable[[Event, Session], HandlerResult]
# A control request: the request body and a session in a transaction -> (reply, events to emit).
RequestHandler = Callable[[dict[str, Any], Session], tuple[dict[str, Any], Sequence[Event]]]


class Simulation(Protocol):
    """A participant's decisions without its database, for `sagactl bench --raw` (state in memory)."""

    def handle(self, event: Event) -> HandlerResult: ...

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], Sequence[Event]]: ...


class TransientError(Exception):
    """A handler failure worth retrying later (the event is naked with a delay, not dropped)."""


@dataclass
class Participant:
    """A saga participant: declare it once, run it with `sagactl participant run MODULE:OBJECT`.

    name: a lowercase identifier; it names the durable consumer, the database
        (`<state dir>/<name>.db`, or env `SAGACTL_DB_URL_<NAME>`) and the control subjects.
    tables: the SQLModel tables `sagactl state` shows; created at start if missing.
    handlers: event type -> `handler(event, session) -> Event | list[Event] | None`. The
        consumer is filtered to these types' subjects.
    seed: rows inserted the first time the database starts, never again.
    requests: verb -> `handler(body, session) -> (reply, events)`, answered on
        `sagactl.<name>.<verb>` (core NATS request/reply, outside the stream).
    private_tables: tables the participant keeps for itself: created, not shown by `state`.
    replay_history: when the participant first joins a running system, handle every event
        still in the stream (True, the default) or only events published from then on.
    interleave: on PostgreSQL, let the handlers of one batch take turns at their `Statement`s
        so that those share round trips (True, the default; events of one sale never
        interleave). False when a handler reads a row another sale shares and then writes it.
    """

    name: str
    tables: Sequence[type[SQLModel]]
    handlers: dict[str, Handler]
    seed: Callable[[], Iterable[SQLModel]] = lambda: ()
    requests: dict[str, RequestHandler] = field(default_factory=dict)
    private_tables: Sequence[type[SQLModel]] = ()
    replay_history: bool = True
    interleave: bool = True
    # Optional: makes a Simulation, so `sagactl bench --raw` can measure the messaging alone.
    simulate: Callable[[], Simulation] | None = None
    # Optional: (seconds, handler) run every so often like a request with an empty body, its
    # events committed and published the same way (the sale service expires deadlines with it).
    periodic: tuple[float, RequestHandler] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.lower() != self.name:
            raise ValueError(f"participant name {self.name!r} must be a lowercase identifier")
        for event_type in self.handlers:
            subject_for(event_type)  # every handled type must be registered in the contract
        reserved = {"state", "ping", "rows"} & set(self.requests)
        if reserved:
            raise ValueError(f"request names {sorted(reserved)} are reserved by the runtime")

    @property
    def all_tables(self) -> list[type[SQLModel]]:
        return [*self.tables, *self.private_tables]

    @property
    def subjects(self) -> list[str]:
        """The stream subjects this participant's durable consumer is filtered to (its own replay
        subject too: a dead letter it gave up on is replayed to it alone)."""
        return sorted({subject_for(t) for t in self.handlers} | {replay_subject(self.name)})

    def handle(self, event: Event, session: Session) -> list[Event]:
        return as_events(self.handlers[event.type](event, session))


def as_events(result: HandlerResult) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    return list(result)
