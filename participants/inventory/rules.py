"""Inventory's decisions, written once against a `Stock` (SQL in handlers.py, memory in participants/raw.py).

A sale's reservation row (keyed by sale id) is what makes every decision idempotent by sale, not
by event id: stock is taken at most once per sale and given back at most once, whichever events,
copies under new ids or replays arrive, in whatever order.

What inventory can know of a sale is only what its CREATED_SALE said (the first event of the sale
it sees, or a CANCELED_SALE that came first). An event contradicting that is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    REASON_OUT_OF_STOCK,
    REASON_UNKNOWN_PRODUCT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    Event,
    Refused,
)

PRODUCER = "inventory"

# A reservation's states. RESERVED holds stock; every other state holds none.
RESERVED, REFUSED, RELEASED, CANCELED = "RESERVED", "REFUSED", "RELEASED", "CANCELED"


@dataclass(frozen=True)
class Reservation:
    product_id: int
    quantity: int
    state: str


class Stock(Protocol):
    def open(self, sale_id: int, product_id: int, quantity: int, state: str) -> bool:
        """Create the sale's reservation row; False (and nothing changed) if it has one."""

    def reservation(self, sale_id: int) -> Reservation | None: ...

    def set_state(self, sale_id: int, state: str) -> None: ...

    def take(self, product_id: int, quantity: int) -> bool:
        """Debit the stock if there is enough, atomically; False when there is not."""

    def give(self, product_id: int, quantity: int) -> None: ...

    def has_product(self, product_id: int) -> bool: ...


def decide(stock: Stock, event: Event) -> Event | None:
    if event.type == CREATED_SALE:
        return _reserve(stock, event)
    if event.type == FAILED_PAYMENT:
        return _release_for_payment(stock, event)
    if event.type == CANCELED_SALE:
        return _release_for_cancel(stock, event)
    raise Refused(f"inventory does not handle {event.type}")


def _reserve(stock: Stock, event: Event) -> Event | None:
    if stock.open(event.sale_id, event.product_id, event.quantity, RESERVED):
        # One conditional UPDATE: two concurrent sales can never both take the last unit.
        if stock.take(event.product_id, event.quantity):
            return event.follow(UPDATED_INVENTORY, PRODUCER)
        stock.set_state(event.sale_id, REFUSED)
        reason = REASON_OUT_OF_STOCK if stock.has_product(event.product_id) else REASON_UNKNOWN_PRODUCT
        return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=reason)
    # A copy of the CREATED_SALE already answered, or one arriving after the sale was canceled
    # (its deadline passed first): it reserves nothing.
    _known(stock, event)
    return None


def _release_for_payment(stock: Stock, event: Event) -> Event | None:
    known = _known(stock, event)
    if known is None:
        raise Refused(f"inventory never saw CREATED_SALE for sale {event.sale_id}: nothing to credit back")
    if known.state == REFUSED:
        raise Refused(f"inventory refused sale {event.sale_id}: no payment could have been asked for it")
    if known.state != RESERVED:
        return None  # credited back already (an earlier FAILED_PAYMENT or the cancel)
    stock.give(known.product_id, known.quantity)
    stock.set_state(event.sale_id, RELEASED)
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=event.reason)


def _release_for_cancel(stock: Stock, event: Event) -> Event | None:
    """The sale service's word that the sale is over unsold: give back what it holds (the
    reservation's own quantity), or remember it so a late CREATED_SALE reserves nothing."""
    if stock.open(event.sale_id, event.product_id, event.quantity, CANCELED):
        return None
    known = stock.reservation(event.sale_id)
    if known is None or known.state != RESERVED:
        return None
    stock.give(known.product_id, known.quantity)
    stock.set_state(event.sale_id, RELEASED)
    return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=event.reason)


def _known(stock: Stock, event: Event) -> Reservation | None:
    """The sale's reservation, refusing an event that disagrees with it."""
    known = stock.reservation(event.sale_id)
    if known is not None and (known.product_id, known.quantity) != (event.product_id, event.quantity):
        raise Refused(f"sale {event.sale_id} is {known.quantity} x product {known.product_id} here, "
                      f"the event says {event.quantity} x product {event.product_id}")
    return known
