"""The inventory service's rules: debit stock atomically, credit it back on a failed payment."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from participants.contract import (
    REASON_OUT_OF_STOCK,
    REASON_UNKNOWN_PRODUCT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    Event,
)
from participants.inventory.models import Inventory

PRODUCER = "inventory"


def on_created_sale(event: Event, session: Session) -> Event:
    # One conditional UPDATE: two concurrent sales can never both take the last unit.
    result = session.exec(
        update(Inventory)
        .where(col(Inventory.product_id) == event.product_id, col(Inventory.quantity) >= event.quantity)
        .values(quantity=col(Inventory.quantity) - event.quantity)
    )
    if result.rowcount == 1:
        return event.follow(UPDATED_INVENTORY, PRODUCER)
    known = session.exec(select(Inventory.id).where(col(Inventory.product_id) == event.product_id)).first()
    reason = REASON_OUT_OF_STOCK if known is not None else REASON_UNKNOWN_PRODUCT
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=reason)


def on_failed_payment(event: Event, session: Session) -> Event:
    """The compensation the reference system never ran: give the reserved stock back."""
    result = session.exec(
        update(Inventory)
        .where(col(Inventory.product_id) == event.product_id)
        .values(quantity=col(Inventory.quantity) + event.quantity)
    )
    if result.rowcount != 1:
        raise LookupError(f"product {event.product_id} vanished before its stock could be credited back")
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=event.reason)
