"""The choreography map: what a saga waits for, what an event means (no NATS needed)."""

from __future__ import annotations

import pytest

from participants.flow import (
    PRODUCERS,
    expected_next,
    final_status,
    next_step,
    outcome_kind,
)

C, U, R, V, F, FIN, CAN = ("CREATED_SALE", "UPDATED_INVENTORY", "ROLLBACK_INVENTORY", "VALIDATED_PAYMENT",
                           "FAILED_PAYMENT", "FINALIZED_SALE", "CANCELED_SALE")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], ("CREATED_SALE", "sale")),  # the sale row exists, its first event is not published yet
        ([C], ("UPDATED_INVENTORY", "inventory")),
        ([C, U], ("VALIDATED_PAYMENT", "payment")),
        ([C, U, V], ("FINALIZED_SALE", "sale")),
        ([C, U, F], ("ROLLBACK_INVENTORY", "inventory")),
        ([C, U, F, R], ("CANCELED_SALE", "sale")),
        ([C, R], ("CANCELED_SALE", "sale")),
        ([C, U, V, FIN], None),
        ([C, R, CAN], None),
        ([C, C, U, U], ("VALIDATED_PAYMENT", "payment")),  # copies change nothing
        ([C, U, "SHIPPED_ORDER"], ("VALIDATED_PAYMENT", "payment")),  # another participant's event
    ],
)
def test_expected_next(events: list[str], expected: tuple[str, str] | None) -> None:
    assert expected_next(events) == expected


def test_next_step_names_every_possible_event() -> None:
    step = next_step([C])
    assert step is not None and step.emits == (U, R) and step.actor == "inventory" and step.after == C


def test_producers_follow_the_contract() -> None:
    assert PRODUCERS == {C: "sale", U: "inventory", R: "inventory", V: "payment", F: "payment", FIN: "sale", CAN: "sale"}


@pytest.mark.parametrize(
    ("event_type", "reason", "kind"),
    [
        (C, None, "success"), (U, None, "success"), (V, None, "success"),
        (F, "insufficient balance", "failure"), (R, "out of stock", "failure"),
        (R, "insufficient balance", "compensation"), (R, "unknown user", "compensation"),
        (FIN, None, "terminal"), (CAN, "out of stock", "terminal"),
    ],
)
def test_outcome_kind(event_type: str, reason: str | None, kind: str) -> None:
    assert outcome_kind(event_type, reason) == kind


def test_final_status() -> None:
    assert [final_status(e) for e in ([C, U], [C, U, V, FIN], [C, R, CAN])] == ["PENDING", "FINALIZED", "CANCELED"]
