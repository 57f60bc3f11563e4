"""`sagactl trace`: one saga rebuilt from the stream and the participants' logs."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from commands import sagactl
from observing import submit, wide
from polling import wait_for

from participants.runtime import broker
from sagactl.system.processes import pid_alive
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

pytestmark = pytest.mark.sqlite_only  # CLI and views: what they show does not depend on the database


def trace_json(supervisor: Supervisor, sale_id: int) -> dict[str, Any]:
    result = sagactl(supervisor, "trace", str(sale_id), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def sagas(module_system: Supervisor) -> Supervisor:
    """Three ended sagas on a system shared by the tests that only trace them: sale 1 finalized
    (seq 1-4), sale 2 refused by payment (seq 5-9), sale 3 out of stock (seq 10-12)."""
    assert submit(module_system, 1, 1, "20.00", 2)["status"] == "FINALIZED"
    assert submit(module_system, 1, 1, "500.00", 1)["status"] == "CANCELED"
    assert submit(module_system, 1, 1, "69.99", 11)["reason"] == "out of stock"
    return module_system


def test_success_saga_in_order_with_timings_and_handlers(sagas: Supervisor) -> None:
    saga = trace_json(sagas, 1)
    assert (saga["sale_id"], saga["status"], saga["reason"], saga["expected_next"]) == (1, "FINALIZED", None, None)
    assert saga["sale"] == {"product_id": 1, "user_id": 1, "value": "20.00", "quantity": 2}
    events = saga["events"]
    assert [(e["seq"], e["type"], e["producer"], e["kind"]) for e in events] == [
        (1, "CREATED_SALE", "sale", "success"), (2, "UPDATED_INVENTORY", "inventory", "success"),
        (3, "VALIDATED_PAYMENT", "payment", "success"), (4, "FINALIZED_SALE", "sale", "terminal")]
    assert events[0]["since_previous_ms"] is None and all(e["since_previous_ms"] >= 0 for e in events[1:])
    since_submit = [e["since_submit_ms"] for e in events]
    assert since_submit == sorted(since_submit) and since_submit[0] >= 0
    assert [[h["participant"] for h in e["handled_by"]] for e in events] == [["inventory"], ["payment"], ["sale"], []]
    assert all(e["redeliveries"] == 0 and e["copy_of"] is None for e in events)
    assert events[0]["data"]["event_id"] and events[0]["data"]["sale_id"] == 1


def test_refused_payment_marks_the_compensation(sagas: Supervisor) -> None:
    saga = trace_json(sagas, 2)
    assert (saga["status"], saga["reason"]) == ("CANCELED", "insufficient balance")
    assert [(e["type"], e["kind"]) for e in saga["events"]] == [
        ("CREATED_SALE", "success"), ("UPDATED_INVENTORY", "success"), ("FAILED_PAYMENT", "failure"),
        ("ROLLBACK_INVENTORY", "compensation"), ("CANCELED_SALE", "terminal")]
    table = wide(sagas, "trace", "2")
    assert table.exit_code == 0
    assert "sale 2: CANCELED (insufficient balance)" in table.stdout
    rollback = next(line for line in table.stdout.splitlines() if "ROLLBACK_INVENTORY" in line)
    assert "compensation" in rollback and "inventory" in rollback


def test_mermaid_diagram_of_the_actual_events(sagas: Supervisor) -> None:
    result = sagactl(sagas, "trace", "3", "--mermaid")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "sequenceDiagram"
    arrows = [line.strip().split(":")[0] for line in lines if "-)" in line or "->>" in line]
    assert arrows == ["sagactl->>sale", "sale-)inventory", "inventory-)sale", "sale-)sagactl"]
    assert "ROLLBACK_INVENTORY (seq 11" in result.stdout and "out of stock" in result.stdout
    assert lines[-1].strip() == "Note over sagactl,inventory: sale 3 CANCELED: out of stock"


def test_svg_picture(sagas: Supervisor, tmp_path: Path) -> None:
    picture = tmp_path / "docs" / "trace.svg"
    result = sagactl(sagas, "trace", "1", "--svg", str(picture))
    assert result.exit_code == 0, result.output
    svg = html.unescape(picture.read_text()).replace("\xa0", " ")
    assert svg.startswith("<svg") and "CREATED_SALE" in svg and "sagactl trace 1" in svg


def test_unknown_sale_and_bad_arguments(sagas: Supervisor) -> None:
    unknown = sagactl(sagas, "trace", "42")
    assert unknown.exit_code == 1
    assert "sale 42" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    for args in (["x"], ["0"], ["1", "--json", "--mermaid"]):
        bad = sagactl(sagas, "trace", *args)
        assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.output


def test_a_stuck_saga_names_the_step_and_participant_it_waits_for(system: Supervisor) -> None:
    system.stop_participant("payment")
    result = sagactl(system, "submit", "--product-id", "1", "--user-id", "1", "--value", "20.00", "--quantity", "2",
                     "--wait", "--timeout", "1")
    assert result.exit_code == 4 and result.stderr.strip().splitlines() == [
        "sagactl: error: sale 1 still PENDING after 1s"], result.output  # the wait's timeout
    waiting = wait_for(lambda: (s := trace_json(system, 1))["events"][-1]["type"] == "UPDATED_INVENTORY" and s,
                       what="inventory's event")
    assert waiting["status"] == "PENDING"
    assert waiting["expected_next"] == {"types": ["VALIDATED_PAYMENT", "FAILED_PAYMENT"], "participant": "payment",
                                        "after": "UPDATED_INVENTORY"}
    table = wide(system, "trace", "1")
    assert "waiting for VALIDATED_PAYMENT or FAILED_PAYMENT from payment" in table.stdout
    assert sagactl(system, "up").exit_code == 0
    finished = wait_for(lambda: (s := trace_json(system, 1))["status"] == "FINALIZED" and s, what="the saga to finish")
    assert finished["expected_next"] is None


@pytest.fixture
def crashing_payment(state: StateDir) -> Iterator[Supervisor]:
    """A system whose payment dies after its first commit, before publishing or acking."""
    supervisor = Supervisor(state)
    fast = {"SAGACTL_ACK_WAIT": "1"}
    try:
        supervisor.up(None, extra_env={"payment": {**fast, "SAGACTL_CRASH_POINT": "after_commit"}})
        yield supervisor
    finally:
        supervisor.down(kill=True)


def test_redelivery_and_duplicate_copy_are_shown(crashing_payment: Supervisor) -> None:
    system = crashing_payment
    sagactl(system, "submit", "--product-id", "1", "--user-id", "1", "--value", "20.00", "--quantity", "2")
    payment_pid = next(p.pid for p in system.processes() if p.name == "payment")
    wait_for(lambda: not pid_alive(payment_pid), what="payment to crash")
    # It died where it was told to: its payment committed (logged as handled), nothing published.
    crashed = trace_json(system, 1)
    assert [e["type"] for e in crashed["events"]] == ["CREATED_SALE", "UPDATED_INVENTORY"]
    assert [h["participant"] for h in crashed["events"][1]["handled_by"]] == ["payment"]
    system.up(None, extra_env={"payment": {"SAGACTL_ACK_WAIT": "1"}})
    saga = wait_for(lambda: (s := trace_json(system, 1))["status"] == "FINALIZED" and s, what="the saga to finish")
    updated = saga["events"][1]
    assert updated["type"] == "UPDATED_INVENTORY"
    # Handled, crashed before the ack, redelivered after the restart, and turned away by the inbox.
    wait_for(lambda: trace_json(system, 1)["events"][1]["redeliveries"] >= 1, what="the redelivery to be logged")
    updated = trace_json(system, 1)["events"][1]
    assert {h["what"] for h in updated["handled_by"]} == {"handled", "duplicate"}

    async def republish() -> None:  # the same body under another message id: a copy, no second effect
        nc = await broker.connect(system.nats_urls(), "test", reconnect_forever=False)
        try:
            await nc.jetstream().publish(updated["subject"], orjson.dumps(updated["data"]), headers={"Nats-Msg-Id": "copy-1"})
        finally:
            await nc.close()

    asyncio.run(republish())
    copy = wait_for(lambda: (e := trace_json(system, 1)["events"])[-1]["copy_of"] and
                    any(h["what"] == "duplicate" for h in e[-1]["handled_by"]) and e[-1], what="the copy to be ignored")
    assert copy["copy_of"] == updated["seq"] and copy["type"] == "UPDATED_INVENTORY"
    table = wide(system, "trace", "1")
    assert "redelivered 1×" in table.stdout and f"copy of seq {updated['seq']}" in table.stdout
    assert trace_json(system, 1)["status"] == "FINALIZED"
