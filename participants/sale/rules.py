"""The sale service's decisions, written once against a `Ledger` of sales (SQL in handlers.py,
memory in participants/raw.py).

The sale service alone knows which sales exist: it opened them. A sale closes once (the
conditional close), with the outcome of the first answer that matches it. An answer for a sale
it never opened (the end of a forged CREATED_SALE or UPDATED_INVENTORY) closes that id as
CANCELED "unknown sale", so the id is never handed out and the CANCELED_SALE makes inventory and
payment undo whatever the forged events moved. An answer that contradicts the sale is refused.

A sale may have a deadline. The sale service alone decides it passed: a PENDING sale whose
deadline is due is CANCELED "deadline exceeded" by the same conditional close, so whichever of
the deadline and the saga's last answer closes the sale first wins, once, with replicas too; the
CANCELED_SALE then makes inventory and payment undo what they did or refuse to do it late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from participants.contract import (
    CANCELED_SALE,
    FINALIZED_SALE,
    REASON_DEADLINE,
    REASON_UNKNOWN_SALE,
    ROLLBACK_INVENTORY,
    VALIDATED_PAYMENT,
    ContractError,
    Event,
    Refused,
    Sale,
    new_event,
)

PRODUCER = "sale"
PENDING, FINALIZED, CANCELED = "PENDING", "FINALIZED", "CANCELED"
# The default deadline of every sale, in seconds (`sagactl up --sale-deadline`); unset: none.
DEADLINE_ENV = "SAGACTL_SALE_DEADLINE"
MAX_DEADLINE_S = 7 * 24 * 3600
EXPIRE_EVERY_S = 0.2  # how often the sale service looks for due deadlines
EXPIRE_BATCH = 500


@dataclass(frozen=True)
class Known:
    sale: Sale
    status: str


class Sales(Protocol):
    def close(self, sale_id: int, sale: Sale, status: str, reason: str | None) -> bool:
        """PENDING -> status if the sale is PENDING and is `sale`, atomically; False otherwise."""

    def known(self, sale_id: int) -> Known | None: ...

    def close_unknown(self, sale_id: int, sale: Sale, reason: str) -> bool:
        """Record a sale id never opened as CANCELED; False if the id exists (opened meanwhile)."""

    def due(self, now: float, limit: int) -> list[tuple[int, Sale]]:
        """PENDING sales whose deadline is at or before `now`, oldest deadline first."""


def decide(sales: Sales, event: Event) -> Event | None:
    if event.type == VALIDATED_PAYMENT:
        status, terminal, reason = FINALIZED, FINALIZED_SALE, None
    elif event.type == ROLLBACK_INVENTORY:
        status, terminal, reason = CANCELED, CANCELED_SALE, event.reason
    else:
        raise Refused(f"sale does not handle {event.type}")
    if sales.close(event.sale_id, event.sale, status, reason):
        return event.follow(terminal, PRODUCER, reason=reason)
    known = sales.known(event.sale_id)
    if known is None:
        if sales.close_unknown(event.sale_id, event.sale, REASON_UNKNOWN_SALE):
            return event.follow(CANCELED_SALE, PRODUCER, reason=REASON_UNKNOWN_SALE)
        known = sales.known(event.sale_id)  # a submit took the id meanwhile
    if known is None or known.sale != event.sale:
        mine = _describe(known.sale) if known else "gone"
        raise Refused(f"sale {event.sale_id} is {mine}, the event says {_describe(event.sale)}")
    return None  # closed already: a later answer (or one after the deadline) changes nothing


def _describe(sale: Sale) -> str:
    return f"{sale.quantity} x product {sale.product_id} for user {sale.user_id} at {sale.value:.2f}"


def expire(sales: Sales, now: float) -> list[Event]:
    """Cancel the PENDING sales whose deadline passed; each CANCELED_SALE once, whoever else tries."""
    return [new_event(CANCELED_SALE, sale_id, sale, PRODUCER, reason=REASON_DEADLINE)
            for sale_id, sale in sales.due(now, EXPIRE_BATCH) if sales.close(sale_id, sale, CANCELED, REASON_DEADLINE)]


def parse_deadline(raw: Any, what: str = "deadline") -> float | None:
    """Seconds from now (a positive number up to a week), or None for no deadline."""
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise ContractError(f"{what} must be a number of seconds, not {raw!r}") from None
    if isinstance(raw, bool) or not math.isfinite(seconds) or not 0 < seconds <= MAX_DEADLINE_S:
        raise ContractError(f"{what} must be more than 0 and at most {MAX_DEADLINE_S} seconds, not {raw!r}")
    return seconds
