"""The sale service's rules: open a sale, then close it exactly once with the saga's outcome."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FINALIZED_SALE,
    ContractError,
    Event,
    new_event,
    parse_sale,
)
from participants.sale.models import SaleRow, SaleStatus

PRODUCER = "sale"
MAX_SALES_PER_REQUEST = 1000


def submit(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Store a new PENDING sale and decide its CREATED_SALE event."""
    sale = parse_sale(body.get("product_id"), body.get("user_id"), body.get("value"), body.get("quantity"))
    row = SaleRow(**sale.model_dump(), status=SaleStatus.PENDING)
    session.add(row)
    session.flush()  # assigns the id the event needs
    assert row.id is not None
    return {"sale_id": row.id, "status": SaleStatus.PENDING.name}, [new_event(CREATED_SALE, row.id, sale, PRODUCER)]


def submit_many(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Store several sales in one transaction: `{"sales": [{product_id, user_id, value, quantity}, ...]}`.

    All or nothing: one invalid sale refuses the whole request. The reply lists the sales in the
    order given: `{"sales": [{"sale_id": 7, "status": "PENDING"}, ...]}`.
    """
    raw = body.get("sales")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_SALES_PER_REQUEST:
        raise ContractError(f'submit_many needs {{"sales": [...]}} with 1 to {MAX_SALES_PER_REQUEST} sales')
    sales = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ContractError(f"sales[{index}] is not an object")
        try:
            sales.append(parse_sale(item.get("product_id"), item.get("user_id"), item.get("value"), item.get("quantity")))
        except ContractError as exc:
            raise ContractError(f"sales[{index}]: {exc}") from None
    rows = [SaleRow(**sale.model_dump(), status=SaleStatus.PENDING) for sale in sales]
    session.add_all(rows)
    session.flush()  # assigns the ids the events need
    events = [new_event(CREATED_SALE, row.id, sale, PRODUCER) for row, sale in zip(rows, sales)]  # type: ignore[arg-type]
    return {"sales": [{"sale_id": row.id, "status": SaleStatus.PENDING.name} for row in rows]}, events


def _close(session: Session, event: Event, status: SaleStatus, reason: str | None) -> bool:
    """Move a PENDING sale to a terminal status; False when it was already closed (a no-op)."""
    result = session.exec(
        update(SaleRow)
        .where(col(SaleRow.id) == event.sale_id, col(SaleRow.status) == SaleStatus.PENDING)
        .values(status=status, reason=reason)
    )
    if result.rowcount == 1:
        return True
    if session.get(SaleRow, event.sale_id) is None:
        raise LookupError(f"sale {event.sale_id} does not exist")
    return False


def on_validated_payment(event: Event, session: Session) -> Event | None:
    if _close(session, event, SaleStatus.FINALIZED, None):
        return event.follow(FINALIZED_SALE, PRODUCER)
    return None


def on_rollback_inventory(event: Event, session: Session) -> Event | None:
    if _close(session, event, SaleStatus.CANCELED, event.reason):
        return event.follow(CANCELED_SALE, PRODUCER, reason=event.reason)
    return None


def get(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """One sale by id (the CLI's fallback when it may have missed the terminal event)."""
    sale_id = body.get("sale_id")
    if not isinstance(sale_id, int) or isinstance(sale_id, bool):
        raise ContractError("sale_id must be an integer")
    row = session.get(SaleRow, sale_id)
    if row is None:
        return {"sale_id": sale_id, "found": False}, []
    return {"sale_id": sale_id, "found": True, "status": row.status.name, "reason": row.reason}, []
