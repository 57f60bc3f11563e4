"""The participants' rules alone: handlers against a real database (SQLite, and PostgreSQL when configured), no NATS."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from backends import PostgresBackend, SqliteBackend
from sqlmodel import Session, select

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    FINALIZED_SALE,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
    ContractError,
    Event,
    new_event,
    parse_event,
    parse_sale,
    register_event_type,
    utc_now,
)
from participants.builtin import inventory
from participants.inventory.handlers import on_event as on_created_sale
from participants.inventory.handlers import on_event as on_failed_payment
from participants.inventory.models import Inventory
from participants.builtin import payment
from participants.payment.handlers import on_event as on_updated_inventory
from participants.payment.models import Payment, User
from participants.runtime.database import create_schema, make_engine, seed_once
from participants.runtime.transaction import Applied, apply_event, apply_request
from participants.builtin import sale
from participants.sale.handlers import on_answer as on_rollback_inventory
from participants.sale.handlers import on_answer as on_validated_payment
from participants.sale.handlers import submit
from participants.sale.models import SaleRow, SaleStatus


def engine_for(backend: Backend, participant):  # type: ignore[no-untyped-def]
    engine = make_engine(backend.url(participant.name))
    create_schema(engine, participant.all_tables)
    seed_once(engine, participant.seed())
    return engine


Backend = SqliteBackend | PostgresBackend


def created(quantity: int = 2, value: str = "20.00", product_id: int = 1, user_id: int = 1, sale_id: int = 1) -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(product_id, user_id, value, quantity), "sale")


def test_seed_rows_are_inserted_once(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    assert seed_once(engine, inventory.seed()) is False
    with Session(engine) as session:
        assert [(r.product_id, r.quantity) for r in session.exec(select(Inventory))] == [(1, 10)]


def test_inventory_debits_stock_and_emits_updated(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    with Session(engine) as session:
        emitted = on_created_sale(created(quantity=2), session)
        session.commit()
        assert emitted.type == UPDATED_INVENTORY
        assert session.exec(select(Inventory.quantity)).one() == 8


@pytest.mark.parametrize(("product_id", "quantity", "reason"), [(1, 11, "out of stock"), (7, 1, "unknown product")])
def test_inventory_refuses_without_touching_stock(db_backend: Backend, product_id: int, quantity: int, reason: str) -> None:
    engine = engine_for(db_backend, inventory)
    with Session(engine) as session:
        emitted = on_created_sale(created(quantity=quantity, product_id=product_id), session)
        session.commit()
        assert (emitted.type, emitted.reason) == (ROLLBACK_INVENTORY, reason)
        assert session.exec(select(Inventory.quantity)).one() == 10


def test_inventory_credits_stock_back_on_failed_payment(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    event = created(quantity=3)
    with Session(engine) as session:
        on_created_sale(event, session)
        failed = event.follow(FAILED_PAYMENT, "payment", reason="insufficient balance")
        emitted = on_failed_payment(failed, session)
        session.commit()
        assert (emitted.type, emitted.reason) == (ROLLBACK_INVENTORY, "insufficient balance")
        assert session.exec(select(Inventory.quantity)).one() == 10


def test_payment_debits_balance_and_records_payment(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    with Session(engine) as session:
        emitted = on_updated_inventory(created(value="20.00").follow(UPDATED_INVENTORY, "inventory"), session)
        session.commit()
        assert emitted.type == VALIDATED_PAYMENT
        assert session.exec(select(User.balance)).one() == Decimal("80.00")
        assert [(p.sale_id, p.value) for p in session.exec(select(Payment))] == [(1, Decimal("20.00"))]


@pytest.mark.parametrize(("user_id", "value", "reason"), [(1, "100.01", "insufficient balance"), (9, "1.00", "unknown user")])
def test_payment_refuses_without_touching_balance(db_backend: Backend, user_id: int, value: str, reason: str) -> None:
    engine = engine_for(db_backend, payment)
    with Session(engine) as session:
        event = created(value=value, user_id=user_id).follow(UPDATED_INVENTORY, "inventory")
        emitted = on_updated_inventory(event, session)
        session.commit()
        assert (emitted.type, emitted.reason) == (FAILED_PAYMENT, reason)
        assert session.exec(select(User.balance)).one() == Decimal("100.00")
        # The refusal is recorded for the sale, so no later copy can charge it.
        assert [(p.sale_id, p.state) for p in session.exec(select(Payment))] == [(1, "REFUSED")]


def test_money_is_exact_over_many_small_debits(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    with Session(engine) as session:
        for sale_id in range(1, 11):
            event = created(value="0.10", sale_id=sale_id).follow(UPDATED_INVENTORY, "inventory")
            on_updated_inventory(event, session)
        session.commit()
        assert session.exec(select(User.balance)).one() == Decimal("99.00")


def test_sale_is_closed_exactly_once(db_backend: Backend) -> None:
    engine = engine_for(db_backend, sale)
    with Session(engine) as session:
        reply, events = submit({"product_id": 1, "user_id": 1, "value": "20.00", "quantity": 2}, session)
        session.commit()
        assert reply == {"sale_id": 1, "status": "PENDING"} and events[0].type == CREATED_SALE
        validated = events[0].follow(VALIDATED_PAYMENT, "payment")
        assert on_validated_payment(validated, session).type == FINALIZED_SALE
        # A late rollback of a closed sale changes nothing and emits nothing.
        assert on_rollback_inventory(events[0].follow(ROLLBACK_INVENTORY, "inventory", reason="x"), session) is None
        session.commit()
        assert session.get(SaleRow, 1).status is SaleStatus.FINALIZED


def test_sale_cancel_keeps_reason(db_backend: Backend) -> None:
    engine = engine_for(db_backend, sale)
    with Session(engine) as session:
        _, events = submit({"product_id": 1, "user_id": 1, "value": "1.00", "quantity": 20}, session)
        emitted = on_rollback_inventory(events[0].follow(ROLLBACK_INVENTORY, "inventory", reason="out of stock"), session)
        session.commit()
        assert (emitted.type, emitted.reason) == (CANCELED_SALE, "out of stock")
        row = session.get(SaleRow, 1)
        assert (row.status, row.reason) == (SaleStatus.CANCELED, "out of stock")


def test_apply_event_is_idempotent_on_event_id(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    event = created(quantity=4)
    assert apply_event(engine, inventory, event).applied is Applied.DONE
    assert apply_event(engine, inventory, event).applied is Applied.DUPLICATE
    with Session(engine) as session:
        assert session.exec(select(Inventory.quantity)).one() == 6


def test_apply_request_commits_reply_and_outbox_together(db_backend: Backend) -> None:
    engine = engine_for(db_backend, sale)
    reply, events = apply_request(engine, sale.requests["submit"], {"product_id": 1, "user_id": 1, "value": "5", "quantity": 1})
    assert reply["sale_id"] == 1 and [e.type for e in events] == [CREATED_SALE]
    with pytest.raises(ContractError):
        apply_request(engine, sale.requests["submit"], {"product_id": 1, "user_id": 1, "value": "-5", "quantity": 1})
    with Session(engine) as session:
        assert len(session.exec(select(SaleRow)).all()) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((1, 1, "20.001", 1), "more than two decimal places"),
        ((1, 1, "-1", 1), "negative"),
        ((1, 1, "abc", 1), "not a decimal"),
        ((1, 1, "1", 0), "greater than or equal to 1"),
        ((0, 1, "1", 1), "greater than or equal to 1"),
    ],
)
def test_sale_validation(fields: tuple, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_sale(*fields)


def test_event_round_trip_and_malformed_bodies() -> None:
    event = created(value="69.99")
    again = parse_event(event.to_bytes())
    assert again == event and again.model_dump(mode="json")["value"] == "69.99"
    for body, message in [(b"{not json", "malformed JSON"), (b"[]", "not a JSON object"),
                          (b'{"type": "NOPE"}', "invalid event field"),
                          (event.to_bytes().replace(b"CREATED_SALE", b"SOMETHING_ELSE"), "unknown event type")]:
        with pytest.raises(ContractError, match=message):
            parse_event(body)


def test_events_built_without_validation_are_the_validated_events() -> None:
    # follow(), new_event() and Event.sale skip pydantic's validation (contract._trusted): each
    # must equal, serialize, compare, hash and refuse changes exactly as the validated model does.
    first = new_event(CREATED_SALE, 7, parse_sale(3, 4, "12.50", 2), "sale")
    later = first.follow(UPDATED_INVENTORY, "inventory", reason="because")
    for event in (first, later):
        validated = Event(**event.model_dump())
        assert event == validated and hash(event) == hash(validated)
        assert event.model_dump() == validated.model_dump() and event.model_dump(mode="json") == validated.model_dump(mode="json")
        assert event.to_bytes() == validated.to_bytes() and parse_event(event.to_bytes()) == event
        assert event.model_fields_set == validated.model_fields_set and event.__pydantic_extra__ == {}
        assert event.model_copy(update={"reason": "x"}).reason == "x"
        with pytest.raises(Exception, match="frozen"):
            event.reason = "changed"  # type: ignore[misc]
    assert (later.type, later.producer, later.reason, later.sale) == (UPDATED_INVENTORY, "inventory", "because", first.sale)
    sale, validated_sale = first.sale, parse_sale(3, 4, "12.50", 2)
    assert sale == validated_sale and hash(sale) == hash(validated_sale) and sale.model_dump() == validated_sale.model_dump()
    assert sale.model_fields_set == validated_sale.model_fields_set and sale.__pydantic_extra__ is None
    with pytest.raises(Exception, match="frozen"):
        sale.quantity = 3  # type: ignore[misc]
    with pytest.raises(ContractError, match="unknown event type"):
        new_event("NOPE", 7, first.sale, "sale")
    with pytest.raises(ContractError, match="sale_id"):
        new_event(CREATED_SALE, 0, first.sale, "sale")


def test_setup_moves_stock_and_baseline_together(db_backend: Backend) -> None:
    engine = engine_for(db_backend, inventory)
    apply_event(engine, inventory, created(quantity=4))  # stock 10 -> 6, 4 held by the sale
    apply_request(engine, inventory.requests["setup"], {"products": {"1": 100, "2": 5}})
    reply, _ = apply_request(engine, inventory.requests["baseline"], {})
    assert sorted(reply["products"], key=lambda p: p["product_id"]) == [
        {"product_id": 1, "baseline": 104, "quantity": 100},
        {"product_id": 2, "baseline": 5, "quantity": 5},
    ]
    with pytest.raises(ContractError):
        apply_request(engine, inventory.requests["setup"], {"products": {"1": -1}})


def test_setup_users_and_baseline(db_backend: Backend) -> None:
    engine = engine_for(db_backend, payment)
    with Session(engine) as session:
        on_updated_inventory(created(value="30.00").follow(UPDATED_INVENTORY, "inventory"), session)
        session.commit()
    apply_request(engine, payment.requests["setup"], {"users": {"1": {"balance": "1000.00"}, "2": {"name": "b", "balance": "5"}}})
    reply, _ = apply_request(engine, payment.requests["baseline"], {})
    assert sorted(reply["users"], key=lambda u: u["user_id"]) == [
        {"user_id": 1, "baseline": "1030.00", "balance": "1000.00", "paid": "30.00", "payments": 1},
        {"user_id": 2, "baseline": "5.00", "balance": "5.00", "paid": "0.00", "payments": 0},
    ]


def test_event_times_read_as_isoformat_writes_them() -> None:
    # utc_now formats the date once a second: it must write exactly what isoformat does.
    for _ in range(3):
        before = datetime.now(timezone.utc)
        written = utc_now()
        after = datetime.now(timezone.utc)
        moment = datetime.fromisoformat(written)
        assert before <= moment <= after and written == moment.isoformat(timespec="microseconds")


@pytest.mark.parametrize("subject", ["orders.created", "saga.orders.*", "saga.orders.>", "saga.orders created",
                                     "saga.orders\r\nPING", "saga.orders\tcreated"])
def test_a_new_event_type_needs_a_concrete_subject_under_saga(subject: str) -> None:
    # The relay writes the subject into its protocol line as it is (jetstream.event_command).
    with pytest.raises(ContractError, match="concrete subject"):
        register_event_type("ORDER_CREATED_TEST", subject)
