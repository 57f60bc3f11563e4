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
from participants.sale.models import SaleRow, SaleStatus, SubmitKey

PRODUCER = "sale"


def submit(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Store a new PENDING sale and decide its CREATED_SALE event.

    With a `request_id` (any string of 1-64 characters) a repeated submit returns the sale the
    first one created, and starts nothing.
    """
    sale = parse_sale(body.get("product_id"), body.get("user_id"), body.get("value"), body.get("quantity"))
    request_id = body.get("request_id")
    if request_id is not None:
        if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
            raise ContractError("request_id must be a string of 1 to 64 characters")
        known = session.get(SubmitKey, request_id)
        if known is not None:
            existing = session.get(SaleRow, known.sale_id)
            status = existing.status.name if existing is not None else "UNKNOWN"
            return {"sale_id": known.sale_id, "status": status, "repeated": True}, []
    row = SaleRow(**sale.model_dump(), status=SaleStatus.PENDING)
    session.add(row)
    session.flush()  # assigns the id the event needs
    assert row.id is not None
    if request_id is not None:
        session.add(SubmitKey(request_id=request_id, sale_id=row.id))
    return {"sale_id": row.id, "status": SaleStatus.PENDING.name}, [new_event(CREATED_SALE, row.id, sale, PRODUCER)]


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
