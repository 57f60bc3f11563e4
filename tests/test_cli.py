"""The CLI end to end: real nats-server, real participant processes, real SQLite files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from commands import runner, sagactl

from sagactl.cli.main import app
from sagactl.system.processes import pid_alive
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

pytestmark = pytest.mark.sqlite_only


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
def test_failed_sales_change_nothing(module_system: Supervisor, product: int, user: int, value: str, quantity: int,
                                     reason: str) -> None:
    # One system for the four: each failed sale leaves the seed as it was, whatever ran before it.
    code, outcome = submit(module_system, product, user, value, quantity)
    assert code == 1
    assert outcome == {"sale_id": outcome["sale_id"], "status": "CANCELED", "reason": reason}
    state = tables(module_system)
    [sale] = [s for s in state["sale"]["sales"] if s["id"] == outcome["sale_id"]]
    assert (sale["status"], sale["reason"]) == ("CANCELED", reason)
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
def test_bad_submit_is_a_one_line_usage_error(module_system: Supervisor, args: list[str], message: str) -> None:
    before = tables(module_system)["sale"]["sales"]
    result = sagactl(module_system, "submit", "--product-id", "1", "--user-id", "1", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tables(module_system)["sale"]["sales"] == before  # no sale was opened


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
    assert stopped.exit_code == 3  # nothing answers: unreachable


def test_status_and_state_tables_for_people(module_system: Supervisor) -> None:
    wide = {"COLUMNS": "200"}
    status = sagactl(module_system, "status", env=wide)
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    for name in ("sale", "inventory", "payment"):
        [row] = [line for line in lines if f"│ {name} " in line and "running" in line]
        assert f"{name}.log" in row
    assert any(line.startswith("stream SAGA: ") and "dead letters: 0" in line for line in lines)
    consumers = [line.split("│")[1].strip() for line in lines[lines.index("consumers"):] if line.count("│") == 5]
    assert sorted(consumers) == ["inventory", "payment", "sale"]
    tables = sagactl(module_system, "state", env=wide)
    assert tables.exit_code == 0, tables.output
    titles = [line.strip() for line in tables.stdout.splitlines() if " · " in line]
    assert titles == ["sale · sales", "inventory · inventories", "inventory · reservations", "payment · users", "payment · payments"]
    assert any("userTest" in line and "100.00" in line for line in tables.stdout.splitlines())


def test_up_with_replicas_then_down_purge_deletes_databases_and_store(state: StateDir) -> None:
    try:
        up = sagactl(state, "up", "--replicas", "inventory=2")
        assert up.exit_code == 0, up.output
        assert "inventory, inventory-2" in up.stderr
        report = json.loads(sagactl(state, "status", "--json").stdout)
        assert sorted((p["name"], p["replica"]) for p in report["participants"] if p["running"]) == [
            ("inventory", 1), ("inventory", 2), ("payment", 1), ("sale", 1)]
        sold = sagactl(state, "submit", "--product-id", "1", "--user-id", "1", "--value", "1.00", "--quantity", "1", "--wait")
        assert sold.exit_code == 0, sold.output
        assert state.db_files() and state.store_dir.exists()
        pids = [p["pid"] for p in report["participants"]]
    finally:
        down = sagactl(state, "down", "--purge")
    assert down.exit_code == 0, down.output
    assert not any(pid_alive(pid) for pid in pids)
    assert state.db_files() == [] and not state.store_dir.exists()
    assert json.loads(sagactl(state, "status", "--json").stdout)["participants"] == []


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
