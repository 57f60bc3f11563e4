"""Poison events end to end: dead-lettered, shown by status and check, listed, replayed, purged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from backends import PostgresBackend, SqliteBackend, refuse_inserts
from commands import sagactl

from participants.contract import FAILED_PAYMENT, new_event, parse_sale
from sagactl.streams.deadletters import list_dead_letters
from sagactl.system.supervisor import Supervisor
from tests.driving import checked, connect, eventually, pid_of, quiesce, record, settle

async def cli(supervisor: Supervisor, *args: str) -> Any:
    """The CLI from an async test: its commands run their own event loop, so in a thread."""
    return await asyncio.to_thread(sagactl, supervisor, *args)


async def test_poison_is_listed_by_status_and_check_and_purged(fast_system: Supervisor) -> None:
    pids = {name: pid_of(fast_system, name) for name in ("sale", "inventory", "payment")}
    client = await connect(fast_system)
    try:
        js = client.nc.jetstream()
        await js.publish("saga.sale.created", b"not json at all")
        await js.publish("saga.payment.validated", orjson.dumps({"type": "NO_SUCH_TYPE", "sale_id": 1}))
        good = await client.submit(parse_sale(1, 1, "20.00", 2))
        rows = await settle(client, [good])
        assert rows[good]["status"] == "FINALIZED"
        # A well-formed answer that contradicts the sale service's row: refused at its first delivery.
        ghost = new_event(FAILED_PAYMENT, good, parse_sale(1, 1, "1.00", 1), "payment").follow("ROLLBACK_INVENTORY", "inventory", reason="unknown user")
        await js.publish(ghost.subject, ghost.to_bytes(), headers={"Nats-Msg-Id": ghost.event_id})

        async def three() -> list[Any]:
            letters = await list_dead_letters(js)
            return letters if len(letters) == 3 else []

        await eventually(three, "three dead letters")
        await quiesce(client)
    finally:
        await client.close()
    assert {name: pid_of(fast_system, name) for name in pids} == pids  # no daemon crashed

    status = json.loads((await cli(fast_system, "status", "--json")).stdout)
    assert status["dead_letters"] == 3
    listed = await cli(fast_system, "deadletters", "list", "--json")
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)
    by_subject = {x["subject"]: x for x in letters}
    assert {(x["participant"], x["subject"], x["deliveries"]) for x in letters} == {
        ("inventory", "saga.sale.created", 1), ("sale", "saga.payment.validated", 1), ("sale", "saga.inventory.rolledback", 1)}
    assert "malformed JSON" in by_subject["saga.sale.created"]["error"]
    assert "invalid event field product_id" in by_subject["saga.payment.validated"]["error"]
    assert "the event says 1 x product 1" in by_subject["saga.inventory.rolledback"]["error"]
    table = await cli(fast_system, "deadletters", "list")
    assert table.exit_code == 0 and "3 dead letter(s)" in table.stdout and "(malformed)" in table.stdout

    check = await cli(fast_system, "check", "--json")
    assert check.exit_code == 1
    violations = json.loads(check.stdout)["violations"]
    assert [v["check"] for v in violations] == ["dead-letter"] * 3

    purged = await cli(fast_system, "deadletters", "purge", str(letters[0]["seq"]))
    assert purged.exit_code == 0 and "purged 1" in purged.stderr
    assert (await cli(fast_system, "deadletters", "purge", "--all", "--yes")).exit_code == 0
    assert json.loads((await cli(fast_system, "deadletters", "list", "--json")).stdout) == []
    final = await cli(fast_system, "check")
    assert final.exit_code == 0, final.output


Backend = SqliteBackend | PostgresBackend


async def test_a_dead_letter_replayed_after_the_fix_completes_its_saga(fast_system: Supervisor, db_backend: Backend) -> None:
    # The fault: payment's database refuses new payment rows, so its handler fails on every delivery.
    unfreeze = refuse_inserts(db_backend, fast_system.state.root, "payment", "payments", "payments are frozen")
    client = await connect(fast_system)
    try:
        sale_id = await client.submit(parse_sale(1, 1, "20.00", 2))

        async def parked() -> list[Any]:
            return await list_dead_letters(client.nc.jetstream())

        letters = await eventually(parked, "the payment to be dead-lettered")
        assert letters[0].participant == "payment" and "payments are frozen" in letters[0].error
        stuck = await cli(fast_system, "check", "--stuck-after", "0", "--json")
        assert stuck.exit_code == 1
        by_check = {v["check"]: v for v in json.loads(stuck.stdout)["violations"]}
        assert set(by_check) == {"stuck", "dead-letter"}
        assert by_check["stuck"]["subject"] == f"sale {sale_id}"
        assert "last event UPDATED_INVENTORY" in by_check["stuck"]["detail"]
        assert "next: payment should handle it" in by_check["stuck"]["detail"]
        assert "dead-lettered it" in by_check["stuck"]["detail"]
        table = await cli(fast_system, "check", "--stuck-after", "0")
        assert "stuck" in table.stdout and "dead-letter" in table.stdout and "check: failed" in table.stderr

        # Replayed by its sequence number before the fix: it fails again and is parked again, anew.
        first = letters[0].seq
        again = await cli(fast_system, "deadletters", "replay", str(first))
        assert again.exit_code == 0 and "replayed 1" in again.stderr, again.output

        async def parked_again() -> list[Any]:
            return [letter for letter in await list_dead_letters(client.nc.jetstream()) if letter.seq != first]

        [second] = await eventually(parked_again, "the replayed payment to be dead-lettered again")
        assert second.seq > first and "payments are frozen" in second.error
        assert [letter.seq for letter in await list_dead_letters(client.nc.jetstream())] == [second.seq]

        unfreeze()
        replayed = await cli(fast_system, "deadletters", "replay", "--all")
        assert replayed.exit_code == 0 and "replayed 1" in replayed.stderr, replayed.output
        rows = await settle(client, [sale_id])
        assert rows[sale_id]["status"] == "FINALIZED"
        # Both replays (the one that failed again, then the one after the fix) went to payment
        # alone: not a second UPDATED_INVENTORY for every consumer of it.
        info = await client.nc.jetstream().stream_info("SAGA", subjects_filter="saga.>")
        assert (info.state.subjects or {}).get("saga.inventory.updated") == 1
        assert (info.state.subjects or {}).get("saga.replay.payment") == 2
        await quiesce(client)
        report = await checked(client, stuck_after=0)
        record("payment handler failing until fixed, then replayed", 1, rows, report)
    finally:
        await client.close()


def test_bad_input_to_check_and_deadletters_is_one_line_and_changes_nothing(module_system: Supervisor) -> None:
    # Argument checks, on a shared SQLite system: nothing here reaches a participant's database.
    for args, message in [
        (["check", "--stuck-after", "soon"], "--stuck-after takes a number"),
        (["check", "--stuck-after", "-5"], "--stuck-after must be"),
        (["deadletters", "replay"], "or pass --all"),
        (["deadletters", "purge", "3", "--all"], "not both"),
        (["deadletters", "replay", "x1"], "is not a dead-letter sequence number"),
        (["deadletters", "purge", "42"], "no dead letter with sequence 42"),
    ]:
        result = sagactl(module_system, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sagactl(module_system, "check").exit_code == 0
