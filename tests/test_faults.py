"""The whole system under real faults: SIGKILL at each crash point, concurrency, NATS killed.

After each fault every sale must reach a terminal state and `run_checks` must pass: nothing
lost, nothing doubled, nothing stuck. (Poison events and the dead-letter commands: test_deadletters.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import pytest

from participants.contract import Sale, parse_sale
from participants.runtime.crashpoints import CRASH_POINTS
from sagactl.client import SagaClient
from sagactl.errors import SagactlError
from sagactl.system.processes import port_open
from sagactl.system.supervisor import Supervisor
from tests.driving import (
    checked,
    connect,
    eventually,
    log_lines,
    pid_of,
    quiesce,
    record,
    settle,
    start_one,
    submit_all,
    wait_dead,
    wait_pending,
)

BACKLOG = 8


async def build_backlog(system: Supervisor, client: SagaClient, victim: str) -> list[int]:
    """Submit sales while `victim` is stopped, so its first fetch after a start is a batch of BACKLOG events."""
    one = parse_sale(1, 1, "1.00", 1)
    if victim == "inventory":
        system.stop_participant("inventory")
        ids = await submit_all(client, [one] * BACKLOG)
        await wait_pending(client, "inventory", BACKLOG)
        return ids
    system.stop_participant("payment")
    ids = await submit_all(client, [one] * BACKLOG)
    await wait_pending(client, "payment", BACKLOG)
    if victim == "sale":
        system.stop_participant("sale")
        start_one(system, "payment")
        await wait_pending(client, "sale", BACKLOG)
    return ids


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("victim", ["sale", "inventory", "payment"])
async def test_sigkill_at_a_crash_point_loses_and_doubles_nothing(fast_system: Supervisor, victim: str, point: str) -> None:
    client = await connect(fast_system)
    try:
        ids = await build_backlog(fast_system, client, victim)
        pid = start_one(fast_system, victim, {"SAGACTL_CRASH_POINT": point})
        await wait_dead(pid, f"{victim} to be killed at {point}")
        fast_system.up(None)  # what `sagactl up` does: restart what is missing, without the crash point
        rows = await settle(client, ids)
        assert Counter(r["status"] for r in rows.values()) == {"FINALIZED": BACKLOG}
        await quiesce(client)
        report = await checked(client)
        assert len(log_lines(fast_system, victim, "ready")) >= 2
        if point != "mid_batch":  # mid_batch dies inside the batch's transaction: nothing was committed
            # The events the killed process had committed came back and were recognised, not re-applied.
            assert log_lines(fast_system, victim, "duplicate")
        record(f"SIGKILL {victim} at {point}", len(ids), rows, report)
    finally:
        await client.close()


async def test_concurrent_sales_finalize_exactly_as_many_as_stock_and_balance_allow(system: Supervisor) -> None:
    client = await connect(system)
    try:
        await client.request("inventory", "setup", {"products": {"2": 100}})
        await client.request("payment", "setup", {"users": {"2": {"balance": "25.00"}}})
        # 50 sales of 1 unit against stock 10; 50 sales of 5.00 against a balance of 25.00.
        sales = [parse_sale(1, 1, "1.00", 1)] * 50 + [parse_sale(2, 2, "5.00", 1)] * 50
        ids = await submit_all(client, sales)
        rows = await settle(client, ids)
        await quiesce(client)
        by_product = Counter((r["product_id"], r["status"], r["reason"]) for r in rows.values())
        assert by_product == {
            (1, "FINALIZED", None): 10, (1, "CANCELED", "out of stock"): 40,
            (2, "FINALIZED", None): 5, (2, "CANCELED", "insufficient balance"): 45,
        }
        tables = (await client.state(["inventory", "payment"]))
        assert {r["product_id"]: r["quantity"] for r in tables["inventory"]["inventories"]} == {1: 0, 2: 95}
        assert {u["id"]: u["balance"] for u in tables["payment"]["users"]} == {1: "90.00", 2: "0.00"}
        report = await checked(client)
        record("100 concurrent sales racing for stock 10 and balance 25.00", len(ids), rows, report)
    finally:
        await client.close()


async def test_nats_killed_and_restarted_on_its_store_while_sales_are_in_flight(fast_system: Supervisor) -> None:
    pids = {name: pid_of(fast_system, name) for name in ("sale", "inventory", "payment")}
    client = await connect(fast_system)
    try:
        await client.request("inventory", "setup", {"products": {"1": 1000}})
        await client.request("payment", "setup", {"users": {"1": {"balance": "10000.00"}}})
        sale = parse_sale(1, 1, "2.00", 1)
        ids = await submit_all(client, [sale] * 60)
        fast_system.stop_nats(kill=True)  # SIGKILL: sagas are between their steps
        fast_system.start_nats()  # same port, same store
        await asyncio.wait_for(_connected(client), timeout=30)
        ids += await _submit_until_accepted(client, sale, 60)
        rows = await settle(client, ids)
        assert Counter(r["status"] for r in rows.values()) == {"FINALIZED": 120}
        await quiesce(client)
        report = await checked(client)
        # The participants reconnected by themselves: same processes, no restart.
        assert {name: pid_of(fast_system, name) for name in pids} == pids
        for name in pids:
            assert any(line.get("state") == "reconnected" for line in log_lines(fast_system, name, "nats"))
        record("nats-server SIGKILLed and restarted mid-flight", len(ids), rows, report)
    finally:
        await client.close()


async def _connected(client: SagaClient) -> None:
    while not client.nc.is_connected:
        await asyncio.sleep(0.05)


async def _submit_until_accepted(client: SagaClient, sale: Sale, count: int) -> list[int]:
    """Submit `count` sales, retrying (same request id) while the system comes back after the restart."""
    ids = []
    for index in range(count):
        for _ in range(100):
            try:
                ids.append(await client.submit(sale, f"after-restart-{index}"))
                break
            except SagactlError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the sale service never accepted a sale after the NATS restart")
    return ids


def test_a_killed_nats_server_has_released_its_port_when_stop_returns(state) -> None:  # type: ignore[no-untyped-def]
    """`start_nats` after `stop_nats(kill=True)` must get the same port back: the participants
    and clients reconnect to that URL. (A killed nats-server's main thread is a zombie while its
    other threads still hold the port; taking that for "gone" moved the restart to a new port.)"""
    supervisor = Supervisor(state)
    try:
        first = supervisor.start_nats()
        port = int(first.rsplit(":", 1)[1])
        for _ in range(20):
            supervisor.stop_nats(kill=True)
            assert not port_open(port)
            assert supervisor.start_nats() == first
    finally:
        supervisor.stop_nats()


def test_a_port_taken_before_nats_binds_it_moves_the_server_to_another(state, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The free port chosen is taken (here: by a plain socket) before nats-server binds it, as
    happens when many servers start at once: the supervisor must not take that socket for its
    server (an open port is not ours), but start it on another port."""
    import socket

    from sagactl.system import supervisor as supervisor_module

    taken = socket.create_server(("127.0.0.1", 0))
    taken_port = taken.getsockname()[1]
    choices = [taken_port]
    real_free_port = supervisor_module.free_port
    monkeypatch.setattr(supervisor_module, "free_port", lambda: choices.pop() if choices else real_free_port())
    supervisor = Supervisor(state)
    try:
        url = supervisor.start_nats()
        port = int(url.rsplit(":", 1)[1])
        assert port != taken_port and not choices

        async def info() -> str:
            client = await SagaClient.connect([url], name="test-port")
            try:
                return str(client.nc.connected_server_version)
            finally:
                await client.close()

        assert asyncio.run(info())  # a NATS server answers there
    finally:
        supervisor.stop_nats()
        taken.close()


async def test_a_participant_back_after_the_duplicate_window_and_the_inbox_retention_doubles_nothing(
    state, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """The sale service dies after publishing CREATED_SALE and before marking it sent, and stays
    down until the stream's duplicate window has passed and inventory has pruned the event from
    its inbox. Republishing the row blindly on restart would debit the stock a second time."""
    monkeypatch.setenv("SAGACTL_ACK_WAIT", "1")
    monkeypatch.setenv("SAGACTL_MAX_DELIVER", "1")
    monkeypatch.setenv("SAGACTL_STREAM_DUPLICATE_WINDOW", "1")  # inbox kept 1 + 1 x (1 + 5) = 7 s
    system = Supervisor(state)
    client: SagaClient | None = None
    try:
        system.up(None)
        client = await connect(system)
        system.stop_participant("sale")
        pid = start_one(system, "sale", {"SAGACTL_CRASH_POINT": "after_publish"})
        try:
            await client.submit(parse_sale(1, 1, "1.00", 1))
        except SagactlError:
            pass  # the reply may die with the process; the sale is committed either way
        await wait_dead(pid, "sale to be killed at after_publish")
        inventory_db = sqlite3.connect(f"file:{state.root / 'inventory.db'}?mode=ro", uri=True)

        async def forgotten() -> bool:
            return inventory_db.execute("SELECT count(*) FROM saga_inbox WHERE event_type = 'CREATED_SALE'").fetchone() == (0,)

        await eventually(forgotten, "inventory to prune CREATED_SALE from its inbox", timeout=40)
        inventory_db.close()
        system.up(None)
        rows = await settle(client, [1])
        await quiesce(client)
        report = await checked(client)
        stock = (await client.state(["inventory"]))["inventory"]["inventories"][0]["quantity"]
        assert (rows[1]["status"], stock) == ("FINALIZED", 9)
        assert log_lines(system, "sale", "outbox_recovered")
        record("sale SIGKILLed after publishing, back after the duplicate window and inbox retention", 1, rows, report)
    finally:
        if client is not None:
            await client.close()
        system.down()  # also when `up` itself failed half-way
