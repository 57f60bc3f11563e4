"""Several processes of one participant on one durable consumer, on each database backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import orjson
import pytest
from backends import PostgresBackend, SqliteBackend, db_urls
from saga_checks import Order, assert_conserved, await_terminal, submit_all

from participants.contract import parse_sale
from participants.runtime.loader import BUILT_IN
from sagactl.client import SagaClient
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

REPLICAS = {"inventory": 3, "payment": 2}


@pytest.fixture
def replicated(state: StateDir, db_backend: SqliteBackend | PostgresBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Supervisor]:
    """inventory x3 and payment x2; events of a killed replica come back after 2 s, not 30."""
    monkeypatch.setenv("SAGACTL_ACK_WAIT", "2")
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, replicas=REPLICAS, db_urls=db_urls(db_backend, list(BUILT_IN)))
        yield supervisor
    finally:
        supervisor.down(kill=True)


def log_lines(supervisor: Supervisor, name: str, replica: int) -> list[dict]:
    path: Path = supervisor.state.log_file(name, replica)
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    return lines


def handled_by(supervisor: Supervisor, name: str) -> dict[int, int]:
    return {r: sum(1 for line in log_lines(supervisor, name, r) if line["what"] == "handled") for r in range(1, REPLICAS[name] + 1)}


async def stocked(urls: list[str], stock: int, close: bool = False) -> SagaClient:
    client = await SagaClient.connect(urls)
    await client.request("inventory", "setup", {"products": {"1": stock}})
    await client.request("payment", "setup", {"users": {"1": {"balance": "1000.00"}, "2": {"balance": "5.00"}}})
    if close:
        await client.close()
    return client


def test_replicas_share_the_work_with_no_double_effect_and_no_oversell(replicated: Supervisor) -> None:
    """80 concurrent sales race for 30 units; user 2 can pay for 5 at most (the rest compensate)."""
    orders = [Order(1, 1 if i % 4 else 2, "1.00") for i in range(80)]

    async def scenario() -> dict:
        client = await stocked(replicated.nats_urls(), 30)
        try:
            outcomes = await submit_all(client, orders, concurrency=24)
            totals = await assert_conserved(client)
            return {"outcomes": outcomes, **totals}
        finally:
            await client.close()

    result = asyncio.run(scenario())
    assert result["units_sold"] == result["finalized"] <= 30
    reasons = {o.reason for o in result["outcomes"].values() if o.status == "CANCELED"}
    assert reasons <= {"out of stock", "insufficient balance"}
    # The durable consumer handed events to more than one process of each replicated participant.
    for name in REPLICAS:
        busy = [r for r, count in handled_by(replicated, name).items() if count]
        assert len(busy) >= 2, f"{name}: only replicas {busy} handled events"


def test_a_replica_killed_mid_batch_loses_and_doubles_nothing(replicated: Supervisor) -> None:
    """Inventory replica 2 pulls a batch of 40 queued sales and is SIGKILLed in the middle of it
    (its batch transaction never commits); the three replicas then get the batch again after the
    ack wait, and every event takes effect exactly once."""
    urls = replicated.nats_urls()
    asyncio.run(stocked(urls, 25, close=True))
    for replica in range(1, 4):
        replicated.stop_participant("inventory", replica)

    async def submit_queued() -> list[int]:
        client = await SagaClient.connect(urls)
        try:
            return [await client.submit(parse_sale(1, 1, "2.50", 1)) for _ in range(40)]
        finally:
            await client.close()

    sale_ids = asyncio.run(submit_queued())
    crashing = replicated.start_participant("inventory", BUILT_IN["inventory"], 2, urls, {"SAGACTL_CRASH_POINT": "mid_batch"})
    assert crashing.wait(timeout=30) == -9, "the replica was expected to die at its crash point"
    replicated.up(None)  # the three inventory replicas again (replica 2 without the crash point)

    async def finish() -> dict:
        client = await SagaClient.connect(urls)
        try:
            await await_terminal(client, sale_ids)
            return await assert_conserved(client)
        finally:
            await client.close()

    totals = asyncio.run(finish())
    assert (totals["sales"], totals["finalized"], totals["canceled"]) == (40, 25, 15)
    # Each CREATED_SALE took effect once, over all replicas, though the killed batch delivered it before.
    created = [line for r in range(1, 4) for line in log_lines(replicated, "inventory", r)
               if line["what"] == "handled" and line["type"] == "CREATED_SALE"]
    assert sorted(line["sale_id"] for line in created) == sorted(sale_ids)
    assert sum(1 for line in created if line["deliveries"] >= 2) >= 2, "the killed replica's batch was not redelivered"
