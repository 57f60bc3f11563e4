"""The CLI end to end: real nats-server, real participant processes, real SQLite files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app
from sagactl.system.processes import pid_alive
from sagactl.system.supervisor import Supervisor

runner = CliRunner()


def sagactl(supervisor: Supervisor, *args: str) -> Any:
    return runner.invoke(app, [*args, "--state-dir", str(supervisor.state.root)])


def submit(supervisor: Supervisor, product: int, user: int, value: str, quantity: int) -> tuple[int, dict[str, Any]]:
    result = sagactl(supervisor, "submit", "--product-id", str(product), "--user-id", str(user), "--value", value,
                     "--quantity", str(quantity), "--wait", "--json")
    return result.exit_code, json.loads(result.stdout)


def tables(supervisor: Supervisor) -> dict[str, Any]:
    result = sagactl(supervisor, "state", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_success_flow_end_state(system: Supervisor) -> None:
    code, outcome = submit(system, 1, 1, "20.00", 2)
    assert code == 0
    assert outcome == {"sale_id": 1, "status": "FINALIZED", "reason": None}
    assert tables(system) == {
        "sale": {"sales": [{"id": 1, "product_id": 1, "user_id": 1, "value": "20.00", "quantity": 2,
                            "status": "FINALIZED", "reason": None, "deadline_at": None}]},
        "inventory": {"inventories": [{"id": 1, "product_id": 1, "quantity": 8}],
                      "reservations": [{"sale_id": 1, "product_id": 1, "quantity": 2, "state": "RESERVED"}]},
        "payment": {"users": [{"id": 1, "name": "userTest", "balance": "80.00"}],
                    "payments": [{"id": 1, "user_id": 1, "sale_id": 1, "value": "20.00", "state": "CHARGED"}]},
    }


@pytest.mark.parametrize(
    ("product", "user", "value", "quantity", "reason"),
    [
        (1, 1, "69.99", 11, "out of stock"),
        (2, 1, "10.00", 1, "unknown product"),
        (1, 1, "500.00", 1, "insufficient balance"),
        (1, 9, "10.00", 1, "unknown user"),
    ],
)
def test_failed_sales_change_nothing(system: Supervisor, product: int, user: int, value: str, quantity: int, reason: str) -> None:
    code, outcome = submit(system, product, user, value, quantity)
    assert code == 1
    assert outcome == {"sale_id": 1, "status": "CANCELED", "reason": reason}
    state = tables(system)
    assert state["sale"]["sales"][0]["status"] == "CANCELED" and state["sale"]["sales"][0]["reason"] == reason
    assert state["inventory"]["inventories"] == [{"id": 1, "product_id": 1, "quantity": 10}]
    assert state["payment"]["users"] == [{"id": 1, "name": "userTest", "balance": "100.00"}]
    assert [p for p in state["payment"]["payments"] if p["state"] == "CHARGED"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--value", "-1", "--quantity", "1"], "negative"),
        (["--value", "abc", "--quantity", "1"], "not a decimal"),
        (["--value", "1.001", "--quantity", "1"], "two decimal places"),
        (["--value", "1.00", "--quantity", "0"], "--quantity"),
        (["--value", "1.00", "--quantity", "x"], "not an integer"),
    ],
)
def test_bad_submit_is_a_one_line_usage_error(system: Supervisor, args: list[str], message: str) -> None:
    result = sagactl(system, "submit", "--product-id", "1", "--user-id", "1", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tables(system)["sale"]["sales"] == []


def test_status_json_and_down_stops_everything(system: Supervisor) -> None:
    result = sagactl(system, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["nats_url"].startswith("nats://127.0.0.1:")
    assert sorted(p["name"] for p in report["participants"] if p["running"]) == ["inventory", "payment", "sale"]
    assert report["stream"]["name"] == "SAGA"
    assert {c["name"] for c in report["consumers"]} == {"sale", "inventory", "payment"}
    pids = [p["pid"] for p in report["participants"]] + [system.embedded_pid()]
    assert sagactl(system, "down").exit_code == 0
    assert not any(pid_alive(pid) for pid in pids)
    stopped = sagactl(system, "status", "--json")
    assert stopped.exit_code == 1


def test_up_restarts_a_dead_participant(system: Supervisor) -> None:
    before = {p.name: p.pid for p in system.processes()}
    system.stop_participant("payment", kill=True)
    assert sagactl(system, "up").exit_code == 0
    after = {p.name: p.pid for p in system.processes()}
    assert after["sale"] == before["sale"] and after["payment"] != before["payment"]
    code, outcome = submit(system, 1, 1, "1.00", 1)
    assert (code, outcome["status"]) == (0, "FINALIZED")


def test_commands_without_a_system_fail_clearly(state) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["state", "--state-dir", str(state.root)])
    assert result.exit_code == 3
    assert "sagactl up" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("scenario", ["success", "fault"])
def test_run_shipped_scenarios(scenario: str) -> None:
    result = runner.invoke(app, ["run", scenario, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["expectations"]
    statuses = {name: sale["status"] for name, sale in report["sales"].items()}
    if scenario == "success":
        assert statuses == {"first": "FINALIZED"}
    else:
        assert statuses == {"first": "FINALIZED", "out_of_stock": "CANCELED", "refused": "CANCELED"}
    assert report["after"]["inventory"]["inventories"][0]["quantity"] == 8
    assert report["after"]["payment"]["users"][0]["balance"] == "80.00"
