"""`sagactl run` end to end: the shipped scenarios, every step type on a live system, failing verdicts."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app
from sagactl.scenario import loader
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

runner = CliRunner()
# success and fault are run by tests/test_cli.py::test_run_shipped_scenarios.
SHIPPED = sorted(set(loader.shipped_scenarios()) - {"success", "fault"})


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["run", *args, "--json"])
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in report["expectations"] if not v["passed"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(name: str) -> None:
    code, report = run_json(name)
    assert all(step["passed"] for step in report["steps"]), report["steps"]
    assert code == 0 and not failed(report), failed(report)
    assert report["expectations"] and report["after"]


FALSE_EXPECTATIONS = """\
name: wrong
description: the success flow, with expectations that do not hold
steps:
  - submit: {product_id: 1, user_id: 1, value: "20.00", quantity: 2}
    as: first
  - wait: [first]
    status: CANCELED
expect:
  sales:
    first: {status: CANCELED, reason: out of stock}
  tables:
    inventory.inventories: [{product_id: 1, quantity: 7}]
    payment.payments: {count: 0}
  events:
    first: [CREATED_SALE, ROLLBACK_INVENTORY, CANCELED_SALE]
"""


def test_false_expectations_exit_1_with_expected_and_actual(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(FALSE_EXPECTATIONS)
    code, report = run_json(str(scenario))
    assert code == 1 and report["passed"] is False
    verdicts = {v["what"]: v for v in report["expectations"]}
    assert verdicts["step 2 (line 6): wait for first"]["actual"] == {"FINALIZED": 1}  # ended otherwise: no timeout
    assert verdicts["sale first (id 1)"]["expected"] == {"status": "CANCELED", "reason": "out of stock"}
    assert verdicts["sale first (id 1)"]["actual"] == {"status": "FINALIZED", "reason": None}
    assert verdicts["table inventory.inventories"]["actual"] == [{"product_id": 1, "quantity": 8}]
    assert verdicts["table payment.payments"]["actual"] == {"count": 1}
    assert verdicts["events of first"]["actual"] == ["CREATED_SALE", "UPDATED_INVENTORY", "VALIDATED_PAYMENT", "FINALIZED_SALE"]
    assert all(not v["passed"] for v in verdicts.values())

    human = runner.invoke(app, ["run", str(scenario)])
    assert human.exit_code == 1
    assert "wrong: FAILED" in human.stdout and human.stdout.count("failed") >= 5
    assert "FINALIZED_SALE" in human.stdout  # the events as they happened
    assert "▶ step 1/2 (line 4) submit" in human.stderr and "✗ step 2" in human.stderr


FAILING_VERDICTS = """\
name: verdicts
description: a wait that times out (payment is killed), and dead letters and invariants that do not hold
steps:
  - kill: payment
  - submit: {product_id: 1, user_id: 1, value: "20.00", quantity: 2}
    as: first
  - wait: [first]
    timeout: 2
  - publish:
      subject: saga.sale.created
      body: "not JSON"
  - expect:
      dead_letters: {inventory: 1}
    within: 20
expect:
  sales:
    first: PENDING
  dead_letters: {inventory: 0}
  invariants: true
"""


def test_a_timed_out_wait_and_failing_dead_letters_and_invariants_say_what_they_saw(tmp_path: Path) -> None:
    scenario = tmp_path / "verdicts.yaml"
    scenario.write_text(FAILING_VERDICTS)
    code, report = run_json(str(scenario))
    assert code == 1 and report["passed"] is False
    assert [step["passed"] for step in report["steps"]] == [True, True, False, True, True]
    verdicts = {v["what"]: v for v in failed(report)}
    assert set(verdicts) == {"step 3 (line 7): wait for first", "dead letters of inventory", "invariants (sagactl check)"}
    wait = verdicts["step 3 (line 7): wait for first"]
    assert (wait["expected"], wait["actual"]) == ({"FINALIZED or CANCELED": 1}, {"PENDING": 1})
    assert (verdicts["dead letters of inventory"]["expected"], verdicts["dead letters of inventory"]["actual"]) == (0, 1)
    violations = {v["check"]: v for v in verdicts["invariants (sagactl check)"]["actual"]}
    assert set(violations) == {"unreachable", "dead-letter"} and violations["unreachable"]["subject"] == "payment"
    assert "malformed JSON" in violations["dead-letter"]["detail"]


AUDIT_PARTICIPANT = """\
from sqlmodel import Field, SQLModel

from participants.contract import FINALIZED_SALE
from participants.runtime import Participant


class Audited(SQLModel, table=True):
    __tablename__ = "audited"
    id: int | None = Field(default=None, primary_key=True)
    sale_id: int = Field(unique=True)


def on_finalized(event, session):
    session.add(Audited(sale_id=event.sale_id))


participant = Participant("audit", tables=[Audited], handlers={FINALIZED_SALE: on_finalized})
"""

LIVE_STEPS = """\
name: live-steps
description: kill, restart, replicas, expect within, and a participant added to the running system
participants:
  inventory: {replicas: 2}
steps:
  - kill: payment
  - kill: inventory
    replica: 1
  - submit: {product_id: 1, user_id: 1, value: "20.00", quantity: 2}
    as: first
  - expect:
      sales: {first: PENDING}
      events: {first: [CREATED_SALE, UPDATED_INVENTORY]}
    within: 20
  - restart: payment
  - wait: [first]
    status: FINALIZED
    timeout: 30
  - start: scenario_audit:participant
  - submit: {product_id: 1, user_id: 1, value: "10.00", quantity: 1}
    as: second
  - wait: [second]
    timeout: 30
  - expect:
      tables: {audit.audited: [{sale_id: 1}, {sale_id: 2}]}
    within: 20
expect:
  sales: {first: FINALIZED, second: FINALIZED}
  tables:
    inventory.inventories: [{product_id: 1, quantity: 7}]
"""


def test_steps_on_a_live_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scenario_audit.py").write_text(AUDIT_PARTICIPANT)
    monkeypatch.syspath_prepend(str(tmp_path))  # the loader imports it to learn its name
    monkeypatch.chdir(tmp_path)  # participant processes import from their working directory
    (tmp_path / "live.yaml").write_text(LIVE_STEPS)
    # `run` makes its private state dir with tempfile: here, so the finally below finds and stops
    # the kept system even when `run` fails before its report names the dir.
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    try:
        code, report = run_json("live.yaml", "--keep")
        assert code == 0, (report["steps"], failed(report))
        assert [s["summary"].split()[0] for s in report["steps"]] == [
            "kill", "kill", "submit", "check", "restart", "wait", "start", "submit", "wait", "check"]
        assert set(report["after"]) == {"sale", "inventory", "payment", "audit"}
        running = {(p.name, p.replica): p.running for p in Supervisor(StateDir.at(report["state_dir"])).processes()}
        assert running == {("sale", 1): True, ("inventory", 1): False, ("inventory", 2): True,
                           ("payment", 1): True, ("audit", 1): True}
        assert Path(report["state_dir"]).parent == runs
    finally:
        for kept in runs.iterdir():
            Supervisor(StateDir.at(kept)).down(purge=True)


# How `run` prints an event as it happens (sagactl/views/events.py): its time, then its sale.
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} sale \d+ ", re.MULTILINE)


def test_run_shows_steps_events_tables_and_verdicts() -> None:
    result = runner.invoke(app, ["run", "unknown"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert len(EVENT_LINE.findall(result.stdout)) == 8  # the two sales' 3 + 5 events, as they happened
    assert "▶ step 3/3 (line 13) wait for all sales to be CANCELED" in result.stderr
    assert "✓ step 3" in result.stderr
    out = result.stdout
    assert out.index("scenario unknown") < out.index("ROLLBACK_INVENTORY") < out.index("before") < out.index("after")
    assert "unknown: passed" in out and "failed" not in out


def test_run_no_events_prints_the_verdicts_without_the_events() -> None:
    result = runner.invoke(app, ["run", "unknown", "--no-events"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "unknown: passed" in result.stdout and "✓ step 3" in result.stderr
    assert EVENT_LINE.findall(result.stdout) == []
