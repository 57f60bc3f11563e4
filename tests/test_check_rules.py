"""The rules of `sagactl check` on hand-made snapshots and histories (no NATS), one rule at a time."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sagactl.check import Audit, Violation
from sagactl.snapshot import (
    MoneyRecord,
    PaymentRecord,
    SaleRecord,
    Snapshot,
    StockRecord,
)
from sagactl.streams.deadletters import DeadLetter
from sagactl.streams.histories import SaleHistory, HistoryEvent

NOW = 1_000_000.0
FLOW = {
    "finalized": ["CREATED_SALE", "UPDATED_INVENTORY", "VALIDATED_PAYMENT", "FINALIZED_SALE"],
    "out_of_stock": ["CREATED_SALE", "ROLLBACK_INVENTORY", "CANCELED_SALE"],
    "refused": ["CREATED_SALE", "UPDATED_INVENTORY", "FAILED_PAYMENT", "ROLLBACK_INVENTORY", "CANCELED_SALE"],
    "at_payment": ["CREATED_SALE", "UPDATED_INVENTORY"],
    "at_inventory": ["CREATED_SALE"],
}
PRODUCERS = {"CREATED_SALE": "sale", "UPDATED_INVENTORY": "inventory", "ROLLBACK_INVENTORY": "inventory",
             "VALIDATED_PAYMENT": "payment", "FAILED_PAYMENT": "payment", "FINALIZED_SALE": "sale", "CANCELED_SALE": "sale"}


class World:
    """A consistent little system: add sales with their flows, then break one thing."""

    def __init__(self) -> None:
        self.sales: dict[int, SaleRecord] = {}
        self.histories: dict[int, SaleHistory] = {}
        self.payments: list[PaymentRecord] = []
        self.stock, self.balance, self.paid = 10, Decimal("100.00"), Decimal("0.00")
        self.seq = 0

    def sale(self, flow: str, quantity: int = 1, value: str = "10.00", age: float = 1.0) -> int:
        sale_id = len(self.sales) + 1
        types = FLOW[flow]
        status = {"FINALIZED_SALE": "FINALIZED", "CANCELED_SALE": "CANCELED"}.get(types[-1], "PENDING")
        self.sales[sale_id] = SaleRecord(sale_id, 1, 1, Decimal(value), quantity, status, None)
        history = SaleHistory(sale_id, 1, 1, quantity, value)
        for event_type in types:
            self.seq += 1
            history.steps.append(HistoryEvent(self.seq, event_type, f"{sale_id}-{event_type}", PRODUCERS[event_type], NOW - age))
        self.histories[sale_id] = history
        if "UPDATED_INVENTORY" in types and "FAILED_PAYMENT" not in types:
            self.stock -= quantity
        if "VALIDATED_PAYMENT" in types:
            self.balance -= Decimal(value)
            self.paid += Decimal(value)
            self.payments.append(PaymentRecord(len(self.payments) + 1, 1, sale_id, Decimal(value)))
        return sale_id

    def audit(self, dead: list[DeadLetter] | None = None, before: int | None = None, stuck_after: float = 30.0) -> list[Violation]:
        snapshot = Snapshot(
            stock=[StockRecord(1, 10, self.stock)],
            money=[MoneyRecord(1, Decimal("100.00"), self.balance, self.paid)],
            sales=self.sales, payments=self.payments,
        )
        return Audit(snapshot, self.histories, self.seq if before is None else before, dead or [], NOW, stuck_after).violations()


def checks(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.check, v.subject) for v in violations]


def test_a_consistent_system_passes() -> None:
    world = World()
    for flow in ("finalized", "out_of_stock", "refused", "at_payment"):
        world.sale(flow, quantity=2)
    assert world.audit() == []


def test_missing_or_extra_stock_is_a_stock_violation() -> None:
    world = World()
    world.sale("finalized", quantity=3)
    world.stock += 1
    [violation] = world.audit()
    assert (violation.check, violation.subject) == ("stock", "product 1")
    assert "baseline 10 != stock 8 + finalized 3" in violation.detail


def test_a_saga_waiting_for_inventory_may_or_may_not_have_been_debited() -> None:
    world = World()
    world.sale("at_inventory", quantity=4)
    assert world.audit() == []  # not debited yet
    world.stock -= 4
    assert world.audit() == []  # debited, UPDATED_INVENTORY still in the outbox
    world.stock -= 1
    assert checks(world.audit()) == [("stock", "product 1")]  # more missing than any saga in flight can hold


def test_events_after_the_snapshot_make_a_sale_uncertain_not_a_violation() -> None:
    world = World()
    world.sale("finalized", quantity=2)
    world.stock += 2  # the stock read happened before this saga's debit
    assert checks(world.audit()) == [("stock", "product 1")]
    assert world.audit(before=0) == []


def test_money_and_negative_balance() -> None:
    world = World()
    world.sale("finalized")
    world.balance = Decimal("-1.00")
    assert checks(world.audit()) == [("negative", "user 1"), ("money", "user 1")]


def test_payments_must_match_their_sales() -> None:
    world = World()
    paid = world.sale("finalized")
    canceled = world.sale("out_of_stock")
    unpaid = world.sale("finalized")
    world.payments = [p for p in world.payments if p.sale_id != unpaid]
    world.payments[0] = PaymentRecord(1, 2, paid, Decimal("10.00"))  # another user's
    world.payments.append(PaymentRecord(7, 1, canceled, Decimal("1.00")))
    world.payments.append(PaymentRecord(8, 1, 99, Decimal("1.00")))
    found = {(v.subject, v.detail.split(" ")[0]) for v in world.audit() if v.check == "payment"}
    assert found == {(f"sale {paid}", "payment"), (f"sale {canceled}", "payment"), (f"sale {canceled}", "CANCELED"),
                     (f"sale {unpaid}", "FINALIZED"), ("sale 99", "payment")}
    # sale 99 is newer than every sale read: the snapshot reads such sales again after the
    # payments (sagactl/snapshot.py), so a sale still missing then never existed.


def test_a_canceled_sale_that_still_holds_stock() -> None:
    world = World()
    sale_id = world.sale("refused", quantity=2)
    world.histories[sale_id].steps = [s for s in world.histories[sale_id].steps if s.type != "ROLLBACK_INVENTORY"]
    world.stock -= 2
    assert ("canceled", f"sale {sale_id}") in checks(world.audit())


def test_an_event_type_decided_twice_for_one_sale() -> None:
    world = World()
    sale_id = world.sale("finalized")
    steps = world.histories[sale_id].steps
    steps.append(HistoryEvent(50, "CREATED_SALE", steps[0].event_id, "sale", NOW))  # a copy: same event id, harmless
    assert world.audit() == []
    steps.append(HistoryEvent(51, "UPDATED_INVENTORY", "another-id", "inventory", NOW))
    [violation] = [v for v in world.audit(before=60) if v.check == "applied-twice"]
    assert violation.subject == f"sale {sale_id}" and "UPDATED_INVENTORY decided 2 times" in violation.detail


def test_a_stuck_sale_names_its_last_event_and_who_acts_next() -> None:
    world = World()
    sale_id = world.sale("at_payment", age=100)
    recent = world.sale("at_payment", age=5)
    letter = DeadLetter(3, datetime.now(timezone.utc), "payment", "saga.inventory.updated", "IntegrityError: frozen", 5,
                        world.histories[sale_id].last.seq, b"{}")
    violations = world.audit(dead=[letter])
    stuck = [v for v in violations if v.check == "stuck"]
    assert [v.subject for v in stuck] == [f"sale {sale_id}"] and f"sale {recent}" not in str(stuck)
    assert "last event UPDATED_INVENTORY" in stuck[0].detail and "next: payment should handle it" in stuck[0].detail
    assert "payment dead-lettered it (dead letter 3: IntegrityError: frozen)" in stuck[0].detail
    assert ("dead-letter", "dead letter 3") in checks(violations)


def test_a_sale_whose_first_event_never_reached_the_stream_is_stuck_once_later_sales_are_old() -> None:
    world = World()
    world.sales[1] = SaleRecord(1, 1, 1, Decimal("1.00"), 1, "PENDING", None)
    world.sale("finalized", age=100)  # sale 2, submitted after sale 1
    [violation] = world.audit(stuck_after=30)
    assert (violation.check, violation.subject) == ("stuck", "sale 1")
    assert "no event of it reached the stream; next: sale should publish CREATED_SALE" in violation.detail


def test_a_participant_that_does_not_answer_is_reported_and_its_rules_skipped() -> None:
    snapshot = Snapshot(unreadable={"payment": "participant payment did not answer baseline"})
    violations = Audit(snapshot, {}, 0, [], NOW, 30).violations()
    assert checks(violations) == [("unreachable", "payment")]
