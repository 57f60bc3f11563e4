"""The sale service on its database: submits open sales, rules.py's decisions close them."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from sqlmodel import Session

from participants.contract import (
    CREATED_SALE,
    ContractError,
    Event,
    Sale,
    from_cents,
    new_event,
    parse_sale,
    to_cents,
)
from participants.runtime import Statement
from participants.sale import rules
from participants.sale.models import SaleRow, SaleStatus, SubmitKey

PRODUCER = rules.PRODUCER
MAX_SALES_PER_REQUEST = 1000


# The hot path: plain SQL on the transaction's connection (participants/runtime/sql.py).
# The status column holds the enum's name, as SQLAlchemy stores an Enum.
_SALES = SaleRow.__tablename__
CLOSE = Statement(f"UPDATE {_SALES} SET status = :status, reason = :reason WHERE id = :id AND status = 'PENDING' "
                  "AND product_id = :p AND user_id = :u AND value = :v AND quantity = :q")
KNOWN = Statement(f"SELECT product_id, user_id, value, quantity, status FROM {_SALES} WHERE id = :id")
CLOSE_UNKNOWN = Statement(f"INSERT INTO {_SALES} (id, product_id, user_id, value, quantity, status, reason) "
                          "VALUES (:id, :p, :u, :v, :q, 'CANCELED', :reason) ON CONFLICT (id) DO NOTHING")
SKIP_ID = Statement(f"SELECT setval(pg_get_serial_sequence('{_SALES}', 'id'), "
                    f"GREATEST(:id, (SELECT last_value FROM {_SALES}_id_seq)))")
OPEN = Statement(
    f"INSERT INTO {SaleRow.__tablename__} (product_id, user_id, value, quantity, status, deadline_at) "
    "VALUES (:product_id, :user_id, :value, :quantity, 'PENDING', :deadline_at) RETURNING id"
)
DUE = Statement(f"SELECT id, product_id, user_id, value, quantity FROM {_SALES} WHERE status = 'PENDING' "
                "AND deadline_at <= :now ORDER BY deadline_at LIMIT :limit")


def _default_deadline() -> float | None:
    return rules.parse_deadline(os.environ.get(rules.DEADLINE_ENV), rules.DEADLINE_ENV)


def _open(session: Session, sales: list[tuple[Sale, float | None]]) -> list[Event]:
    """Store PENDING sales (one statement each, on PostgreSQL all in one round trip); return
    their CREATED_SALE events (which need the new ids). With a deadline the event says when it
    falls (`deadline_at`, for trace); the row is what counts."""
    now = time.time()
    deadlines = [None if deadline_s is None else now + deadline_s for _, deadline_s in sales]
    opened = OPEN.run_each(session, [
        {"product_id": sale.product_id, "user_id": sale.user_id, "value": to_cents(sale.value), "quantity": sale.quantity,
         "deadline_at": deadline_at} for (sale, _), deadline_at in zip(sales, deadlines)])
    events = []
    for (sale, _), deadline_at, result in zip(sales, deadlines, opened):
        event = new_event(CREATED_SALE, int(result.fetchone()[0]), sale, PRODUCER)
        if deadline_at is not None:
            when = datetime.fromtimestamp(deadline_at, timezone.utc).isoformat(timespec="milliseconds")
            event = Event(**event.model_dump(), deadline_at=when)
        events.append(event)
    return events


def _deadline_of(body: dict[str, Any]) -> float | None:
    given = rules.parse_deadline(body.get("deadline"))
    return given if given is not None else _default_deadline()


def submit(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """Store a new PENDING sale and decide its CREATED_SALE event.

    With a `request_id` (any string of 1-64 characters) a repeated submit returns the sale the
    first one created, and starts nothing. With a `deadline` (seconds; default: env
    SAGACTL_SALE_DEADLINE, else none) the sale is canceled if still PENDING when it passes.
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
    event, = _open(session, [(sale, _deadline_of(body))])
    if request_id is not None:
        session.add(SubmitKey(request_id=request_id, sale_id=event.sale_id))
    return {"sale_id": event.sale_id, "status": SaleStatus.PENDING.name}, [event]


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
            sales.append((parse_sale(item.get("product_id"), item.get("user_id"), item.get("value"), item.get("quantity")),
                          _deadline_of(item)))
        except ContractError as exc:
            raise ContractError(f"sales[{index}]: {exc}") from None
    events = _open(session, sales)
    return {"sales": [{"sale_id": e.sale_id, "status": SaleStatus.PENDING.name} for e in events]}, events


class SqlSales:
    """rules.Sales on the handler's session, inside the runtime's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def close(self, sale_id: int, sale: Sale, status: str, reason: str | None) -> bool:
        return CLOSE.run(self.session, status=status, reason=reason, id=sale_id, p=sale.product_id, u=sale.user_id,
                         v=to_cents(sale.value), q=sale.quantity).rowcount == 1

    def known(self, sale_id: int) -> rules.Known | None:
        row = KNOWN.run(self.session, id=sale_id).fetchone()
        if row is None:
            return None
        product_id, user_id, cents, quantity, status = row
        return rules.Known(Sale(product_id=product_id, user_id=user_id, value=from_cents(int(cents)), quantity=quantity), status)

    def close_unknown(self, sale_id: int, sale: Sale, reason: str) -> bool:
        if CLOSE_UNKNOWN.run(self.session, id=sale_id, p=sale.product_id, u=sale.user_id, v=to_cents(sale.value),
                             q=sale.quantity, reason=reason).rowcount != 1:
            return False
        if self.session.connection().dialect.name == "postgresql":
            # An explicit id leaves the id sequence behind: move it past, so no submit gets this id.
            SKIP_ID.run(self.session, id=sale_id)
        return True


    def due(self, now: float, limit: int) -> list[tuple[int, Sale]]:
        return [(int(i), Sale(product_id=p, user_id=u, value=from_cents(int(v)), quantity=q))
                for i, p, u, v, q in DUE.run(self.session, now=now, limit=limit).fetchall()]


def expire(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """The periodic work: cancel the PENDING sales whose deadline passed (rules.expire)."""
    events = rules.expire(SqlSales(session), time.time())
    return {"expired": len(events)}, events


def on_answer(event: Event, session: Session) -> Event | None:
    """VALIDATED_PAYMENT and ROLLBACK_INVENTORY: rules.py decides."""
    return rules.decide(SqlSales(session), event)


def get(body: dict[str, Any], session: Session) -> tuple[dict[str, Any], list[Event]]:
    """One sale by id (the CLI's fallback when it may have missed the terminal event)."""
    sale_id = body.get("sale_id")
    if not isinstance(sale_id, int) or isinstance(sale_id, bool):
        raise ContractError("sale_id must be an integer")
    row = session.get(SaleRow, sale_id)
    if row is None:
        return {"sale_id": sale_id, "found": False}, []
    return {"sale_id": sale_id, "found": True, "status": row.status.name, "reason": row.reason}, []
