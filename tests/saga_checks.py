"""Load and conservation checks the scale-out tests share: submit many sales, then prove that
nothing was lost, doubled or oversold, from the participants' own answers and the stream."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from polling import eventually

from participants.contract import STREAM, parse_sale
from sagactl.check import CheckReport, run_checks
from sagactl.client import SaleOutcome, SagaClient
from sagactl.errors import Unavailable


@dataclass(frozen=True)
class Order:
    product_id: int
    user_id: int
    value: str
    quantity: int = 1


async def submit_all(client: SagaClient, orders: list[Order], concurrency: int = 16, timeout: float = 60.0) -> dict[int, SaleOutcome]:
    """Submit every order (at most `concurrency` at once) and wait until each sale is terminal."""
    await client.watch_terminal()
    gate = asyncio.Semaphore(concurrency)

    async def one(order: Order) -> int:
        async with gate:
            return await client.submit(parse_sale(order.product_id, order.user_id, order.value, order.quantity))

    sale_ids = await asyncio.gather(*(one(o) for o in orders))
    outcomes = await asyncio.gather(*(client.wait_terminal(i, timeout) for i in sale_ids))
    return dict(zip(sale_ids, outcomes))


async def await_terminal(client: SagaClient, sale_ids: list[int], timeout: float = 60.0) -> dict[int, SaleOutcome]:
    """Wait for sales submitted earlier (maybe by another client): ask the sale service about
    each after subscribing, so one that ended before the subscription is not waited for."""
    await client.watch_terminal()

    async def one(sale_id: int) -> SaleOutcome:
        return await client.lookup(sale_id) or await client.wait_terminal(sale_id, timeout)

    return dict(zip(sale_ids, await asyncio.gather(*(one(i) for i in sale_ids))))


async def stream_messages(client: SagaClient) -> list[RawStreamMsg]:
    """Every message on the SAGA stream, in order (direct reads: no consumer is disturbed)."""
    js = client.nc.jetstream()
    info = await js.stream_info(STREAM)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            messages.append(await js.get_msg(STREAM, seq))
        except NotFoundError:
            continue
    return messages


async def stream_events(client: SagaClient) -> list[dict[str, Any]]:
    """Every event body on the SAGA stream, in order."""
    return [orjson.loads(m.data) for m in await stream_messages(client) if m.data]


async def checked(client: SagaClient, timeout: float = 30.0) -> CheckReport:
    """`run_checks`, asked again while the streams cannot be read (a cluster still electing the
    leader of a stream or consumer it reads answers with timeouts meanwhile)."""
    report: CheckReport = await eventually(lambda: run_checks(client), "sagactl check to read the streams", timeout,
                                           every=0.5, retry_on=(Unavailable,))
    return report


async def assert_conserved(client: SagaClient) -> dict[str, Any]:
    """`sagactl check` passes, for a system whose sales are all terminal.

    Runs `sagactl check` (run_checks) first, then checks the same from the tables and the
    stream directly. Returns totals (sales by status, events, units sold) for the caller to report.
    """
    report = await checked(client)
    assert report.passed, f"sagactl check: {report.as_json()['violations']}"
    tables = await client.state(["sale", "inventory", "payment"])
    assert all(t is not None for t in tables.values()), f"a participant did not answer: {tables}"
    sales = tables["sale"]["sales"]  # type: ignore[index]
    # Only a CHARGED row holds money (a refused or refunded sale keeps its row, payment/rules.py).
    payments = [p for p in tables["payment"]["payments"] if p.get("state", "CHARGED") == "CHARGED"]  # type: ignore[index]
    stock = await client.request("inventory", "baseline", {})
    money = await client.request("payment", "baseline", {})
    assert not [s for s in sales if s["status"] == "PENDING"], "a sale is still PENDING"
    finalized = {s["id"]: s for s in sales if s["status"] == "FINALIZED"}
    # Stock: baseline = current + units of finalized sales (nothing is in flight any more).
    for product in stock["products"]:
        sold = sum(s["quantity"] for s in finalized.values() if s["product_id"] == product["product_id"])
        assert product["quantity"] >= 0, f"negative stock: {product}"
        assert product["baseline"] == product["quantity"] + sold, f"stock not conserved: {product}, sold {sold}"
    # Money: baseline = balance + payments; every payment is one finalized sale's, and vice versa.
    for user in money["users"]:
        paid = sum(Decimal(p["value"]) for p in payments if p["user_id"] == user["user_id"])
        assert Decimal(user["balance"]) >= 0, f"negative balance: {user}"
        assert Decimal(user["baseline"]) == Decimal(user["balance"]) + paid, f"money not conserved: {user}, paid {paid}"
    paid_sales = Counter(p["sale_id"] for p in payments)
    assert set(paid_sales) == set(finalized) and max(paid_sales.values(), default=1) == 1, "payments != finalized sales"
    for p in payments:
        sale = finalized[p["sale_id"]]
        assert (p["user_id"], p["value"]) == (sale["user_id"], sale["value"]), f"payment {p} does not match {sale}"
    # The stream: no event id twice, and no step of a saga taken twice (a second effect would
    # have produced a second event of the same type for the same sale).
    events = await stream_events(client)
    assert len({e["event_id"] for e in events}) == len(events), "an event id is on the stream twice"
    steps = Counter((e["sale_id"], e["type"]) for e in events)
    doubled = [step for step, count in steps.items() if count > 1]
    assert not doubled, f"saga steps taken twice: {doubled[:5]}"
    terminal = Counter(e["sale_id"] for e in events if e["type"] in ("FINALIZED_SALE", "CANCELED_SALE"))
    assert set(terminal) == {s["id"] for s in sales} and set(terminal.values()) == {1}, "not exactly one terminal event per sale"
    statuses = Counter(s["status"] for s in sales)
    return {"sales": len(sales), "finalized": statuses["FINALIZED"], "canceled": statuses["CANCELED"],
            "events": len(events), "units_sold": sum(s["quantity"] for s in finalized.values())}
