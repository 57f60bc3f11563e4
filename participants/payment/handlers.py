"""The payment service on its database: rules.py's decisions over SQL, and its control requests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from participants.contract import ContractError, Event, from_cents, parse_money, to_cents
from participants.payment import rules
from participants.payment.models import BalanceBaseline, Payment, User
from participants.runtime import Statement

# The hot path: plain SQL on the transaction's connection (participants/runtime/sql.py); money in cents.
_USERS, _PAYMENTS = User.__tablename__, Payment.__tablename__
DEBIT = Statement(f"UPDATE {_USERS} SET balance = balance - :v WHERE id = :u AND balance >= :v")
CREDIT = Statement(f"UPDATE {_USERS} SET balance = balance + :v WHERE id = :u")
KNOWN = Statement(f"SELECT 1 FROM {_USERS} WHERE id = :u")
OPEN = Statement(f"INSERT INTO {_PAYMENTS} (user_id, sale_id, value, state) VALUES (:u, :s, :v, :state) "
                 "ON CONFLICT (sale_id) DO NOTHING")
CHARGE_OF = Statement(f"SELECT user_id, value, state FROM {_PAYMENTS} WHERE sale_id = :s")
SET_STATE = Statement(f"UPDATE {_PAYMENTS} SET state = :state WHERE sale_id = :s")


class SqlLedger:
    """rules.Ledger on the handler's session, inside the runtime's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def open(self, sale_id: int, user_id: int, value: Decimal, state: str) -> bool:
        return OPEN.run(self.session, u=user_id, s=sale_id, v=to_cents(value), state=state).rowcount == 1

    def charge_of(self, sale_id: int) -> rules.Charge | None:
        row = CHARGE_OF.run(self.session, s=sale_id).fetchone()
        return None if row is None else rules.Charge(int(row[0]), from_cents(int(row[1])), str(row[2]))

    def set_state(self, sale_id: int, state: str) -> None:
        SET_STATE.run(self.session, s=sale_id, state=state)

    def debit(self, user_id: int, value: Decimal) -> bool:
        return DEBIT.run(self.session, v=to_cents(value), u=user_id).rowcount == 1

    def credit(self, user_id: int, value: Decimal) -> None:
        if CREDIT.run(self.session, v=to_cents(value), u=user_id).rowcount != 1:
            raise LookupError(f"user {user_id} vanished before the payment could be refunded")

    def has_user(self, user_id: int) -> bool:
        return KNOWN.run(self.session, u=user_id).fetchone() is not None


def on_event(event: Event, session: Session) -> Event | None:
    """UPDATED_INVENTORY and CANCELED_SALE: rules.py decides."""
    return rules.decide(SqlLedger(session), event)


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


# One statement, so one snapshot on every backend: under PostgreSQL's READ COMMITTED two queries
# would each see their own, and a payment committing between them would break the equation.
BASELINE = text(
    f"SELECT b.user_id, b.balance, u.balance, COALESCE(p.paid, 0), COALESCE(p.n, 0) FROM {BalanceBaseline.__tablename__} b "
    f"LEFT JOIN {_USERS} u ON u.id = b.user_id LEFT JOIN (SELECT user_id, SUM(value) AS paid, COUNT(*) AS n "
    f"FROM {_PAYMENTS} WHERE state = '{rules.CHARGED}' GROUP BY user_id) p ON p.user_id = b.user_id ORDER BY b.user_id"
)


def baseline(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Each user's baseline, current balance and what they paid (payments still CHARGED), read in
    one statement so the conservation check (baseline = balance + paid) holds exactly while sagas run."""
    rows = session.connection().execute(BASELINE).all()
    return {"users": [{"user_id": int(user_id), "baseline": f"{from_cents(int(base)):.2f}",
                       "balance": None if balance is None else f"{from_cents(int(balance)):.2f}",
                       "paid": f"{from_cents(int(paid)):.2f}", "payments": int(count)}
                      for user_id, base, balance, paid, count in rows]}, []
