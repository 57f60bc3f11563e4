"""The payment service's rules: debit the balance atomically or refuse with a reason."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from participants.contract import (
    FAILED_PAYMENT,
    REASON_INSUFFICIENT_BALANCE,
    REASON_UNKNOWN_USER,
    VALIDATED_PAYMENT,
    Event,
)
from participants.payment.models import Payment, User

PRODUCER = "payment"


def on_updated_inventory(event: Event, session: Session) -> Event:
    # One conditional UPDATE: concurrent sales can never overdraw the balance.
    result = session.exec(
        update(User)
        .where(col(User.id) == event.user_id, col(User.balance) >= event.value)
        .values(balance=col(User.balance) - event.value)
    )
    if result.rowcount == 1:
        session.add(Payment(user_id=event.user_id, sale_id=event.sale_id, value=event.value))
        return event.follow(VALIDATED_PAYMENT, PRODUCER)
    known = session.exec(select(User.id).where(col(User.id) == event.user_id)).first()
    reason = REASON_INSUFFICIENT_BALANCE if known is not None else REASON_UNKNOWN_USER
    return event.follow(FAILED_PAYMENT, PRODUCER, reason=reason)
