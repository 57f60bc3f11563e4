"""Payment's decisions, written once against a `Ledger` (SQL in handlers.py, memory in participants/raw.py).

A sale's payment row (keyed by sale id, unique) is what makes every decision idempotent by sale:
a user is charged at most once per sale and refunded at most once, whichever events, copies
under new ids or replays arrive, in whatever order. A refusal is recorded too, so a copy of the
UPDATED_INVENTORY that comes back after the balance was topped up cannot charge a sale whose
FAILED_PAYMENT is already on its way.

What payment can know of a sale is only what its UPDATED_INVENTORY said (or a CANCELED_SALE that
came first). An event contradicting that is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from participants.contract import (
    CANCELED_SALE,
    FAILED_PAYMENT,
    REASON_INSUFFICIENT_BALANCE,
    REASON_UNKNOWN_USER,
    REFUNDED_PAYMENT,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
    Event,
    Refused,
)

PRODUCER = "payment"

# A payment row's states. Only CHARGED holds the user's money.
CHARGED, REFUSED, REFUNDED, CANCELED = "CHARGED", "REFUSED", "REFUNDED", "CANCELED"


@dataclass(frozen=True)
class Charge:
    user_id: int
    value: Decimal
    state: str


class Ledger(Protocol):
    def open(self, sale_id: int, user_id: int, value: Decimal, state: str) -> bool:
        """Create the sale's payment row; False (and nothing changed) if it has one."""

    def charge_of(self, sale_id: int) -> Charge | None: ...

    def set_state(self, sale_id: int, state: str) -> None: ...

    def debit(self, user_id: int, value: Decimal) -> bool:
        """Debit the balance if it covers the value, atomically; False when it does not."""

    def credit(self, user_id: int, value: Decimal) -> None: ...

    def has_user(self, user_id: int) -> bool: ...


def decide(ledger: Ledger, event: Event) -> Event | None:
    if event.type == UPDATED_INVENTORY:
        return _charge(ledger, event)
    if event.type == CANCELED_SALE:
        return _refund(ledger, event)
    raise Refused(f"payment does not handle {event.type}")


def _charge(ledger: Ledger, event: Event) -> Event | None:
    if ledger.open(event.sale_id, event.user_id, event.value, CHARGED):
        # One conditional UPDATE: concurrent sales can never overdraw the balance.
        if ledger.debit(event.user_id, event.value):
            return event.follow(VALIDATED_PAYMENT, PRODUCER)
        ledger.set_state(event.sale_id, REFUSED)
        reason = REASON_INSUFFICIENT_BALANCE if ledger.has_user(event.user_id) else REASON_UNKNOWN_USER
        return event.follow(FAILED_PAYMENT, PRODUCER, reason=reason)
    known = ledger.charge_of(event.sale_id)
    if known is not None and (known.user_id, known.value) != (event.user_id, event.value):
        raise Refused(f"sale {event.sale_id} is user {known.user_id}, {known.value:.2f} here, "
                      f"the event says user {event.user_id}, {event.value:.2f}")
    # A copy already answered, or a sale canceled before its stock was reserved (its deadline
    # passed): nothing is charged, and inventory gives the stock back on the CANCELED_SALE.
    return None


def _refund(ledger: Ledger, event: Event) -> Event | None:
    """The sale service's word that the sale is over unsold: refund what was charged for it (the
    row's own value), or remember it so a late UPDATED_INVENTORY charges nothing."""
    if ledger.open(event.sale_id, event.user_id, event.value, CANCELED):
        return None
    known = ledger.charge_of(event.sale_id)
    if known is None or known.state != CHARGED:
        return None
    ledger.credit(known.user_id, known.value)
    ledger.set_state(event.sale_id, REFUNDED)
    return event.follow(REFUNDED_PAYMENT, PRODUCER, reason=event.reason)
