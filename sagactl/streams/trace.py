"""One saga rebuilt from the stream: its events in order, timings, who handled each, and its end.

The stream says what happened and when; the participants' logs (when this machine has them) say
who consumed each event, how many deliveries it took and how long the handler ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from participants.contract import REASON_DEADLINE
from participants.flow import STEPS, Step, final_status, next_step, outcome_kind
from sagactl.streams.reader import StreamEvent

# What a participant's log says it did with a consumed event.
HANDLING_RECORDS = ("handled", "duplicate", "failed", "dead_letter")


@dataclass(frozen=True)
class Handling:
    participant: str
    replica: int
    what: str  # handled, duplicate, failed, dead_letter
    deliveries: int | None
    ms: float | None
    error: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Handling":
        return cls(str(record.get("participant")), int(record.get("replica") or 1), str(record.get("what")),
                   record.get("deliveries"), record.get("ms"), record.get("error"))


@dataclass
class TraceStep:
    event: StreamEvent
    since_submit_ms: float
    since_previous_ms: float | None
    kind: str  # success, failure, compensation, terminal
    copy_of: int | None = None  # the stream sequence of an earlier copy of the same event
    handled_by: list[Handling] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        return self.event.body or {}

    @property
    def event_type(self) -> str:
        return str(self.body.get("type", "?"))

    @property
    def redeliveries(self) -> int:
        """Deliveries beyond the first, as the consuming participants logged them."""
        counts = [h.deliveries for h in self.handled_by if h.deliveries]
        return max(counts) - 1 if counts else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.event.seq,
            "subject": self.event.subject,
            "time": self.event.time.isoformat(),
            "type": self.event_type,
            "producer": self.body.get("producer"),
            "reason": self.body.get("reason"),
            "kind": self.kind,
            "since_submit_ms": round(self.since_submit_ms, 3),
            "since_previous_ms": None if self.since_previous_ms is None else round(self.since_previous_ms, 3),
            "copy_of": self.copy_of,
            "redeliveries": self.redeliveries,
            "handled_by": [h.__dict__ for h in self.handled_by],
            "data": self.event.body,
        }


@dataclass
class SagaTrace:
    sale_id: int
    steps: list[TraceStep]
    status: str  # FINALIZED, CANCELED or PENDING
    reason: str | None
    waiting_for: Step | None  # the flow step a PENDING saga waits for
    submitted_at: datetime

    @property
    def sale(self) -> dict[str, Any]:
        first = self.steps[0].body
        return {k: first.get(k) for k in ("product_id", "user_id", "value", "quantity")}

    @property
    def deadline_at(self) -> str | None:
        """When the sale's deadline falls, as its CREATED_SALE says; None without one."""
        return next((s.body.get("deadline_at") for s in self.steps if s.event_type == "CREATED_SALE"), None)

    @property
    def deadline_fired(self) -> TraceStep | None:
        """The CANCELED_SALE the deadline caused, if it fired."""
        return next((s for s in self.steps if s.event_type == "CANCELED_SALE" and s.body.get("reason") == REASON_DEADLINE), None)

    def as_json(self) -> dict[str, Any]:
        waiting = self.waiting_for
        return {
            "sale_id": self.sale_id,
            "status": self.status,
            "reason": self.reason,
            "sale": self.sale,
            "submitted_at": self.submitted_at.isoformat(),
            "deadline_at": self.deadline_at,
            "deadline_fired_at": None if self.deadline_fired is None else self.deadline_fired.event.time.isoformat(),
            "events": [s.as_json() for s in self.steps],
            "expected_next": None if waiting is None else
            {"types": list(waiting.emits), "participant": waiting.actor, "after": waiting.after},
        }


def build_trace(sale_id: int, events: list[StreamEvent], log_records: Iterable[dict[str, Any]] = ()) -> SagaTrace:
    """Put one saga's stream messages (in stream order) and its log records together."""
    handlings = _handlings_by_event(log_records)
    steps: list[TraceStep] = []
    first_seen: dict[str, int] = {}
    started = _submitted_at(events)
    previous_time: datetime | None = None
    previous_type: str | None = None
    for event in events:
        body = event.body or {}
        event_type, event_id = str(body.get("type")), str(body.get("event_id"))
        step = TraceStep(
            event=event,
            since_submit_ms=(event.time - started).total_seconds() * 1000,
            since_previous_ms=None if previous_time is None else (event.time - previous_time).total_seconds() * 1000,
            kind=_kind(event_type, body.get("reason"), previous_type),
            copy_of=first_seen.get(event_id),
            handled_by=handlings.get(f"seq:{event.seq}", []),
        )
        # A log names the event, not the copy: the first copy gets every record, later ones the
        # records of the inbox turning them away.
        logged = handlings.get(event_id, [])
        step.handled_by += logged if step.copy_of is None else [h for h in logged if h.what == "duplicate"]
        first_seen.setdefault(event_id, event.seq)
        steps.append(step)
        previous_time = event.time
        if step.copy_of is None and event_type in STEPS:
            previous_type = event_type
    types = [s.event_type for s in steps]
    status = final_status(types)
    reason = next((s.body.get("reason") for s in steps if s.kind == "terminal"), None)
    return SagaTrace(sale_id, steps, status, reason, next_step(types), started)


def _submitted_at(events: list[StreamEvent]) -> datetime:
    """When the sale was submitted: CREATED_SALE's `occurred_at` (set in the submit's transaction)."""
    for event in events:
        if event.field("type") == "CREATED_SALE" and isinstance(event.field("occurred_at"), str):
            try:
                return datetime.fromisoformat(event.field("occurred_at"))
            except ValueError:
                break
    return events[0].time


def _kind(event_type: str, reason: str | None, previous_type: str | None) -> str:
    # In a trace the saga's history says what caused an event: a compensation is recognised by the
    # step it answers as well as by its reason.
    step = STEPS.get(previous_type or "")
    if step is not None and step.compensates and event_type in step.emits:
        return "compensation"
    return outcome_kind(event_type, reason)


def _handlings_by_event(records: Iterable[dict[str, Any]]) -> dict[str, list[Handling]]:
    found: dict[str, list[Handling]] = {}
    for record in records:
        if record.get("what") not in HANDLING_RECORDS:
            continue
        key = record.get("event_id") or f"seq:{record.get('stream_seq')}"
        found.setdefault(str(key), []).append(Handling.of(record))
    return found
