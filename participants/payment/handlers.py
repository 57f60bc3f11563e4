"""The payment service's rules: debit the balance atomically or refuse with a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from participants.contract import (
    FAILED_PAYMENT,
    REASON_INSUFFICIENT_BALANCE,
    REASON_UNKNOWN_USER,
    VALIDATED_PAYMENT,
    ContractError,
    Event,
    parse_money,
    to_cents,
)
from participants.payment.models import BalanceBaseline, Payment, User
from participants.runtime import Statement

PRODUCER = "payment"


# The hot path: plain SQL on the transaction's connection (participants/runtime/sql.py); money in cents.
DEBIT = Statement(f"UPDATE {User.__tablename__} SET balance = balance - :v WHERE id = :u AND balance >= :v")
KNOWN = Statement(f"SELECT 1 FROM {User.__tablename__} WHERE id = :u")
RECORD = Statement(f"INSERT INTO {Payment.__tablename__} (user_id, sale_id, value) VALUES (:u, :s, :v)")


def on_updated_inventory(event: Event, session: Session) -> Event:
    # One conditional UPDATE: concurrent sales can never overdraw the balance.
    cents = to_cents(event.value)
    if DEBIT.run(session, v=cents, u=event.user_id).rowcount == 1:
        RECORD.run(session, u=event.user_id, s=event.sale_id, v=cents)
        return event.follow(VALIDATED_PAYMENT, PRODUCER)
    known = KNOWN.run(session, u=event.user_id).fetchone() is not None
    reason = REASON_INSUFFICIENT_BALANCE if known else REASON_UNKNOWN_USER
    return event.follow(FAILED_PAYMENT, PRODUCER, reason=reason)


def setup(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Set users' balances: `{"users": {"1": {"name": "userTest", "balance": "1000.00"}}}`. The
    baseline moves by the same amount, so money already paid stays accounted for."""
    users = body.get("users")
    if not isinstance(users, dict) or not users:
        raise ContractError('setup needs {"users": {"<user_id>": {"balance": "<amount>", "name": "..."}}}')
    for raw_id, fields in users.items():
        try:
            user_id = int(raw_id)
        except ValueError:
            raise ContractError(f"user id {raw_id!r} is not an integer") from None
        if user_id < 1 or not isinstance(fields, dict):
            raise ContractError(f"user {raw_id}: expected an id >= 1 and {{balance, name}}")
        balance = parse_money(fields.get("balance"))
        row = session.get(User, user_id, with_for_update=True)  # see inventory.setup: no lost debit
        current = row.balance if row else Decimal("0.00")
        name = str(fields.get("name") or (row.name if row else f"user{user_id}"))
        session.add(User(id=user_id, name=name, balance=balance) if row is None else row)
        if row is not None:
            row.balance, row.name = balance, name
        base = session.get(BalanceBaseline, user_id, with_for_update=True)
        if base is None:
            session.add(BalanceBaseline(user_id=user_id, balance=balance))
        else:
            base.balance = base.balance + balance - current
            session.add(base)
    return {"users": len(users)}, []


def baseline(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Each user's baseline, current balance and total paid, read in one transaction so the
    conservation check (baseline = balance + paid) holds exactly even while sagas run."""
    rows = session.exec(select(BalanceBaseline, User).join(User, col(User.id) == col(BalanceBaseline.user_id), isouter=True)).all()
    paid = {user_id: (total, count) for user_id, total, count in session.exec(
        select(Payment.user_id, func.sum(Payment.value), func.count()).group_by(col(Payment.user_id)))}
    return {"users": [{"user_id": b.user_id, "baseline": f"{b.balance:.2f}",
                       "balance": f"{u.balance:.2f}" if u else None,
                       "paid": f"{paid.get(b.user_id, (Decimal(0), 0))[0] or Decimal(0):.2f}",
                       "payments": paid.get(b.user_id, (0, 0))[1]} for b, u in rows]}, []
