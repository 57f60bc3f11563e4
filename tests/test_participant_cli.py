"""Adding your own participant: `up --with`, `participant run|list`, and `state` discovering it."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from commands import sagactl
from observing import Background
from polling import wait_for

import examples.shipping
from participants.contract import FINALIZED_SALE
from sagactl.system.supervisor import Supervisor
from sagactl.testing import SagaHarness

pytestmark = pytest.mark.sqlite_only  # CLI and views: what they show does not depend on the database

SHIPPING = "examples.shipping:participant"
# A shipping participant that, joining late, skips the sales finalized before it joined.
latecomer = dataclasses.replace(examples.shipping.participant, name="latecomer", replay_history=False)


def sell(supervisor: Supervisor, quantity: int = 1) -> int:
    result = sagactl(supervisor, "submit", "--product-id", "1", "--user-id", "1", "--value", "1.00",
                     "--quantity", str(quantity), "--wait", "--json")
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["sale_id"])


def state(supervisor: Supervisor) -> dict[str, Any]:
    result = sagactl(supervisor, "state", "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_up_with_adds_a_participant_to_a_live_system(system: Supervisor) -> None:
    first = sell(system)
    pids = {p.name: p.pid for p in system.processes()}
    result = sagactl(system, "up", "--with", SHIPPING)
    assert result.exit_code == 0, result.output
    assert "shipping" in result.stderr
    second = sell(system)
    tables = state(system)
    assert list(tables) == ["sale", "inventory", "payment", "shipping"]
    assert [s["sale_id"] for s in tables["shipping"]["shipments"]] == [first, second]
    assert tables["inventory"]["inventories"][0]["quantity"] == 8
    after = {p.name: p.pid for p in system.processes()}
    assert {k: after[k] for k in pids} == pids  # the three were not restarted
    status = json.loads(sagactl(system, "status", "--json").stdout)
    assert {p["name"] for p in status["participants"] if p["running"]} == {"sale", "inventory", "payment", "shipping"}
    assert "shipping" in {c["name"] for c in status["consumers"]}


def test_state_shows_a_participant_that_is_down_as_not_answering(system: Supervisor) -> None:
    assert sagactl(system, "up", "--with", SHIPPING).exit_code == 0
    system.stop_participant("shipping")
    result = sagactl(system, "state", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["shipping"] is None


def test_up_with_a_bad_reference_is_a_usage_error(module_system: Supervisor) -> None:
    for reference, message in (("nosuch.module:participant", "cannot import"), ("examples.shipping", "MODULE:OBJECT"),
                               ("examples.shipping:Shipment", "not a participants.runtime.Participant")):
        result = sagactl(module_system, "up", "--with", reference)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_participant_run_joins_in_the_foreground_and_is_discovered(system: Supervisor) -> None:
    sagactl_script = str(Path(sys.executable).parent / "sagactl")
    foreground = Background(system, "participant", "run", SHIPPING, "--replica", "2")
    process = foreground.process
    try:
        wait_for(lambda: any('"what":"ready"' in line for line in foreground.stderr) or process.poll() is not None,
                 what="the participant to be ready")
        assert process.poll() is None, "\n".join(foreground.stderr)
        listed = sagactl(system, "participant", "list", "--json")
        assert listed.exit_code == 0, listed.output
        found = {p["participant"]: p for p in json.loads(listed.stdout)}
        assert set(found) == {"sale", "inventory", "payment", "shipping"}
        assert found["shipping"]["pid"] == process.pid and found["shipping"]["handles"] == [FINALIZED_SALE]
        assert found["shipping"]["replica"] == 2  # --replica: it says which process of shipping it is
        sale_id = sell(system)
        assert [s["sale_id"] for s in state(system)["shipping"]["shipments"]] == [sale_id]
        # A separate process that never imported examples.shipping, and whose state dir does not
        # know it either: tail learns SHIPMENT_CREATED from discovery.
        tail = subprocess.run([sagactl_script, "tail", "--all", "--no-follow", "--type", "SHIPMENT_CREATED", "--json",
                               "--state-dir", str(system.state.root)], capture_output=True, text=True, timeout=60)
        assert tail.returncode == 0, tail.stderr
        assert [json.loads(line)["data"]["sale_id"] for line in tail.stdout.splitlines()] == [sale_id]
        assert foreground.interrupt(sig=signal.SIGTERM) == 0  # a clean stop on SIGTERM
    finally:
        foreground.stop()  # killed if it is still running: nothing outlives the test


def test_replay_history_false_skips_what_happened_before_joining(saga_harness: SagaHarness) -> None:
    saga_harness.publish(saga_harness.event(FINALIZED_SALE, sale_id=1))
    late = saga_harness.start(f"{__name__}:latecomer")
    saga_harness.publish(saga_harness.event(FINALIZED_SALE, sale_id=2))
    saga_harness.wait_for("SHIPMENT_CREATED", sale_id=2)
    assert [row["sale_id"] for row in late.rows("shipments")] == [2]


def test_discovery_teaches_a_process_the_event_types_it_never_imported(module_system: Supervisor) -> None:
    # Shares a system with the refused references: adding shipping changes nothing they look at.
    assert sagactl(module_system, "up", "--with", SHIPPING).exit_code == 0
    url = module_system.nats_urls()[0]
    script = (
        "import asyncio\n"
        "from participants.contract import SUBJECTS\n"
        "from sagactl.client import SagaClient\n"
        "async def main():\n"
        f"    client = await SagaClient.connect([{url!r}])\n"
        "    before = SUBJECTS.get('SHIPMENT_CREATED')\n"
        "    await client.participants()\n"
        "    await client.close()\n"
        "    print(before, SUBJECTS.get('SHIPMENT_CREATED'))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.stdout.split() == ["None", "saga.shipping.created"], result.stderr
