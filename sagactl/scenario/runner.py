"""Play a scenario against a running system and judge its expectations."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import orjson
from nats.aio.msg import Msg

from participants.contract import STREAM_SUBJECTS
from sagactl.client import Outcome, SagaClient
from sagactl.scenario.model import Scenario, SubmitStep, WaitStep



@dataclass
class Verdict:
    what: str
    passed: bool
    expected: Any
    actual: Any


@dataclass
class Report:
    scenario: str
    sales: dict[str, dict[str, Any]] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "sales": self.sales,
            "expectations": [v.__dict__ for v in self.verdicts],
            "before": self.before,
            "after": self.after,
        }


async def follow_events(client: SagaClient, on_event: Callable[[dict[str, Any]], None]) -> Any:
    """Call `on_event` for every saga event published from now on (a live view, not a consumer)."""

    async def deliver(msg: Msg) -> None:
        try:
            on_event(orjson.loads(msg.data))
        except orjson.JSONDecodeError:
            on_event({"type": "(malformed)", "subject": msg.subject})

    return await client.nc.subscribe(STREAM_SUBJECTS[0], cb=deliver)


async def play(
    scenario: Scenario,
    client: SagaClient,
    on_step: Callable[[str], None] = lambda _: None,
) -> Report:
    started = time.monotonic()
    report = Report(scenario.name)
    await client.watch_terminal()
    report.before = await client.state(await client.participant_names())
    named: dict[str, int] = {}
    submitted: list[int] = []
    for index, step in enumerate(scenario.steps, start=1):
        if isinstance(step, SubmitStep):
            sale_id = await client.submit(step.sale)
            submitted.append(sale_id)
            label = step.name or f"sale {sale_id}"
            if step.name:
                named[step.name] = sale_id
            on_step(f"step {index}: submitted {label} (sale {sale_id}: qty {step.sale.quantity}, value {step.sale.value:.2f})")
        elif isinstance(step, WaitStep):
            ids = submitted if step.names is None else [named[n] for n in step.names]
            await asyncio.gather(*(client.wait_terminal(i, step.timeout_s) for i in ids))
            on_step(f"step {index}: {len(ids)} sale(s) reached a terminal state")
    report.after = await client.state(await client.participant_names())
    for name, sale_id in named.items():
        outcome = client.outcome(sale_id)
        report.sales[name] = {"sale_id": sale_id, "status": outcome.status if outcome else "PENDING",
                              "reason": outcome.reason if outcome else None}
    report.verdicts = judge(scenario, report, named, client)
    report.seconds = time.monotonic() - started
    return report


def judge(scenario: Scenario, report: Report, named: dict[str, int], client: SagaClient) -> list[Verdict]:
    verdicts = []
    for name, wanted in scenario.expect.sales.items():
        outcome: Outcome | None = client.outcome(named[name])
        actual = {"status": outcome.status if outcome else "PENDING", "reason": outcome.reason if outcome else None}
        passed = actual["status"] == wanted.status and (wanted.reason is None or actual["reason"] == wanted.reason)
        expected = {"status": wanted.status, "reason": wanted.reason} if wanted.reason else {"status": wanted.status}
        verdicts.append(Verdict(f"sale {name} (id {named[name]})", passed, expected, actual))
    for key, rows in scenario.expect.tables.items():
        participant, _, table = key.partition(".")
        tables = report.after.get(participant)
        actual_rows = None if tables is None else tables.get(table)
        if actual_rows is None:
            verdicts.append(Verdict(f"table {key}", False, rows, "no such table or participant did not answer"))
            continue
        shown = [{k: r.get(k) for k in (rows[i] if i < len(rows) else r)} for i, r in enumerate(actual_rows)]
        passed = len(rows) == len(actual_rows) and all(
            all(_same(v, actual.get(k)) for k, v in want.items()) for want, actual in zip(rows, actual_rows)
        )
        verdicts.append(Verdict(f"table {key}", passed, rows, shown))
    return verdicts


def _same(expected: Any, actual: Any) -> bool:
    if expected == actual:
        return True
    try:
        return Decimal(str(expected)) == Decimal(str(actual))
    except (InvalidOperation, ValueError):
        return str(expected) == str(actual)
