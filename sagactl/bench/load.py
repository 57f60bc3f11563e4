"""The load generator of `sagactl bench`: submit sales closed or open loop, time each to its end.

Sales go through the sale service's public `submit_many` request (the batched form of
`sagactl submit`); their end is what the client's terminal watcher learns (`watch_terminal`).
Latency runs from the moment a sale was due (open loop) or sent (closed loop) to the arrival of
its FINALIZED or CANCELED event.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from hdrh.histogram import HdrHistogram

from participants.contract import (
    REASON_INSUFFICIENT_BALANCE,
    REASON_OUT_OF_STOCK,
    STATUS_CANCELED,
    STATUS_FINALIZED,
    Sale,
)
from sagactl.client import SagaClient, SaleOutcome

# The bench's own products and users, far from the seed's ids so a reused system keeps its rows.
PRODUCT = 9001  # plenty of stock
EMPTY_PRODUCT = 9002  # no stock: a sale of it is designed to fail in inventory
USER = 9001  # plenty of money
BROKE_USER = 9002  # no money: a sale by them is designed to fail in payment, and be compensated
STOCK = 1_000_000_000
BALANCE = Decimal("1000000000.00")
PRICE = Decimal("1.00")
CHUNK = 250  # sales per submit_many request
OPEN_LOOP_TICK_S = 0.002
MAX_LATENCY_US = 600_000_000


@dataclass(frozen=True)
class LoadPlan:
    sagas: int
    concurrency: int | None = None  # closed loop: at most this many sales in flight
    rate: float | None = None  # open loop: sales per second
    fault_rate: float = 0.1
    seed: int = 7


@dataclass(frozen=True)
class Expected:
    status: str
    reason: str | None


@dataclass
class LoadResult:
    histogram: HdrHistogram
    submitted: int = 0
    finalized: int = 0
    canceled: int = 0
    unexpected: list[str] = field(default_factory=list)  # sales whose end was not the designed one
    missing: list[int] = field(default_factory=list)  # sales with no terminal event before the deadline
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)


def design(plan: LoadPlan) -> list[tuple[Sale, Expected]]:
    """The sales to submit: a fraction designed to fail, half in inventory and half in payment."""
    rng = random.Random(plan.seed)
    ok = Sale(product_id=PRODUCT, user_id=USER, value=PRICE, quantity=1)
    no_stock = Sale(product_id=EMPTY_PRODUCT, user_id=USER, value=PRICE, quantity=1)
    no_money = Sale(product_id=PRODUCT, user_id=BROKE_USER, value=PRICE, quantity=1)
    sales = []
    for _ in range(plan.sagas):
        if rng.random() < plan.fault_rate:
            if rng.random() < 0.5:
                sales.append((no_stock, Expected(STATUS_CANCELED, REASON_OUT_OF_STOCK)))
            else:
                sales.append((no_money, Expected(STATUS_CANCELED, REASON_INSUFFICIENT_BALANCE)))
        else:
            sales.append((ok, Expected(STATUS_FINALIZED, None)))
    return sales


class Generator:
    def __init__(self, client: SagaClient, plan: LoadPlan, on_progress: Callable[[int, int], None]) -> None:
        self.client = client
        self.plan = plan
        self.on_progress = on_progress
        self.sales = design(plan)
        self.result = LoadResult(HdrHistogram(1, MAX_LATENCY_US, 3))
        self.expected: dict[int, Expected] = {}
        self.sent_at: dict[int, float] = {}
        self.done = 0
        self.in_flight = 0
        self.slot_free = asyncio.Event()
        self.all_done = asyncio.Event()

    async def run(self, deadline_s: float) -> LoadResult:
        await self.client.watch_terminal(self._on_outcome)
        progress = asyncio.create_task(self._report_progress())
        self.result.started = time.perf_counter()
        try:
            if self.plan.rate:
                await self._open_loop(self.plan.rate)
            else:
                await self._closed_loop(self.plan.concurrency or 1)
            try:
                await asyncio.wait_for(self.all_done.wait(), timeout=deadline_s)
            except asyncio.TimeoutError:
                await self._settle_missing()
        finally:
            progress.cancel()
            self.client.stop_listening(self._on_outcome)
        self.on_progress(self.done, self.plan.sagas)
        return self.result

    async def _closed_loop(self, concurrency: int) -> None:
        # Refill in chunks of at least an eighth of the window (or whatever is left): one request
        # per finished sale would measure the request rate of the sale service, not the saga.
        refill = max(1, min(CHUNK, concurrency // 8))
        index = 0
        while index < len(self.sales):
            free = concurrency - self.in_flight
            if free < min(refill, len(self.sales) - index) and self.in_flight > 0:
                self.slot_free.clear()
                await self.slot_free.wait()
                continue
            take = min(free, CHUNK, len(self.sales) - index)
            await self._submit(self.sales[index : index + take], time.perf_counter())
            index += take

    async def _open_loop(self, rate: float) -> None:
        index = 0
        started = time.perf_counter()
        while index < len(self.sales):
            due = min(int((time.perf_counter() - started) * rate) + 1, len(self.sales))
            while index < due:
                take = min(CHUNK, due - index)
                # Timed from when the sales were due, not sent: a late generator must not hide latency.
                await self._submit(self.sales[index : index + take], started + index / rate)
                index += take
            await asyncio.sleep(OPEN_LOOP_TICK_S)

    async def _submit(self, batch: list[tuple[Sale, Expected]], due: float) -> None:
        self.in_flight += len(batch)
        ids = await self.client.submit_many([sale for sale, _ in batch], timeout=30)
        self.result.submitted += len(ids)
        for sale_id, (_, expected) in zip(ids, batch):
            self.expected[sale_id] = expected
            self.sent_at[sale_id] = due
            early = self.client.outcome(sale_id)  # its end arrived before the submit's reply
            if early is not None:
                self._on_outcome(early)

    def _on_outcome(self, outcome: SaleOutcome) -> None:
        sale_id, now, status, reason = outcome.sale_id, outcome.seen_at, outcome.status, outcome.reason
        sent = self.sent_at.pop(sale_id, None)
        if sent is None:
            return  # not submitted yet (`_submit` comes back to it), or not one of ours
        self.result.histogram.record_value(max(1, min(int((now - sent) * 1e6), MAX_LATENCY_US)))
        expected = self.expected.pop(sale_id)
        if status == STATUS_FINALIZED:
            self.result.finalized += 1
        else:
            self.result.canceled += 1
        if (status, reason) != (expected.status, expected.reason):
            self.result.unexpected.append(f"sale {sale_id}: {status} ({reason}), expected {expected.status} ({expected.reason})")
        self.done += 1
        self.in_flight -= 1
        self.result.ended = now
        self.slot_free.set()
        if self.done >= len(self.sales):
            self.all_done.set()

    async def _settle_missing(self) -> None:
        """Ask the sale service about sales whose terminal event never arrived (a lost core message)."""
        await self.client.recheck(list(self.sent_at))
        self.result.missing.extend(self.sent_at)

    async def _report_progress(self) -> None:
        while True:
            self.on_progress(self.done, self.plan.sagas)
            await asyncio.sleep(0.2)
