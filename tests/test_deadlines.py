"""Saga deadlines on a running system (both backends): the sale service cancels a sale still PENDING
at its deadline and inventory and payment compensate, whatever arrives late. Races are forced by
freezing a participant (SIGSTOP) until the deadline has fired, not by timing luck."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from participants.contract import parse_sale
from sagactl.snapshot import read_rows
from sagactl.streams.histories import read_histories
from sagactl.system.supervisor import Supervisor
from tests.driving import checked, connect, eventually, pid_of, quiesce, settle, start_one, wait_dead

SALE = parse_sale(1, 1, "30.00", 4)


async def stock_and_money(client: Any) -> tuple[int, Decimal]:
    stock = await client.request("inventory", "baseline", {})
    money = await client.request("payment", "baseline", {})
    return stock["products"][0]["quantity"], Decimal(money["users"][0]["balance"])


async def canceled_by_deadline(client: Any, sale_ids: list[int]) -> None:
    rows = await settle(client, sale_ids)
    assert {(r["status"], r["reason"]) for r in rows.values()} == {("CANCELED", "deadline exceeded")}, rows


class Frozen:
    """SIGSTOP a participant for the block (SIGCONT on the way out, whatever happens)."""

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self.pid = pid_of(supervisor, name)
        assert self.pid

    def __enter__(self) -> "Frozen":
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: Any) -> None:
        os.kill(self.pid, signal.SIGCONT)


async def test_a_sale_expires_while_payment_is_frozen_and_everything_comes_back(system: Supervisor) -> None:
    client = await connect(system)
    try:
        with Frozen(system, "payment"):
            sale_id = await client.submit(SALE, deadline=1.0)
            await canceled_by_deadline(client, [sale_id])

            async def stock_back() -> bool:
                return (await client.request("inventory", "baseline", {}))["products"][0]["quantity"] == 10

            await eventually(stock_back, "inventory to credit the stock back while payment is still frozen")
        # Payment wakes up to the late UPDATED_INVENTORY and then the CANCELED_SALE: charged, refunded.
        await quiesce(client)
        assert await stock_and_money(client) == (10, Decimal("100.00"))
        histories, _ = await read_histories(client.nc.jetstream())
        types = [s.type for s in histories[sale_id].steps]
        assert types.count("CANCELED_SALE") == 1 and "FINALIZED_SALE" not in types
        assert "REFUNDED_PAYMENT" in types, types
        await checked(client, stuck_after=0)
    finally:
        await client.close()


async def test_a_sale_expires_before_inventory_acts(system: Supervisor) -> None:
    client = await connect(system)
    try:
        with Frozen(system, "inventory"):
            sale_id = await client.submit(SALE, deadline=1.0)
            await canceled_by_deadline(client, [sale_id])
        await quiesce(client)
        assert await stock_and_money(client) == (10, Decimal("100.00"))
        await checked(client, stuck_after=0)
    finally:
        await client.close()


async def test_a_deadline_that_passed_while_the_sale_service_was_down_fires_at_start(system: Supervisor) -> None:
    client = await connect(system)
    try:
        with Frozen(system, "payment"):
            sale_id = await client.submit(SALE, deadline=1.5)
            submitted = time.time()
            sale_pid = pid_of(system, "sale")
            assert sale_pid
            os.kill(sale_pid, signal.SIGKILL)
            await wait_dead(sale_pid, "the sale service to die")

            async def passed() -> bool:  # the deadline is in the sale's row; the service is down
                return time.time() > submitted + 1.6

            await eventually(passed, "the deadline to pass")
            start_one(system, "sale")
            await canceled_by_deadline(client, [sale_id])
        await quiesce(client)
        assert await stock_and_money(client) == (10, Decimal("100.00"))
        await checked(client, stuck_after=0)
    finally:
        await client.close()


async def test_with_sale_replicas_each_sale_expires_exactly_once(system: Supervisor) -> None:
    system.up(None, replicas={"sale": 3})
    client = await connect(system)
    try:
        with Frozen(system, "payment"):
            sale_ids = [await client.submit(parse_sale(1, 1, "1.00", 1), deadline=1.0) for _ in range(8)]
            await canceled_by_deadline(client, sale_ids)
        await quiesce(client)
        histories, _ = await read_histories(client.nc.jetstream())
        cancels = Counter(h.sale_id for h in histories.values() for step in h.steps if step.type == "CANCELED_SALE")
        assert {i: cancels[i] for i in sale_ids} == {i: 1 for i in sale_ids}
        assert await stock_and_money(client) == (10, Decimal("100.00"))
        assert all(r["state"] != "CHARGED" for r in await read_rows(client, "payment", "payments"))
        await checked(client, stuck_after=0)
    finally:
        await client.close()
