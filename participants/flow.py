"""The choreography: which event follows which, and which participant reacts to each.

No process reads this to decide anything (each participant only knows its own handlers); it is
the one description of the whole saga that the views (`tail`, `trace`) and the checks
(`sagactl check`) use to say what a saga did and what it is waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    FINALIZED_SALE,
    REASON_DEADLINE,
    REASON_INSUFFICIENT_BALANCE,
    REASON_UNKNOWN_SALE,
    REASON_UNKNOWN_USER,
    REFUNDED_PAYMENT,
    ROLLBACK_INVENTORY,
    STATUS_AFTER,
    STATUS_PENDING,
    TERMINAL_TYPES,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
)

# The submit request (core NATS, outside the stream) that starts every saga.
SUBMIT = "submit"


@dataclass(frozen=True)
class Step:
    """What a participant does when `after` is on the stream: emit one of `emits`."""

    after: str  # an event type, or SUBMIT
    actor: str  # the participant that reacts
    emits: tuple[str, ...]  # the events it may emit, the success path first
    compensates: bool = False  # it undoes an earlier step's effect


STEPS: dict[str, Step] = {
    step.after: step
    for step in (
        Step(SUBMIT, "sale", (CREATED_SALE,)),
        Step(CREATED_SALE, "inventory", (UPDATED_INVENTORY, ROLLBACK_INVENTORY)),
        Step(UPDATED_INVENTORY, "payment", (VALIDATED_PAYMENT, FAILED_PAYMENT)),
        Step(VALIDATED_PAYMENT, "sale", (FINALIZED_SALE,)),
        # The compensation the reference system never ran: stock debited for a refused payment
        # is credited back.
        Step(FAILED_PAYMENT, "inventory", (ROLLBACK_INVENTORY,), compensates=True),
        Step(ROLLBACK_INVENTORY, "sale", (CANCELED_SALE,)),
    )
}

# Event type -> the participant that publishes it.
PRODUCERS: dict[str, str] = {emitted: step.actor for step in STEPS.values() for emitted in step.emits}

# FAILED_PAYMENT's reasons: a ROLLBACK_INVENTORY carrying one of them answers a refused payment
# (a compensation), any other reason is inventory's own refusal.
PAYMENT_REASONS = frozenset({REASON_INSUFFICIENT_BALANCE, REASON_UNKNOWN_USER})
# A sale the sale service canceled on its own (its deadline passed, or it never opened it): the
# CANCELED_SALE comes first, then inventory's ROLLBACK_INVENTORY and payment's REFUNDED_PAYMENT
# undo what they had done (docs/pattern.md, "Timeouts in a choreography").
SALE_CANCEL_REASONS = frozenset({REASON_DEADLINE, REASON_UNKNOWN_SALE})


def next_step(event_types: Iterable[str]) -> Step | None:
    """The step a saga waits for, given its events in stream order; None once it is terminal.

    Types the choreography does not know (a new participant's events) and repeated copies are
    skipped: the saga waits on the reaction to its last known event.
    """
    last = SUBMIT
    for event_type in event_types:
        if event_type in TERMINAL_TYPES:
            return None
        if event_type in STEPS:
            last = event_type
    return STEPS[last]


def expected_next(event_types: list[str]) -> tuple[str, str] | None:
    """(event type, participant) a non-terminal saga waits for; None once it is terminal.

    When the next participant may emit one of several events (inventory after CREATED_SALE:
    UPDATED_INVENTORY or ROLLBACK_INVENTORY), the success-path one is named; `next_step` has all.
    """
    step = next_step(event_types)
    return None if step is None else (step.emits[0], step.actor)


def consumer_of(event_type: str) -> str | None:
    """The participant that reacts to an event type in the choreography; None for terminal ones."""
    step = STEPS.get(event_type)
    return step.actor if step else None


def is_compensation(event_type: str, reason: str | None) -> bool:
    """Whether one event, seen on its own, undoes an earlier step (a refused payment's rollback,
    the stock given back or the money refunded for a sale canceled by its deadline)."""
    if event_type == REFUNDED_PAYMENT:
        return True
    return event_type == ROLLBACK_INVENTORY and (reason in PAYMENT_REASONS or reason in SALE_CANCEL_REASONS)


def outcome_kind(event_type: str, reason: str | None = None) -> str:
    """success, failure, compensation or terminal: what an event means for its saga."""
    if event_type in TERMINAL_TYPES:
        return "terminal"
    if is_compensation(event_type, reason):
        return "compensation"
    if event_type in (FAILED_PAYMENT, ROLLBACK_INVENTORY):
        return "failure"
    return "success"


def final_status(event_types: Iterable[str]) -> str:
    """FINALIZED, CANCELED or PENDING, from a saga's events."""
    return next((STATUS_AFTER[t] for t in event_types if t in STATUS_AFTER), STATUS_PENDING)
