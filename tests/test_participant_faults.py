"""One participant (inventory) against a real nats-server: the test plays the other services.

Each fault is injected for real: a SIGKILL at a named crash point, a copy published under a new
message id, poison bodies, a database locked by the test, a malformed setting.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from participants.contract import (
    CREATED_SALE,
    FAILED_PAYMENT,
    UPDATED_INVENTORY,
    Event,
    new_event,
    parse_sale,
)
from participants.runtime.loader import BUILT_IN
from sagactl.client import SagaClient
from sagactl.errors import Unavailable
from sagactl.streams.deadletters import list_dead_letters
from sagactl.streams.histories import read_histories
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor
from sagactl.testing import AFTER_PUBLISH, RunningParticipant, SagaHarness
from tests.driving import eventually, wait_dead


def created(sale_id: int, quantity: int = 2, product_id: int = 1) -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(product_id, 1, "20.00", quantity), "sale")


async def client_for(nats_url: str) -> SagaClient:
    return await SagaClient.connect([nats_url], name="participant-test", reconnect_forever=True)


async def publish(client: SagaClient, subject: str, data: bytes, msg_id: str | None = None) -> Any:
    return await client.nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)


async def stock(client: SagaClient) -> int:
    tables = (await client.request("inventory", "state", {}))["tables"]
    return {row["product_id"]: row["quantity"] for row in tables["inventories"]}[1]


async def types_of(client: SagaClient, sale_id: int) -> list[str]:
    histories, _ = await read_histories(client.nc.jetstream())
    return [step.type for step in histories[sale_id].steps] if sale_id in histories else []


def logged(running: RunningParticipant, what: str, **match: Any) -> list[dict[str, Any]]:
    """Its log records of every run so far (a restart appends to the same file)."""
    lines = [orjson.loads(line) for line in running.log_file.read_bytes().splitlines() if line.startswith(b"{")]
    return [line for line in lines if line["what"] == what and all(line.get(k) == v for k, v in match.items())]


async def test_event_redelivered_after_a_kill_before_the_ack_is_applied_once(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory", crash_point=AFTER_PUBLISH, env={"SAGACTL_ACK_WAIT": "1"})
    client = await client_for(saga_harness.nats_url)
    try:
        event = created(1)
        await publish(client, event.subject, event.to_bytes(), event.event_id)
        # Killed after publishing UPDATED_INVENTORY, before marking it sent and before the ack.
        await wait_dead(inventory.pid, "inventory to be killed at after_publish")
        await asyncio.to_thread(inventory.restart)

        async def redelivered() -> list[dict[str, Any]]:
            return logged(inventory, "duplicate", event_id=event.event_id)

        duplicate = (await eventually(redelivered, "the redelivered event to be recognised as a duplicate"))[0]
        assert duplicate["deliveries"] == 2
        assert await types_of(client, 1) == [CREATED_SALE, UPDATED_INVENTORY]  # the republished copy was deduplicated
        assert await stock(client) == 8
    finally:
        await client.close()


async def test_poison_events_are_dead_lettered_without_blocking_the_events_behind(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory", env={"SAGACTL_MAX_DELIVER": "4"})
    client = await client_for(saga_harness.nats_url)
    try:
        unknown_type = {**created(2).model_dump(mode="json"), "type": "SHIPPED"}
        # A refused payment for a sale inventory never reserved: nothing to credit back, refused at
        # its first delivery (no retry can change the answer), never applied.
        failing = new_event(FAILED_PAYMENT, 3, parse_sale(77, 1, "5.00", 1), "payment", reason="insufficient balance")
        good = created(4, quantity=1)
        await publish(client, "saga.sale.created", b'{"type": "CREATED_SALE", "sale_id": ')
        await publish(client, "saga.sale.created", __import__("orjson").dumps(unknown_type))
        await publish(client, failing.subject, failing.to_bytes(), failing.event_id)
        await publish(client, good.subject, good.to_bytes(), good.event_id)
        js = client.nc.jetstream()

        async def three_letters() -> list[Any]:
            letters = await list_dead_letters(js)
            return letters if len(letters) == 3 else []

        letters = await eventually(three_letters, "three dead letters")
        assert [letter.participant for letter in letters] == ["inventory"] * 3
        assert "malformed JSON" in letters[0].error and letters[0].deliveries == 1
        assert "unknown event type 'SHIPPED'" in letters[1].error and letters[1].deliveries == 1
        assert "never saw CREATED_SALE for sale 3" in letters[2].error and letters[2].deliveries == 1
        assert letters[2].subject == failing.subject and letters[2].data == failing.to_bytes()
        # The good event behind them was handled all the same (the refused one is parked at its
        # first delivery, so which of the two is logged first depends only on how they were batched).
        # The dead letters are stored before the participant logs them: wait for both lines.
        async def handled_and_parked() -> bool:
            return bool(logged(inventory, "handled", event_id=good.event_id)
                        and logged(inventory, "dead_letter", stream_seq=letters[2].stream_seq))

        await eventually(handled_and_parked, "the good event handled and the refused one parked")
        assert len(logged(inventory, "failed", event_id=failing.event_id)) == 1
        assert inventory.running and await stock(client) == 9
    finally:
        await client.close()


async def test_a_locked_database_is_retried_with_backoff_until_it_is_released(saga_harness: SagaHarness) -> None:
    # A short busy timeout and max_deliver 2: the lock outlasts both, yet nothing is dead-lettered.
    inventory = saga_harness.start("inventory", env={"SAGACTL_SQLITE_BUSY_TIMEOUT": "0.1", "SAGACTL_MAX_DELIVER": "2"})
    client = await client_for(saga_harness.nats_url)
    lock = sqlite3.connect(saga_harness.supervisor.state.root / "inventory.db", isolation_level=None)
    # What inventory tells JetStream about each failed delivery: a NAK with the delay it asks for.
    naks: list[int] = []

    async def on_settle(msg: Any) -> None:
        if msg.data.startswith(b"-NAK"):
            naks.append(orjson.loads(msg.data[len(b"-NAK "):])["delay"])

    await client.nc.subscribe("$JS.ACK.SAGA.inventory.>", cb=on_settle)
    try:
        lock.execute("BEGIN IMMEDIATE")
        event = created(1)
        await publish(client, event.subject, event.to_bytes(), event.event_id)

        async def retried() -> list[dict[str, Any]]:
            failures = logged(inventory, "failed", event_id=event.event_id)
            return failures if len(failures) >= 4 else []

        failures = await eventually(retried, "four failed deliveries while the database is locked")
        assert [f["deliveries"] for f in failures[:4]] == [1, 2, 3, 4]
        assert all("database is locked" in f["error"] for f in failures)
        async def four_naks() -> list[int]:
            return naks[:4] if len(naks) >= 4 else []

        # Backoff: each NAK asks JetStream to wait twice as long before the next delivery.
        assert await eventually(four_naks, "four NAKs") == [200_000_000, 400_000_000, 800_000_000, 1_600_000_000]
        assert lock.execute("SELECT quantity FROM inventories WHERE product_id = 1").fetchone() == (10,)
        assert await list_dead_letters(client.nc.jetstream()) == []
        lock.execute("ROLLBACK")

        async def applied() -> bool:
            return await stock(client) == 8

        await eventually(applied, "the event to be applied after the lock is released")
        assert logged(inventory, "handled", event_id=event.event_id)[0]["deliveries"] >= 5
        assert await list_dead_letters(client.nc.jetstream()) == []
        assert await types_of(client, 1) == [CREATED_SALE, UPDATED_INVENTORY]
    finally:
        lock.close()
        await client.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGACTL_MAX_DELIVER": "abc"}, "SAGACTL_MAX_DELIVER must be an integer, not 'abc'"),
        ({"SAGACTL_ACK_WAIT": "-1"}, "SAGACTL_ACK_WAIT must be >= 0.1"),
        ({"SAGACTL_CRASH_POINT": "before_lunch"}, "unknown crash point 'before_lunch'"),
        ({"SAGACTL_CRASH_POINT": "after_commit:x"}, "must be an integer >= 1"),
        ({"SAGACTL_SQLITE_SYNCHRONOUS": "sometimes"}, "SAGACTL_SQLITE_SYNCHRONOUS must be one of"),
        ({"SAGACTL_DB_URL_INVENTORY": "no-such-scheme"}, "configuration error"),
    ],
)
def test_a_bad_setting_stops_the_participant_with_a_clear_line_and_no_database(
    nats_url: str, state: StateDir, env: dict[str, str], message: str
) -> None:
    supervisor = Supervisor(state)
    try:
        with pytest.raises(Unavailable) as failure:
            supervisor.up(nats_url, participants={"inventory": BUILT_IN["inventory"]}, extra_env={"inventory": env})
    finally:
        supervisor.down()
    assert "participant inventory exited" in str(failure.value)
    assert message in str(failure.value) and "Traceback" not in str(failure.value)
    assert not (Path(state.root) / "inventory.db").exists()


def test_sagactl_up_with_a_bad_setting_says_which_and_changes_no_database(state: StateDir) -> None:
    from typer.testing import CliRunner

    from sagactl.cli.main import app

    try:
        result = CliRunner().invoke(app, ["up", "--state-dir", str(state.root)], env={"SAGACTL_SQLITE_BUSY_TIMEOUT": "soon"})
        assert result.exit_code == 3
        assert "SAGACTL_SQLITE_BUSY_TIMEOUT must be a number, not 'soon'" in result.stderr
        assert "Traceback" not in result.output
        assert state.db_files() == []
    finally:
        Supervisor(state).down()
