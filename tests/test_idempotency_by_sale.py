"""Business idempotency: decided from each participant's rows keyed by sale, not by event id.

Every test here applies events through the runtime (`apply_event`) on a real database, each event
a new one (a new event id), the way a second FAILED_PAYMENT, a copy republished under a new id,
a forged event or a replay long after the inbox forgot reach a participant.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from backends import PostgresBackend, SqliteBackend
from sqlmodel import Session, select

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    REFUNDED_PAYMENT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
    Event,
    new_event,
    parse_sale,
)
from participants.builtin import inventory
from participants.inventory.models import Inventory
from participants.builtin import payment
from participants.payment.models import User
from participants.runtime.database import create_schema, make_engine, seed_once
from participants.runtime.settle import failure_action
from participants.runtime.transaction import apply_event, apply_request
from participants.builtin import sale
from participants.sale.models import SaleRow

Backend = SqliteBackend | PostgresBackend


def engine_for(backend: Backend, participant):  # type: ignore[no-untyped-def]
    engine = make_engine(backend.url(participant.name))
    create_schema(engine, participant.all_tables)
    seed_once(engine, participant.seed())
    return engine


def created(sale_id: int = 1, quantity: int = 3, value: str = "20.00") -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(1, 1, value, quantity), "sale")


def apply(engine, participant, event: Event) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in apply_event(engine, participant, event).emitted]


def refused(engine, participant, event: Event) -> str:  # type: ignore[no-untyped-def]
    """The event is refused: its handler raises, the runtime dead-letters it at its first delivery."""
    with pytest.raises(Exception) as raised:
        apply_event(engine, participant, event)
    assert failure_action(raised.value, deliveries=1, max_deliver=5) == "dead", raised.value
    return str(raised.value)


def stock(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(Inventory.quantity).where(Inventory.product_id == 1)).one()


def balance(engine) -> Decimal:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(User.balance).where(User.id == 1)).one()


def test_a_second_failed_payment_for_a_compensated_sale_credits_nothing(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    sale_created = created(quantity=3)
    assert apply(engine, inventory, sale_created) == [UPDATED_INVENTORY]
    first = sale_created.follow(FAILED_PAYMENT, "payment", reason="insufficient balance")
    assert apply(engine, inventory, first) == [ROLLBACK_INVENTORY]
    assert stock(engine) == 10
    again = sale_created.follow(FAILED_PAYMENT, "payment", reason="insufficient balance")  # a new event id
    assert apply(engine, inventory, again) == []
    assert stock(engine) == 10


def test_a_copy_of_created_sale_under_a_new_id_reserves_nothing_more(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    first = created(quantity=3)
    assert apply(engine, inventory, first) == [UPDATED_INVENTORY]
    copy = first.model_copy(update={"event_id": first.event_id[:-4] + "beef"})
    assert apply(engine, inventory, copy) == []
    assert stock(engine) == 7


def test_a_copy_of_updated_inventory_under_a_new_id_charges_nothing_more(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    reserved = created(value="30.00").follow(UPDATED_INVENTORY, "inventory")
    assert apply(engine, payment, reserved) == [VALIDATED_PAYMENT]
    assert apply(engine, payment, reserved.follow(UPDATED_INVENTORY, "inventory")) == []
    assert balance(engine) == Decimal("70.00")


def test_a_refused_payment_is_never_charged_by_a_later_copy(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    reserved = created(value="150.00").follow(UPDATED_INVENTORY, "inventory")
    assert apply(engine, payment, reserved) == [FAILED_PAYMENT]
    apply_request(engine, payment.requests["setup"], {"users": {"1": {"balance": "1000.00"}}})
    # Its FAILED_PAYMENT is on its way to inventory: charging now would keep money for a canceled sale.
    assert apply(engine, payment, reserved.follow(UPDATED_INVENTORY, "inventory")) == []
    assert balance(engine) == Decimal("1000.00")


def test_inventory_refuses_a_failed_payment_for_a_sale_it_never_reserved(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    forged = created(sale_id=42).follow(FAILED_PAYMENT, "payment", reason="insufficient balance")
    assert "never saw CREATED_SALE for sale 42" in refused(engine, inventory, forged)
    assert stock(engine) == 10


def test_inventory_refuses_events_that_contradict_its_reservation(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    apply(engine, inventory, created(quantity=3))
    other = created(quantity=5)  # the same sale id, another quantity
    assert "3 x product 1 here" in refused(engine, inventory, other)
    assert "3 x product 1 here" in refused(engine, inventory, other.follow(FAILED_PAYMENT, "payment", reason="x"))
    assert stock(engine) == 7


def test_the_sale_service_refuses_an_answer_that_contradicts_the_sale(db_backend: Backend) -> None:
    engine = engine_for(db_backend, sale)
    _, (opened,) = apply_request(engine, sale.requests["submit"], {"product_id": 1, "user_id": 1, "value": "20.00", "quantity": 2})
    wrong = opened.model_copy(update={"value": Decimal("1.00")}).follow(VALIDATED_PAYMENT, "payment")
    assert "the event says" in refused(engine, sale, wrong)
    with Session(engine) as session:
        assert session.get(SaleRow, opened.sale_id).status.name == "PENDING"


def test_a_forged_created_sale_for_a_sale_that_never_existed_is_undone(db_backend: Backend) -> None:
    """Inventory and payment cannot tell a forged CREATED_SALE from a real one; the sale service,
    which opened every sale, can: it closes the unknown id as CANCELED, and the CANCELED_SALE makes
    inventory and payment give back what the forgery moved. The id is never handed out."""
    engines = {p.name: engine_for(db_backend, p) for p in (sale, inventory, payment)}
    forged = created(sale_id=500, quantity=4, value="25.00")
    (reserved,) = apply_event(engines["inventory"], inventory, forged).emitted
    (charged,) = apply_event(engines["payment"], payment, reserved).emitted
    assert (stock(engines["inventory"]), balance(engines["payment"])) == (6, Decimal("75.00"))
    (canceled,) = apply_event(engines["sale"], sale, charged).emitted
    assert (canceled.type, canceled.reason) == (CANCELED_SALE, "unknown sale")
    assert apply(engines["inventory"], inventory, canceled) == [ROLLBACK_INVENTORY]
    assert apply(engines["payment"], payment, canceled) == [REFUNDED_PAYMENT]
    assert (stock(engines["inventory"]), balance(engines["payment"])) == (10, Decimal("100.00"))
    # Once only, whatever comes again.
    assert apply(engines["inventory"], inventory, canceled.follow(CANCELED_SALE, "sale", reason="unknown sale")) == []
    assert apply(engines["payment"], payment, canceled.follow(CANCELED_SALE, "sale", reason="unknown sale")) == []
    assert apply(engines["sale"], sale, charged.follow(VALIDATED_PAYMENT, "payment")) == []
    assert (stock(engines["inventory"]), balance(engines["payment"])) == (10, Decimal("100.00"))
    reply, _ = apply_request(engines["sale"], sale.requests["submit"], {"product_id": 1, "user_id": 1, "value": "1", "quantity": 1})
    assert reply["sale_id"] > 500


def test_a_canceled_sale_is_refunded_once_and_a_late_reservation_charges_nothing(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    charged = created(sale_id=1, value="30.00").follow(UPDATED_INVENTORY, "inventory")
    apply(engine, payment, charged)
    cancel = charged.follow(CANCELED_SALE, "sale", reason="deadline exceeded")
    assert apply(engine, payment, cancel) == [REFUNDED_PAYMENT]
    assert apply(engine, payment, cancel.follow(CANCELED_SALE, "sale", reason="deadline exceeded")) == []
    late = created(sale_id=2, value="30.00")
    assert apply(engine, payment, late.follow(CANCELED_SALE, "sale", reason="deadline exceeded")) == []
    assert apply(engine, payment, late.follow(UPDATED_INVENTORY, "inventory")) == []
    assert balance(engine) == Decimal("100.00")


def test_a_replay_after_the_inbox_forgot_the_event_has_no_second_effect(db_backend: Backend) -> None:
    """A dead letter replayed long after (its event id pruned from the inbox) is decided by the rows."""
    from participants.runtime.database import InboxEntry

    engines = {p.name: engine_for(db_backend, p) for p in (inventory, payment)}
    sale_created = created(quantity=2, value="10.00")
    reserved = sale_created.follow(UPDATED_INVENTORY, "inventory")
    apply(engines["inventory"], inventory, sale_created)
    apply(engines["payment"], payment, reserved)
    for engine in engines.values():
        with Session(engine) as session:
            for row in session.exec(select(InboxEntry)):
                session.delete(row)
            session.commit()
    assert apply(engines["inventory"], inventory, sale_created) == []
    assert apply(engines["payment"], payment, reserved) == []
    assert (stock(engines["inventory"]), balance(engines["payment"])) == (8, Decimal("90.00"))
