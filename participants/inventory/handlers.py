"""The inventory service's rules: debit stock atomically, credit it back on a failed payment."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from participants.contract import (
    REASON_OUT_OF_STOCK,
    REASON_UNKNOWN_PRODUCT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    ContractError,
    Event,
)
from participants.inventory.models import Inventory, StockBaseline
from participants.runtime import Statement

PRODUCER = "inventory"


# The hot path: plain SQL on the transaction's connection (participants/runtime/sql.py).
_TABLE = Inventory.__tablename__
DEBIT = Statement(f"UPDATE {_TABLE} SET quantity = quantity - :q WHERE product_id = :p AND quantity >= :q")
CREDIT = Statement(f"UPDATE {_TABLE} SET quantity = quantity + :q WHERE product_id = :p")
KNOWN = Statement(f"SELECT 1 FROM {_TABLE} WHERE product_id = :p")


def on_created_sale(event: Event, session: Session) -> Event:
    # One conditional UPDATE: two concurrent sales can never both take the last unit.
    if DEBIT.run(session, q=event.quantity, p=event.product_id).rowcount == 1:
        return event.follow(UPDATED_INVENTORY, PRODUCER)
    known = KNOWN.run(session, p=event.product_id).fetchone() is not None
    reason = REASON_OUT_OF_STOCK if known else REASON_UNKNOWN_PRODUCT
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=reason)


def on_failed_payment(event: Event, session: Session) -> Event:
    """The compensation the reference system never ran: give the reserved stock back."""
    if CREDIT.run(session, q=event.quantity, p=event.product_id).rowcount != 1:
        raise LookupError(f"product {event.product_id} vanished before its stock could be credited back")
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=event.reason)


def setup(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Set products' stock: `{"products": {"1": 500, "2": 10}}`. The baseline moves by the same
    amount, so stock already sold or held by sagas in flight stays accounted for."""
    products = body.get("products")
    if not isinstance(products, dict) or not products:
        raise ContractError('setup needs {"products": {"<product_id>": <quantity>, ...}}')
    for raw_id, raw_quantity in products.items():
        product_id, quantity = _positive_int(raw_id, "product_id", 1), _positive_int(raw_quantity, "quantity", 0)
        # FOR UPDATE: under PostgreSQL's READ COMMITTED a sale's debit committing between this
        # read and the write below would otherwise be overwritten and miss the baseline.
        row = session.exec(select(Inventory).where(col(Inventory.product_id) == product_id).with_for_update()).first()
        baseline = session.get(StockBaseline, product_id, with_for_update=True)
        current = row.quantity if row else 0
        if row is None:
            session.add(Inventory(product_id=product_id, quantity=quantity))
        else:
            row.quantity = quantity
            session.add(row)
        if baseline is None:
            session.add(StockBaseline(product_id=product_id, quantity=quantity))
        else:
            baseline.quantity += quantity - current
            session.add(baseline)
    return {"products": len(products)}, []


def baseline(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Each product's baseline and current stock, for the conservation check."""
    rows = session.exec(select(StockBaseline, Inventory).join(Inventory, col(Inventory.product_id) == col(StockBaseline.product_id), isouter=True)).all()
    return {"products": [{"product_id": b.product_id, "baseline": b.quantity, "quantity": i.quantity if i else None} for b, i in rows]}, []


def _positive_int(raw: Any, what: str, minimum: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ContractError(f"{what} {raw!r} is not an integer") from None
    if value < minimum:
        raise ContractError(f"{what} must be >= {minimum}, not {value}")
    return value
