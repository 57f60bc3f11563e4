"""Scenario files: loading into the model, and every problem reported with its line (no NATS)."""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app
from sagactl.scenario import loader
from sagactl.scenario.model import (
    Crash,
    ExpectStep,
    KillStep,
    PublishStep,
    RestartStep,
    SaleExpectation,
    SleepStep,
    StartNatsStep,
    StopNatsStep,
    SubmitStep,
    TableRows,
    TableValues,
    WaitExitStep,
    WaitStep,
)

runner = CliRunner()

EVERY_STEP = """\
name: every-step
description: one of each
setup:
  products: {1: 5, 2: 7}
  users:
    1: 50.00
    2: {name: bob, balance: "3.50"}
participants:
  inventory: {replicas: 2, faults: {fail: 0.25, delay_ms: 5, crash: "after_commit:3"}}
steps:
  - submit: {product_id: 1, user_id: 1, value: 20.00, quantity: 2}
    as: first
  - submit: {product_id: 2, user_id: 2, value: "1.00", quantity: 1}
    repeat: 10
    concurrency: 4
    as: crowd
  - wait: [first, crowd]
    status: FINALIZED
    timeout: 30
  - wait_exit: inventory
    timeout: 5
  - kill: payment
    replica: 1
  - restart: payment
  - stop_nats
  - start_nats: {}
  - publish: {copy: first, type: CREATED_SALE}
  - publish: {subject: saga.sale.created, body: "not JSON", msg_id: poison-1}
  - sleep: 0.5
  - expect: {sales: {first: FINALIZED}}
    within: 3
expect:
  sales:
    first: {status: CANCELED, reason: out of stock}
    crowd: {FINALIZED: 3, CANCELED: 7}
    7: PENDING
  tables:
    inventory.inventories: [{product_id: 1, quantity: 3}]
    sale.sales: {where: {status: CANCELED}, values: {reason: out of stock}, count: 2}
  events:
    first: [CREATED_SALE, ROLLBACK_INVENTORY, CANCELED_SALE]
  dead_letters: {inventory: 1}
  invariants: true
"""


def test_every_step_and_expectation_loads_into_the_model() -> None:
    scenario = loader.loads(EVERY_STEP, "every.yaml")
    assert scenario.setup.products == {1: 5, 2: 7}
    assert scenario.setup.users[1].balance == Decimal("50.00") and scenario.setup.users[2].name == "bob"
    inventory = scenario.participants["inventory"]
    assert (inventory.replicas, inventory.fail_rate, inventory.delay_ms, inventory.crash) == (2, 0.25, 5.0, Crash("after_commit", 3))
    kinds = [type(s) for s in scenario.steps]
    assert kinds == [SubmitStep, SubmitStep, WaitStep, WaitExitStep, KillStep, RestartStep, StopNatsStep,
                     StartNatsStep, PublishStep, PublishStep, SleepStep, ExpectStep]
    first, crowd, wait = scenario.steps[0], scenario.steps[1], scenario.steps[2]
    assert isinstance(first, SubmitStep) and first.sale.value == Decimal("20.00") and first.line == 11
    assert isinstance(crowd, SubmitStep) and (crowd.repeat, crowd.concurrency, crowd.group) == (10, 4, True)
    assert isinstance(wait, WaitStep) and (wait.names, wait.status, wait.timeout_s) == (("first", "crowd"), "FINALIZED", 30)
    assert scenario.group_names == {"crowd"}
    copy, raw = scenario.steps[8], scenario.steps[9]
    assert isinstance(copy, PublishStep) and (copy.copy_of, copy.copy_type) == ("first", "CREATED_SALE")
    assert isinstance(raw, PublishStep) and (raw.subject, raw.body, raw.msg_id) == ("saga.sale.created", b"not JSON", "poison-1")
    expect_step = scenario.steps[11]
    assert isinstance(expect_step, ExpectStep) and expect_step.within_s == 3
    expect = scenario.expect
    assert expect.sales == {"first": SaleExpectation("CANCELED", "out of stock"),
                            "crowd": SaleExpectation(counts={"FINALIZED": 3, "CANCELED": 7}), 7: SaleExpectation("PENDING")}
    assert expect.tables["inventory.inventories"] == TableRows(({"product_id": 1, "quantity": 3},))
    assert expect.tables["sale.sales"] == TableValues({"status": "CANCELED"}, {"reason": "out of stock"}, 2)
    assert expect.events == {"first": ("CREATED_SALE", "ROLLBACK_INVENTORY", "CANCELED_SALE")}
    assert expect.dead_letters == {"inventory": 1} and expect.invariants is True


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\nsteps: [\n", 3, "not valid YAML"),
        ("name: x\ncolour: blue\nsteps: []\n", 2, "unknown key 'colour'"),
        ("name: x\n", 1, "missing key 'steps'"),
        ("steps:\n  - submit: {product_id: 1, user_id: 1, value: '1.00', quantity: many}\n", 2, "quantity"),
        ("steps:\n  - submit: {product_id: 1, user_id: 1, value: 1.001, quantity: 1}\n", 2, "two decimal places"),
        ("steps:\n  - submit: {product_id: 1, user_id: 1, value: '1.00'}\n", 2, "missing key 'quantity'"),
        ("steps:\n  - sleep: 1\n  - wait: [big_order]\n", 3, "unknown sale 'big_order'"),
        ("steps:\n  - wait: all\n    timeout: soon\n", 3, "expected a number"),
        ("steps:\n  - kill: billing\n", 2, "unknown participant 'billing'"),
        ("steps:\n  - restart: 3\n", 2, "expected a string"),
        ("steps:\n  - sleep: 1\n    wait: all\n", 2, "exactly one action"),
        ("steps:\n  - dance: yes\n", 2, "exactly one action"),
        ("steps:\n  - sleep: 1\n    as: x\n", 3, "unknown key 'as' for sleep"),
        ("steps:\n  - publish: {subject: other.thing, body: x}\n", 2, "saga stream"),
        ("steps:\n  - publish: {subject: saga.sale.created}\n", 2, "subject and body"),
        ("steps:\n  - start: nowhere.module:participant\n", 2, "cannot import nowhere.module"),
        ("participants:\n  payment:\n    faults: {fail: 1.5}\nsteps: []\n", 3, "between 0 and 1"),
        ("participants:\n  payment:\n    faults: {crash: sometime}\nsteps: []\n", 3, "POINT or POINT:N"),
        ("participants:\n  ghost: {replicas: 2}\nsteps: []\n", 2, "unknown participant 'ghost'"),
        ("setup:\n  products: {1: -1}\nsteps: []\n", 2, "integer >= 0"),
        ("steps: []\nexpect:\n  sales: {first: FINALIZED}\n", 3, "unknown sale 'first'"),
        ("steps:\n  - submit: {product_id: 1, user_id: 1, value: '1', quantity: 1}\n    as: a\nexpect:\n  sales:\n    a: DONE\n",
         6, "expected one of PENDING"),
        ("steps:\n  - submit: {product_id: 1, user_id: 1, value: '1', quantity: 1}\n    as: a\nexpect:\n  sales:\n    a: {FINALIZED: 1}\n",
         6, "for a group of sales"),
        ("steps: []\nexpect:\n  tables:\n    inventories: []\n", 4, "PARTICIPANT.TABLE"),
        ("steps: []\nexpect:\n  tables:\n    inventory.inventories: {where: {id: 1}}\n", 4, "values and/or count"),
        ("steps: []\nexpect:\n  invariants: maybe\n", 3, "true or false"),
        ("steps: []\nexpect:\n  dead_letters: {billing: 1}\n", 3, "unknown participant 'billing'"),
    ],
)
def test_each_problem_is_reported_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(loader.ScenarioInvalid) as caught:
        loader.loads(text, "bad.yaml")
    assert any(p.startswith(f"bad.yaml:{line}: ") and message in p for p in caught.value.problems), caught.value.problems


def test_every_problem_of_a_file_is_reported_in_line_order() -> None:
    text = "name: x\nsteps:\n  - kill: billing\n  - wait: [nobody]\nexpect:\n  invariants: maybe\n"
    with pytest.raises(loader.ScenarioInvalid) as caught:
        loader.loads(text, "bad.yaml")
    assert [p.split(":")[1] for p in caught.value.problems] == ["3", "4", "6"]


def test_a_step_may_only_name_what_was_defined_above_it() -> None:
    text = ("steps:\n  - wait: [later]\n  - submit: {product_id: 1, user_id: 1, value: '1', quantity: 1}\n"
            "    as: later\n  - submit: {product_id: 1, user_id: 1, value: '1', quantity: 1}\n    as: later\n")
    with pytest.raises(loader.ScenarioInvalid) as caught:
        loader.loads(text, "bad.yaml")
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == ["bad.yaml:2", "bad.yaml:6"]
    assert "already used" in caught.value.problems[1]


def test_validate_prints_each_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - kill: billing\n  - sleep: never\n")
    result = runner.invoke(app, ["scenario", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: steps[1].kill: unknown participant 'billing'" in result.stderr
    assert f"{bad}:4: steps[2].sleep: expected a number" in result.stderr
    assert "Traceback" not in result.output


def test_run_of_a_malformed_file_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nsteps:\n  - submit: {product_id: 1}\n")
    before = set(Path(tempfile.gettempdir()).glob("sagactl-broken-*"))
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: steps[1].submit: missing key 'user_id'" in result.stderr
    assert set(Path(tempfile.gettempdir()).glob("sagactl-broken-*")) == before  # no private system was made


def test_every_shipped_scenario_validates_and_is_listed_with_its_description() -> None:
    shipped = loader.shipped_scenarios()
    assert {"success", "fault", "unknown", "race", "crash", "duplicates", "nats-restart", "load"} <= set(shipped)
    result = runner.invoke(app, ["scenario", "validate", *map(str, shipped.values())])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["scenario", "list", "--json"])
    assert listed.exit_code == 0
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == set(shipped)
    assert all(len(row["description"]) > 80 for row in rows.values())


def test_unknown_scenario_name_is_a_usage_error() -> None:
    result = runner.invoke(app, ["run", "no-such-scenario"])
    assert result.exit_code == 2 and "shipped: " in result.stderr


def test_the_commented_example_of_the_format_doc_is_valid() -> None:
    readme = (Path(__file__).resolve().parent.parent / "scenarios" / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```\n", 1)[0]
    scenario = loader.loads(example, "scenarios/README.md")
    assert scenario.name == "big-order" and len(scenario.steps) == 17


def test_deadlines_and_pause_resume_steps() -> None:
    from sagactl.scenario.model import PauseStep, ResumeStep, SubmitStep

    scenario = loader.loads(
        "setup: {deadline: 60}\n"
        "steps:\n"
        "  - pause: payment\n"
        "  - submit: {product_id: 1, user_id: 1, value: 1.00, quantity: 1}\n"
        "    deadline: 1.5\n"
        "  - resume: payment\n",
        "deadlines.yaml",
    )
    pause, submit, resume = scenario.steps
    assert isinstance(pause, PauseStep) and isinstance(resume, ResumeStep) and pause.participant == "payment"
    assert isinstance(submit, SubmitStep) and submit.deadline_s == 1.5 and scenario.setup.deadline_s == 60
    with pytest.raises(loader.ScenarioInvalid, match="deadline"):
        loader.loads("steps:\n  - submit: {product_id: 1, user_id: 1, value: 1.00, quantity: 1}\n    deadline: -1\n", "bad.yaml")
    with pytest.raises(loader.ScenarioInvalid, match="pause"):
        loader.loads("steps:\n  - pause: nobody\n", "bad.yaml")
