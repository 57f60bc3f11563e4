"""`sagactl logs` and the live views (`state --watch`, `status --watch`)."""

from __future__ import annotations

import json

import pytest
from commands import sagactl
from observing import Background, submit, watch_a_sale, wide
from polling import wait_for
from rich.console import Console

from sagactl.errors import Unavailable
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor
from sagactl.views.live import HIGHLIGHT, highlight_changes

pytestmark = pytest.mark.sqlite_only  # CLI and views: what they show does not depend on the database


def test_logs_are_readable_and_raw_with_json(system: Supervisor) -> None:
    assert submit(system, 1, 1, "500.00", 1)["status"] == "CANCELED"

    def handled_lines() -> list[str]:  # inventory also sees the CANCELED_SALE (nothing left to give back)
        readable = wide(system, "logs", "inventory")
        assert readable.exit_code == 0, readable.output
        lines = [line for line in readable.stdout.splitlines() if " handled " in line]
        return lines if len(lines) == 3 else []

    handled = wait_for(handled_lines, what="inventory to log three handled events")
    assert "CREATED_SALE sale 1 → UPDATED_INVENTORY" in handled[0] and " ms" in handled[0]
    assert "FAILED_PAYMENT sale 1 → ROLLBACK_INVENTORY (insufficient balance)" in handled[1]
    assert "CANCELED_SALE sale 1" in handled[2] and "→" not in handled[2]
    raw = sagactl(system, "logs", "inventory", "--json")
    records = [json.loads(line) for line in raw.stdout.splitlines()]
    assert records[0]["what"] == "seeded" and any(r["what"] == "ready" for r in records)
    event = next(r for r in records if r["what"] == "handled")
    assert {"event_id", "sale_id", "type", "emitted", "deliveries", "ms"} <= set(event)
    last = sagactl(system, "logs", "inventory", "--json", "-n", "1")
    assert [json.loads(line)["type"] for line in last.stdout.splitlines()] == ["CANCELED_SALE"]


def test_logs_of_an_unknown_participant_is_a_usage_error(module_system: Supervisor) -> None:
    result = sagactl(module_system, "logs", "shipping")
    assert result.exit_code == 2
    assert "unknown participant 'shipping'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_logs_follow_prints_new_lines_until_ctrl_c(system: Supervisor) -> None:
    watch_a_sale(system, "logs", "payment", "--follow", "--json",
                 ready=lambda p: any('"ready"' in line for line in p.stdout),
                 shown=lambda p: any('"VALIDATED_PAYMENT"' in line for line in p.stdout))


def test_up_prints_the_last_log_lines_of_a_participant_that_fails_to_start(state: StateDir) -> None:
    supervisor = Supervisor(state)
    try:
        with pytest.raises(Unavailable) as failure:
            supervisor.up(None, participants={"broken": "participants.nowhere:participant"})
        assert "participant broken exited" in str(failure.value) and "participants.nowhere" in str(failure.value)
    finally:
        supervisor.down()


def test_highlight_marks_changed_and_new_lines_only() -> None:
    frame = [line.plain for line in highlight_changes([], ["a", "b", "c"])]
    assert frame == ["a", "b", "c"]
    lines = highlight_changes(["│ 1 │ PENDING │", "│ 2 │ FINALIZED │", "└───┘"],
                              ["│ 1 │ FINALIZED │", "│ 2 │ FINALIZED │", "│ 3 │ PENDING │", "└───┘"])
    marked = [line.plain for line in lines if any(str(span.style) == HIGHLIGHT for span in line.spans)]
    assert marked == ["│ 1 │ FINALIZED │", "│ 3 │ PENDING │"]
    console = Console(record=True, force_terminal=True, width=40)
    console.print(*lines)
    assert "│ 2 │ FINALIZED │" in console.export_text()


def test_state_watch_reports_each_change(system: Supervisor) -> None:
    watch = Background(system, "state", "--watch", "--json", "--interval", "0.2")
    try:
        first = wait_for(lambda: watch.json_lines(), what="the first frame")[0]
        assert first["sale"]["sales"] == [] and first["inventory"]["inventories"][0]["quantity"] == 10
        assert submit(system, 1, 1, "20.00", 2)["status"] == "FINALIZED"
        last = wait_for(lambda: (f := watch.json_lines()[-1])["sale"]["sales"] and
                        f["sale"]["sales"][0]["status"] == "FINALIZED" and f, what="the finalized sale")
        assert last["inventory"]["inventories"][0]["quantity"] == 8
        assert watch.interrupt() == 0
    finally:
        watch.stop()
    frames = watch.json_lines()
    assert all(a != b for a, b in zip(frames, frames[1:]))  # a line only when something changed


def test_state_watch_redraws_frames_when_not_a_terminal(system: Supervisor) -> None:
    watch = watch_a_sale(system, "state", "--watch", "--interval", "0.2",
                         ready=lambda p: any("inventory · inventories" in line for line in p.stdout),
                         shown=lambda p: any("FINALIZED" in line for line in p.stdout))
    assert sum("inventory · inventories" in line for line in watch.stdout) >= 2


def test_status_watch_follows_processes(system: Supervisor) -> None:
    watch = Background(system, "status", "--watch", "--json", "--interval", "0.2")
    try:
        first = wait_for(lambda: watch.json_lines(), what="the first report")[0]
        assert all(p["running"] for p in first["participants"]) and first["stream"]["name"] == "SAGA"
        system.stop_participant("payment")
        assert first["healthy"], first["participants"]
        # Stopping, it says it no longer consumes (unhealthy while still running); then it is gone.
        stopped = wait_for(lambda: [f for f in watch.json_lines() if any(not p["running"] for p in f["participants"])],
                           what="payment stopped")[0]
        assert not stopped["healthy"] and [p["name"] for p in stopped["participants"] if not p["running"]] == ["payment"]
        assert all(p["healthy"] for f in watch.json_lines() for p in f["participants"] if p["name"] != "payment")
        assert watch.interrupt() == 0
    finally:
        watch.stop()


def test_watch_needs_a_positive_interval(module_system: Supervisor) -> None:
    result = sagactl(module_system, "state", "--watch", "--interval", "0")
    assert result.exit_code == 2 and "--interval" in result.stderr
