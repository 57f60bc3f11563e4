"""The inventory service on its database: rules.py's decisions over SQL, and its control requests."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from participants.contract import ContractError, Event
from participants.inventory import rules
from participants.inventory.models import Inventory, Reservation, StockBaseline
from participants.runtime import Statement


# The hot path: plain SQL on the transaction's connection (participants/runtime/sql.py).
_TABLE, _HELD = Inventory.__tablename__, Reservation.__tablename__
DEBIT = Statement(f"UPDATE {_TABLE} SET quantity = quantity - :q WHERE product_id = :p AND quantity >= :q")
CREDIT = Statement(f"UPDATE {_TABLE} SET quantity = quantity + :q WHERE product_id = :p")
KNOWN = Statement(f"SELECT 1 FROM {_TABLE} WHERE product_id = :p")
OPEN = Statement(f"INSERT INTO {_HELD} (sale_id, product_id, quantity, state) VALUES (:s, :p, :q, :state) "
                 "ON CONFLICT (sale_id) DO NOTHING")
HELD = Statement(f"SELECT product_id, quantity, state FROM {_HELD} WHERE sale_id = :s")
SET_STATE = Statement(f"UPDATE {_HELD} SET state = :state WHERE sale_id = :s")


class SqlStock:
    """rules.Stock on the handler's session, inside the runtime's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def open(self, sale_id: int, product_id: int, quantity: int, state: str) -> bool:
        return OPEN.run(self.session, s=sale_id, p=product_id, q=quantity, state=state).rowcount == 1

    def reservation(self, sale_id: int) -> rules.Reservation | None:
        row = HELD.run(self.session, s=sale_id).fetchone()
        return None if row is None else rules.Reservation(int(row[0]), int(row[1]), str(row[2]))

    def set_state(self, sale_id: int, state: str) -> None:
        SET_STATE.run(self.session, s=sale_id, state=state)

    def take(self, product_id: int, quantity: int) -> bool:
        return DEBIT.run(self.session, q=quantity, p=product_id).rowcount == 1

    def give(self, product_id: int, quantity: int) -> None:
        if CREDIT.run(self.session, q=quantity, p=product_id).rowcount != 1:
            raise LookupError(f"product {product_id} vanished before its stock could be credited back")

    def has_product(self, product_id: int) -> bool:
        return KNOWN.run(self.session, p=product_id).fetchone() is not None


def on_event(event: Event, session: Session) -> Event | None:
    """CREATED_SALE, FAILED_PAYMENT and CANCELED_SALE: rules.py decides."""
    return rules.decide(SqlStock(session), event)


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
