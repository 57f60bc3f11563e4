"""`sagactl tail`: replay and follow the SAGA stream without disturbing the participants."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from commands import sagactl
from observing import Background, submit, watch_a_sale
from polling import wait_for

from participants.runtime import broker
from participants.runtime.jetstream import parse_ack_subject
from sagactl.system.supervisor import Supervisor

pytestmark = pytest.mark.sqlite_only  # CLI and views: what they show does not depend on the database


def make_history(supervisor: Supervisor) -> Supervisor:
    """A finalized sale (1), a refused payment (2) and an out-of-stock sale (3): 12 events."""
    assert submit(supervisor, 1, 1, "20.00", 2)["status"] == "FINALIZED"
    assert submit(supervisor, 1, 1, "500.00", 1)["reason"] == "insufficient balance"
    assert submit(supervisor, 1, 1, "5.00", 50)["reason"] == "out of stock"
    return supervisor


@pytest.fixture(scope="module")
def history(module_system: Supervisor) -> Supervisor:
    """The three sales on a system shared by the tests that only read the stream."""
    return make_history(module_system)


def tail_json(supervisor: Supervisor, *args: str) -> list[dict[str, Any]]:
    result = sagactl(supervisor, "tail", "--no-follow", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def consumers(supervisor: Supervisor) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        nc = await broker.connect(supervisor.nats_urls(), "test", reconnect_forever=False)
        try:
            return {c.name: c for c in await nc.jetstream().consumers_info("SAGA")}
        finally:
            await nc.close()

    return asyncio.run(read())


def settled(supervisor: Supervisor) -> dict[str, Any] | None:
    """The durable consumers once nothing is pending or unacked, else None."""
    infos = consumers(supervisor)
    return infos if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos.values()) else None


def test_replay_prints_every_event_as_published(history: Supervisor) -> None:
    events = tail_json(history, "--all")
    assert [e["seq"] for e in events] == list(range(1, 13))
    assert [e["data"]["type"] for e in events[:4]] == ["CREATED_SALE", "UPDATED_INVENTORY", "VALIDATED_PAYMENT", "FINALIZED_SALE"]
    first = events[0]
    assert set(first) == {"seq", "subject", "time", "data"}
    assert first["subject"] == "saga.sale.created" and first["time"].endswith("+00:00")
    assert first["data"]["sale_id"] == 1 and first["data"]["value"] == "20.00" and first["data"]["producer"] == "sale"


def test_lines_show_sale_type_producer_and_reason(history: Supervisor) -> None:
    result = sagactl(history, "tail", "--no-follow", "--sale-id", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert "#5" in lines[0] and "sale 2" in lines[0] and "CREATED_SALE" in lines[0] and "qty=1 value=500.00" in lines[0]
    assert "FAILED_PAYMENT" in lines[2] and "payment" in lines[2] and "reason=insufficient balance" in lines[2]
    assert "ROLLBACK_INVENTORY" in lines[3] and "(compensation)" in lines[3]
    assert "CANCELED_SALE" in lines[4] and "(compensation)" not in lines[4]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sale-id", "3"], [(3, "CREATED_SALE"), (3, "ROLLBACK_INVENTORY"), (3, "CANCELED_SALE")]),
        (["--type", "CANCELED_SALE", "--type", "FINALIZED_SALE"], [(1, "FINALIZED_SALE"), (2, "CANCELED_SALE"), (3, "CANCELED_SALE")]),
        (["--service", "payment"], [(1, "VALIDATED_PAYMENT"), (2, "FAILED_PAYMENT")]),
        (["--service", "inventory", "--sale-id", "2"], [(2, "UPDATED_INVENTORY"), (2, "ROLLBACK_INVENTORY")]),
        (["--last", "2"], [(3, "ROLLBACK_INVENTORY"), (3, "CANCELED_SALE")]),
        (["--last", "2", "--type", "CREATED_SALE"], [(2, "CREATED_SALE"), (3, "CREATED_SALE")]),
        (["--since", "10m", "--type", "FAILED_PAYMENT"], [(2, "FAILED_PAYMENT")]),
        (["--since", "2999-01-01T00:00:00"], []),
    ],
)
def test_filters_and_start_points(history: Supervisor, args: list[str], expected: list[tuple[int, str]]) -> None:
    events = tail_json(history, *args)
    assert [(e["data"]["sale_id"], e["data"]["type"]) for e in events] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "SHIPPED"], "unknown event type 'SHIPPED'"),
        (["--service", "shipping"], "unknown participant 'shipping'"),
        (["--all", "--last", "3"], "give one"),
        (["--last", "0"], "--last"),
        (["--since", "yesterday"], "--since"),
    ],
)
def test_bad_options_are_usage_errors(history: Supervisor, args: list[str], message: str) -> None:
    result = sagactl(history, "tail", "--no-follow", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_tail_leaves_the_participants_consumers_alone(history: Supervisor) -> None:
    # The participants ack an event after publishing what it caused: let them settle first.
    before = wait_for(lambda: settled(history), what="the participants to ack everything")
    tail_json(history, "--all")
    after = consumers(history)
    assert set(after) == {"sale", "inventory", "payment"}  # its own consumer is gone again
    for name, info in before.items():
        assert (after[name].delivered.stream_seq, after[name].ack_floor.stream_seq, after[name].num_redelivered) == (
            info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_redelivered)


def test_follow_survives_a_nats_restart_and_ends_on_ctrl_c(system: Supervisor) -> None:
    tail = Background(system, "tail", "--all", "--json")
    try:
        assert submit(system, 1, 1, "20.00", 2)["status"] == "FINALIZED"
        wait_for(lambda: len(tail.json_lines()) == 4, what="the first sale's 4 events")
        system.stop_nats(kill=True)
        system.start_nats()
        # The participants reconnect by themselves; the sale service answers once it has.
        wait_for(lambda: sagactl(system, "state").exit_code == 0, what="the participants to reconnect")
        assert submit(system, 1, 1, "1.00", 1)["status"] == "FINALIZED"
        wait_for(lambda: len(tail.json_lines()) == 8, what="the second sale's events after the restart")
        assert tail.interrupt() == 0
    finally:
        tail.stop()
    events = tail.json_lines()
    assert [e["seq"] for e in events] == list(range(1, 9))  # nothing lost, nothing repeated
    assert [e["data"]["sale_id"] for e in events] == [1] * 4 + [2] * 4
    assert not any("Traceback" in line for line in tail.stderr)
    assert set(consumers(system)) == {"sale", "inventory", "payment"}


def test_follow_shows_only_new_events_by_default(system: Supervisor) -> None:
    history = make_history(system)  # a system of its own: it adds a sale
    tail = watch_a_sale(history, "tail",
                        ready=lambda p: "sagactl-tail" in " ".join(consumers(history)),
                        shown=lambda p: any("FINALIZED_SALE" in line for line in p.stdout))
    assert all("sale 4" in line for line in tail.stdout) and len(tail.stdout) == 4


@pytest.mark.parametrize(
    "reply",
    ["$JS.ACK.SAGA.sagactl-tail-1.1.42.7.1795669984284829649.3",
     "$JS.ACK.hub.ACCOUNTHASH.SAGA.sagactl-tail-1.1.42.7.1795669984284829649.3.RANDOM"],
)
def test_delivery_read_from_both_reply_subject_forms(reply: str) -> None:
    delivery = parse_ack_subject(reply)
    assert delivery is not None
    assert (delivery.stream_seq, delivery.consumer_seq, delivery.pending) == (42, 7, 3)
    assert datetime.fromtimestamp(delivery.timestamp_ns / 1e9, timezone.utc).isoformat().startswith("2026-11-26T")
    assert parse_ack_subject("_INBOX.abc") is None
