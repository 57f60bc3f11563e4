"""What the participants' databases hold, as `sagactl check` reads it: over NATS, never the files.

Read in causal order so a check on a live system does not invent violations: stock and
balances first, then sales, then payments (a payment exists before its sale is FINALIZED, so
every FINALIZED sale read has its payment in the later read). Large tables come a page at a
time through the runtime's `rows` request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sagactl.client import SagaClient
from sagactl.errors import SagactlError

PAGE_ROWS = 5000


@dataclass(frozen=True, slots=True)
class SaleRecord:
    id: int
    product_id: int
    user_id: int
    value: Decimal
    quantity: int
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    id: int
    user_id: int
    sale_id: int
    value: Decimal
    state: str = "CHARGED"  # CHARGED, REFUSED, REFUNDED or CANCELED (participants/payment/rules.py)

    @property
    def charged(self) -> bool:
        return self.state == "CHARGED"


@dataclass(frozen=True, slots=True)
class StockRecord:
    product_id: int
    baseline: int
    quantity: int | None  # None: the product's row is gone


@dataclass(frozen=True, slots=True)
class MoneyRecord:
    user_id: int
    baseline: Decimal
    balance: Decimal | None  # None: the user's row is gone
    paid: Decimal


@dataclass
class Snapshot:
    stock: list[StockRecord] | None = None
    money: list[MoneyRecord] | None = None
    sales: dict[int, SaleRecord] | None = None
    payments: list[PaymentRecord] | None = None
    # participant -> why it could not be read
    unreadable: dict[str, str] = field(default_factory=dict)


async def read_rows(client: SagaClient, participant: str, table: str, after: int | None = 0) -> list[dict[str, Any]]:
    """Every row of a participant's table (with a key above `after`), a page at a time."""
    rows: list[dict[str, Any]] = []
    while after is not None:
        page = await client.request(participant, "rows", {"table": table, "after": after, "limit": PAGE_ROWS})
        columns = page["columns"]
        rows.extend(dict(zip(columns, row)) for row in page["rows"])
        after = page["next"]
    return rows


async def read_snapshot(client: SagaClient) -> Snapshot:
    snapshot = Snapshot()

    async def attempt(participant: str, coroutine: Any) -> Any:
        try:
            return await coroutine
        except SagactlError as exc:
            snapshot.unreadable.setdefault(participant, str(exc))
            return None

    inventory, payment = await asyncio.gather(
        attempt("inventory", client.request("inventory", "baseline", {})),
        attempt("payment", client.request("payment", "baseline", {})),
    )
    if inventory is not None:
        snapshot.stock = [StockRecord(int(p["product_id"]), int(p["baseline"]), p["quantity"]) for p in inventory["products"]]
    if payment is not None:
        snapshot.money = [
            MoneyRecord(int(u["user_id"]), Decimal(u["baseline"]), None if u["balance"] is None else Decimal(u["balance"]),
                        Decimal(u.get("paid") or "0"))
            for u in payment["users"]
        ]
    sales = await attempt("sale", read_rows(client, "sale", "sales"))
    if sales is not None:
        snapshot.sales = _sales(sales)
    payments = await attempt("payment", read_rows(client, "payment", "payments"))
    if payments is not None:
        snapshot.payments = [PaymentRecord(r["id"], r["user_id"], r["sale_id"], Decimal(r["value"]), r.get("state") or "CHARGED")
                             for r in payments]
    if snapshot.sales is not None and snapshot.payments:
        # Payments for sales newer than the sales read: read those sales now (a sale exists before
        # its payment), so a payment for a sale that never existed is found whatever its id.
        newest = max(snapshot.sales, default=0)
        if any(p.sale_id > newest for p in snapshot.payments):
            later = await attempt("sale", read_rows(client, "sale", "sales", after=newest))
            snapshot.sales.update(_sales(later or []))
    return snapshot


def _sales(rows: list[dict[str, Any]]) -> dict[int, SaleRecord]:
    return {r["id"]: SaleRecord(r["id"], r["product_id"], r["user_id"], Decimal(r["value"]), r["quantity"], r["status"], r["reason"])
            for r in rows}
