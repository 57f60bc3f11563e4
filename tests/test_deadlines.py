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
from sagactl.system.processes import read_pid
from sagactl.system.statedir import StateDir
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
        report = await checked(client, stuck_after=0)
        assert (report.counts["expired"], report.counts["refunds"], report.counts["payments"]) == (1, 1, 0)
        # trace shows the deadline, when it fired, and the compensations after it
        import asyncio
        import json

        from typer.testing import CliRunner

        from sagactl.cli.main import app

        def trace(*args: str) -> str:  # the CLI runs its own event loop: in a thread
            return CliRunner().invoke(app, ["trace", str(sale_id), *args, "--state-dir", str(system.state.root)]).stdout

        traced = json.loads(await asyncio.to_thread(trace, "--json"))
        assert traced["deadline_at"] and traced["deadline_fired_at"]
        kinds = {e["type"]: e["kind"] for e in traced["events"]}
        assert kinds["ROLLBACK_INVENTORY"] == kinds["REFUNDED_PAYMENT"] == "compensation"
        shown = await asyncio.to_thread(trace)
        assert "deadline " in shown and "fired at +" in shown
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


def test_up_keeps_the_sale_deadline_and_status_shows_it(tmp_path: Any) -> None:
    """`up --sale-deadline` reaches the sale service (a sale submitted without --deadline expires),
    survives a restart of the sale service, and `status --json` shows it; bad values exit 2."""
    import json

    from typer.testing import CliRunner

    from sagactl.cli.main import app

    runner = CliRunner()
    state = str(tmp_path / "state")
    for bad in ("0", "-3", "soon"):
        result = runner.invoke(app, ["up", "--sale-deadline", bad, "--state-dir", state])
        assert result.exit_code == 2, result.output
    bad_submit = runner.invoke(app, ["submit", "--product-id", "1", "--user-id", "1", "--value", "1", "--quantity", "1",
                                     "--deadline", "0", "--state-dir", state])
    assert bad_submit.exit_code == 2 and "--deadline must be" in bad_submit.stderr
    try:
        assert runner.invoke(app, ["up", "--sale-deadline", "1", "--state-dir", state]).exit_code == 0
        status = json.loads(runner.invoke(app, ["status", "--json", "--state-dir", state]).stdout)
        assert status["sale_deadline"] == 1.0
        supervisor = Supervisor(StateDir.at(tmp_path / "state"))
        supervisor.stop_participant("sale", 1)
        supervisor.up(None)  # the sale service again, with the remembered deadline
        payment_pid = pid_of(supervisor, "payment")
        assert payment_pid
        os.kill(payment_pid, signal.SIGSTOP)
        try:
            result = runner.invoke(app, ["submit", "--product-id", "1", "--user-id", "1", "--value", "1.00",
                                         "--quantity", "1", "--wait", "--timeout", "30", "--json", "--state-dir", state])
        finally:
            os.kill(payment_pid, signal.SIGCONT)
        assert result.exit_code == 1 and json.loads(result.stdout)["reason"] == "deadline exceeded", result.output
    finally:
        runner.invoke(app, ["down", "--state-dir", state])


async def test_with_payment_replicas_a_late_charge_and_its_cancel_meet_once(system: Supervisor) -> None:
    """Two payment replicas frozen while ten sales expire; thawed, they share the late
    UPDATED_INVENTORY and CANCELED_SALE events, often one replica each for the same sale: the
    payment row (one per sale, inserted first by whichever commits first) decides."""
    system.up(None, replicas={"payment": 2})
    pids = [pid for n in (1, 2) if (pid := read_pid(system.state.pid_file("payment", n)))]
    assert len(pids) == 2
    client = await connect(system)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            sale_ids = [await client.submit(parse_sale(1, 1, "5.00", 1), deadline=1.0) for _ in range(10)]
            await canceled_by_deadline(client, sale_ids)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        await quiesce(client)
        assert await stock_and_money(client) == (10, Decimal("100.00"))
        assert all(r["state"] in ("REFUNDED", "CANCELED") for r in await read_rows(client, "payment", "payments"))
        await checked(client, stuck_after=0)
    finally:
        await client.close()
