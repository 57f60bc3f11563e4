"""Sale deadlines in every order of the race, decided by each participant's rows (both backends, no NATS).

The four events that race a deadline are applied through the runtime (`apply_event`) in each order
a choreography allows; whatever the order, a sale ends FINALIZED with one charge or CANCELED with
stock and money exactly as if it had never happened.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from backends import PostgresBackend, SqliteBackend
from sqlmodel import Session, select

from participants.contract import (
    CANCELED_SALE,
    FINALIZED_SALE,
    REFUNDED_PAYMENT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
    ContractError,
    Event,
)
from participants.builtin import inventory
from participants.inventory.models import Inventory
from participants.builtin import payment
from participants.payment.models import User
from participants.runtime.database import create_schema, make_engine, seed_once
from participants.runtime.transaction import apply_event, apply_request
from participants.builtin import sale
from participants.sale.handlers import expire
from participants.sale.models import SaleRow

Backend = SqliteBackend | PostgresBackend


class Saga:
    """The three participants on their own databases; events handed from one to the next by hand."""

    def __init__(self, backend: Backend) -> None:
        self.engines = {}
        for p in (sale, inventory, payment):
            engine = make_engine(backend.url(p.name))
            create_schema(engine, p.all_tables)
            seed_once(engine, p.seed())
            self.engines[p.name] = engine
        self.participants = {"sale": sale, "inventory": inventory, "payment": payment}

    def submit(self, deadline: float = 3600) -> Event:
        _, (created,) = apply_request(self.engines["sale"], sale.requests["submit"],
                                      {"product_id": 1, "user_id": 1, "value": "30.00", "quantity": 4, "deadline": deadline})
        return created

    def to(self, name: str, event: Event) -> list[Event]:
        return apply_event(self.engines[name], self.participants[name], event).emitted

    def expire(self) -> list[Event]:
        _, events = apply_request(self.engines["sale"], expire, {})
        return events

    def pass_deadline(self, sale_id: int) -> None:
        with Session(self.engines["sale"]) as session:
            row = session.get(SaleRow, sale_id)
            row.deadline_at = time.time() - 1
            session.add(row)
            session.commit()

    def status(self, sale_id: int) -> str:
        with Session(self.engines["sale"]) as session:
            return session.get(SaleRow, sale_id).status.name

    def stock_and_money(self) -> tuple[int, Decimal]:
        with Session(self.engines["inventory"]) as s1, Session(self.engines["payment"]) as s2:
            return s1.exec(select(Inventory.quantity)).one(), s2.exec(select(User.balance)).one()


def due(saga: Saga, created: Event) -> Event:
    """Let the sale's deadline pass (moved into the past: no waiting on a clock), then expire it."""
    saga.pass_deadline(created.sale_id)
    [cancel] = saga.expire()
    assert (cancel.type, cancel.sale_id, cancel.reason) == (CANCELED_SALE, created.sale_id, "deadline exceeded")
    return cancel


UNTOUCHED = (10, Decimal("100.00"))


def test_expiry_before_inventory_acts(db_backend: Backend) -> None:
    saga = Saga(db_backend)
    created = saga.submit()
    cancel = due(saga, created)
    # Inventory sees the cancel first (its CREATED_SALE was late): it remembers, and reserves nothing later.
    assert saga.to("inventory", cancel) == []
    assert saga.to("payment", cancel) == []
    assert saga.to("inventory", created) == []
    assert saga.stock_and_money() == UNTOUCHED and saga.status(created.sale_id) == "CANCELED"


def test_expiry_between_inventory_and_payment(db_backend: Backend) -> None:
    saga = Saga(db_backend)
    created = saga.submit()
    [reserved] = saga.to("inventory", created)
    cancel = due(saga, created)
    [rollback] = saga.to("inventory", cancel)  # the stock back at once, payment still away
    assert (rollback.type, rollback.reason) == (ROLLBACK_INVENTORY, "deadline exceeded")
    assert saga.stock_and_money() == UNTOUCHED
    assert saga.to("sale", rollback) == []  # the sale is closed already
    # Payment: the cancel first, then the late reservation (charges nothing), or the other way round.
    assert saga.to("payment", cancel) == []
    assert saga.to("payment", reserved) == []
    assert saga.stock_and_money() == UNTOUCHED


@pytest.mark.parametrize("late", ["payment answers after the expiry", "payment charged before it saw the cancel"])
def test_expiry_racing_the_payment(db_backend: Backend, late: str) -> None:
    saga = Saga(db_backend)
    created = saga.submit()
    [reserved] = saga.to("inventory", created)
    [validated] = saga.to("payment", reserved)
    assert validated.type == VALIDATED_PAYMENT
    cancel = due(saga, created)  # the deadline closes the sale before VALIDATED_PAYMENT reaches it
    if late == "payment answers after the expiry":
        assert saga.to("sale", validated) == []  # never finalizes
        [refund] = saga.to("payment", cancel)
    else:
        [refund] = saga.to("payment", cancel)
        assert saga.to("sale", validated) == []
    assert (refund.type, refund.reason) == (REFUNDED_PAYMENT, "deadline exceeded")
    [rollback] = saga.to("inventory", cancel)
    assert rollback.type == ROLLBACK_INVENTORY
    assert saga.stock_and_money() == UNTOUCHED and saga.status(created.sale_id) == "CANCELED"
    # Redelivered or republished expiry events (new ids) have no second effect.
    again = cancel.follow(CANCELED_SALE, "sale", reason="deadline exceeded")
    assert saga.to("payment", again) == [] and saga.to("inventory", again) == []
    assert saga.expire() == [] and saga.stock_and_money() == UNTOUCHED


def test_a_finalized_sale_never_expires(db_backend: Backend) -> None:
    saga = Saga(db_backend)
    created = saga.submit()
    [reserved] = saga.to("inventory", created)
    [validated] = saga.to("payment", reserved)
    [finalized] = saga.to("sale", validated)
    assert finalized.type == FINALIZED_SALE
    saga.pass_deadline(created.sale_id)
    assert saga.expire() == []
    assert saga.status(created.sale_id) == "FINALIZED" and saga.stock_and_money() == (6, Decimal("70.00"))


def test_the_deadline_is_validated() -> None:
    for raw in (0, -1, "soon", 8 * 24 * 3600, True):
        with pytest.raises(ContractError, match="deadline"):
            from participants.sale.rules import parse_deadline

            parse_deadline(raw)
