"""Driving a running system from the fault tests: submit, build backlogs, wait on conditions, tally.

Every wait has a deadline and polls a condition; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from polling import DEADLINE_S, eventually

from participants.contract import STREAM, Sale
from participants.runtime.loader import BUILT_IN
from sagactl.check import CheckReport, run_checks
from sagactl.client import SagaClient
from sagactl.snapshot import read_rows
from sagactl.system.processes import pid_alive, read_pid
from sagactl.system.supervisor import Supervisor


async def connect(supervisor: Supervisor) -> SagaClient:
    return await SagaClient.connect(supervisor.nats_urls(), name="fault-test", reconnect_forever=True)


async def submit_all(client: SagaClient, sales: list[Sale]) -> list[int]:
    return list(await asyncio.gather(*(client.submit(sale) for sale in sales)))


async def sale_statuses(client: SagaClient) -> dict[int, str]:
    return {row["id"]: row["status"] for row in await read_rows(client, "sale", "sales")}


async def settle(client: SagaClient, sale_ids: list[int], timeout: float = DEADLINE_S) -> dict[int, dict[str, Any]]:
    """Wait until every given sale is FINALIZED or CANCELED; return their rows."""

    async def all_terminal() -> dict[int, dict[str, Any]] | None:
        rows = {row["id"]: row for row in await read_rows(client, "sale", "sales")}
        pending = [i for i in sale_ids if rows.get(i, {}).get("status") in (None, "PENDING")]
        return None if pending else {i: rows[i] for i in sale_ids}

    return await eventually(all_terminal, f"{len(sale_ids)} sales to reach a terminal state", timeout)


async def consumer_pending(client: SagaClient, consumer: str) -> int:
    info = await client.nc.jetstream().consumer_info(STREAM, consumer)
    return info.num_pending


async def wait_pending(client: SagaClient, consumer: str, count: int) -> None:
    async def reached() -> bool:
        return await consumer_pending(client, consumer) == count

    await eventually(reached, f"{count} events waiting for {consumer}")


async def quiesce(client: SagaClient, timeout: float = DEADLINE_S) -> None:
    """Wait until no consumer has an event waiting or unacknowledged (redeliveries included)."""

    async def idle() -> bool:
        consumers = await client.nc.jetstream().consumers_info(STREAM)
        return all(c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers)

    await eventually(idle, "every consumer to be idle", timeout)


def start_one(supervisor: Supervisor, name: str, env: dict[str, str] | None = None) -> int:
    """Start one participant of a running system (with extra environment) and wait until it is ready."""
    log_file = supervisor.state.log_file(name)
    offset = log_file.stat().st_size if log_file.exists() else 0
    process = supervisor.start_participant(name, BUILT_IN[name], 1, supervisor.nats_urls(), env)
    supervisor.wait_ready([(name, 1, process, offset)])
    return process.pid


async def wait_dead(pid: int, what: str) -> None:
    async def dead() -> bool:
        return not pid_alive(pid)

    await eventually(dead, what, timeout=30)


def pid_of(supervisor: Supervisor, name: str) -> int | None:
    return read_pid(supervisor.state.pid_file(name))


def log_lines(supervisor: Supervisor, name: str, what: str) -> list[dict[str, Any]]:
    lines = []
    for line in supervisor.state.log_file(name).read_text().splitlines():
        if f'"what":"{what}"' in line:
            lines.append(json.loads(line))
    return lines


async def checked(client: SagaClient, stuck_after: float = 30.0) -> CheckReport:
    report = await run_checks(client, stuck_after)
    assert report.passed, "\n".join(f"{v.check} {v.subject}: {v.detail}" for v in report.violations)
    return report


def record(fault: str, sagas: int, rows: dict[int, dict[str, Any]], report: CheckReport, **extra: Any) -> None:
    """Append this run's tally to $SAGACTL_FAULT_REPORT (docs/reliability.md's table is made from it)."""
    path = os.environ.get("SAGACTL_FAULT_REPORT")
    if not path:
        return
    kinds = Counter(v.check for v in report.violations)
    tally = {
        "fault": fault, "sagas": sagas, "statuses": dict(Counter(r["status"] for r in rows.values())),
        "lost": kinds["stock"] + kinds["money"] + kinds["dead-letter"] + sum(r["status"] == "PENDING" for r in rows.values()),
        "doubled": kinds["applied-twice"] + kinds["payment"] + kinds["canceled"],
        "stuck": kinds["stuck"], **extra,
    }
    with Path(path).open("a") as report_file:
        report_file.write(json.dumps(tally) + "\n")
