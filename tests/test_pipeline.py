"""The batched participant pipeline: one transaction per batch, its fallback, crash points, pruning."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from polling import eventually
from sqlalchemy import text
from sqlmodel import Session, select

from participants.contract import CREATED_SALE, STREAM, new_event, parse_sale
from participants.builtin import inventory
from participants.inventory.models import Inventory
from participants.runtime.database import (
    InboxEntry,
    OutboxEntry,
    create_schema,
    make_engine,
    seed_once,
    utc_datetime,
)
from participants.runtime.retention import Retention, prune
from participants.runtime.sql import Statement
from participants.runtime.transaction import Applied, apply_batch, apply_request
from participants.builtin import sale
from sagactl.client import SagaClient
from sagactl.system.supervisor import Supervisor


def engine_for(tmp_path: Path, participant):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / participant.name}.db")
    create_schema(engine, participant.all_tables)
    seed_once(engine, participant.seed())
    return engine


def created(sale_id: int, quantity: int = 1, product_id: int = 1):  # type: ignore[no-untyped-def]
    return new_event(CREATED_SALE, sale_id, parse_sale(product_id, 1, "1.00", quantity), "sale")


def stock(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(Inventory.quantity).where(Inventory.product_id == 1)).one()


def test_batch_applies_in_order_and_skips_duplicates(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, inventory)
    first = created(1, quantity=6)
    result = apply_batch(engine, inventory, [first, created(2, quantity=6), first])
    assert result is not None
    # The second sale sees the first one's debit (same transaction, in order): out of stock.
    assert [o.applied for o in result.outcomes] == [Applied.DONE, Applied.DONE, Applied.DUPLICATE]
    assert [o.emitted[0].type for o in result.outcomes[:2]] == ["UPDATED_INVENTORY", "ROLLBACK_INVENTORY"]
    assert [m[2] for m in result.messages] == [o.emitted[0].event_id for o in result.outcomes[:2]]
    assert stock(engine) == 4
    # A duplicate hands back the unsent outbox rows its first application decided (published
    # again before it is acked); once they are marked sent, nothing.
    again = apply_batch(engine, inventory, [first])
    assert again is not None and again.outcomes[0].applied is Applied.DUPLICATE
    assert again.messages == result.messages[:1]
    again = apply_batch(engine, inventory, [first], sent=[result.messages[0][2]])
    assert again is not None and again.outcomes[0].applied is Applied.DUPLICATE and not again.messages
    with Session(engine) as session:
        assert len(session.exec(select(InboxEntry)).all()) == 2
        assert len(session.exec(select(OutboxEntry)).all()) == 2


def test_failed_batch_commits_nothing(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, inventory)
    unknown = new_event("FAILED_PAYMENT", 9, parse_sale(77, 1, "1.00", 1), "payment")  # credit of a vanished product
    assert apply_batch(engine, inventory, [created(1, quantity=3), unknown]) is None
    assert stock(engine) == 10
    with Session(engine) as session:
        assert session.exec(select(InboxEntry)).all() == [] and session.exec(select(OutboxEntry)).all() == []


def test_lean_statement_translates_for_postgresql() -> None:
    statement = Statement("UPDATE t SET a = a - :q WHERE id = :id AND note LIKE '50%'")
    assert statement._for("postgresql") == "UPDATE t SET a = a - %(q)s WHERE id = %(id)s AND note LIKE '50%%'"
    assert statement._for("sqlite") == statement.sql


def test_submit_many_is_all_or_nothing(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, sale)
    ok = {"product_id": 1, "user_id": 1, "value": "2.50", "quantity": 1}
    reply, events = apply_request(engine, sale.requests["submit_many"], {"sales": [ok, ok]})
    assert [s["sale_id"] for s in reply["sales"]] == [1, 2] and [e.sale_id for e in events] == [1, 2]
    assert events[0].value == events[0].value.__class__("2.50")
    with pytest.raises(Exception, match=r"sales\[1\]"):
        apply_request(engine, sale.requests["submit_many"], {"sales": [ok, {**ok, "value": "-1"}]})
    reply, _ = apply_request(engine, sale.requests["submit"], ok)
    assert reply["sale_id"] == 3


def test_prune_keeps_recent_rows_and_removes_old_ones(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, inventory)
    apply_batch(engine, inventory, [created(i) for i in range(1, 6)], sequences=[10, 11, 12, 13, 14])
    old = utc_datetime() - timedelta(hours=2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE saga_inbox SET handled_at = :t WHERE sale_id <= 3"), {"t": old.strftime("%Y-%m-%d %H:%M:%S.%f")})
        connection.execute(text("UPDATE saga_outbox SET sent_at = :t"), {"t": old.strftime("%Y-%m-%d %H:%M:%S.%f")})

    def inbox() -> list[int]:
        with Session(engine) as session:
            return sorted(row.sale_id for row in session.exec(select(InboxEntry)).all())

    prune(engine, Retention(inbox_s=3600, outbox_sent_s=60), ack_floor=None)  # the consumer could not be asked
    assert inbox() == [1, 2, 3, 4, 5]
    # Sale 3's event (seq 12) is old but not acked yet, above the floor; 4 and 5 are recent.
    prune(engine, Retention(inbox_s=3600, outbox_sent_s=60), ack_floor=11)
    assert inbox() == [3, 4, 5]
    with Session(engine) as session:
        assert session.exec(select(OutboxEntry)).all() == []


def test_retention_covers_redeliveries_and_the_duplicate_window() -> None:
    retention = Retention.for_consumer(120, max_deliver=5, ack_wait_s=30, max_retry_delay_s=5)
    assert retention.inbox_s == 120 + 5 * 35


async def _submit_and_wait(urls: list[str], count: int) -> dict[int, str]:
    client = await SagaClient.connect(urls, name="test-pipeline")
    try:
        await client.watch_terminal()
        ok = parse_sale(1, 1, "1.00", 1)
        ids = await client.submit_many([ok] * count)
        return {i: (await client.wait_terminal(i, 45)).status for i in ids}
    finally:
        await client.close()


async def _totals(urls: list[str]) -> tuple[int, str]:
    client = await SagaClient.connect(urls, name="test-pipeline")
    try:
        state = await client.state(["inventory", "payment"])
        return state["inventory"]["inventories"][0]["quantity"], state["payment"]["users"][0]["balance"]  # type: ignore[index]
    finally:
        await client.close()


@pytest.mark.parametrize("point", ["after_commit", "after_publish", "mid_batch"])
def test_a_participant_killed_at_a_crash_point_loses_and_doubles_nothing(state, fast_ack: None, point: str) -> None:  # type: ignore[no-untyped-def]
    supervisor = Supervisor(state)
    try:
        urls = supervisor.up(None, extra_env={"inventory": {"SAGACTL_CRASH_POINT": f"{point}:1"}})
        waiting = asyncio.new_event_loop()
        try:
            task = waiting.create_task(_submit_and_wait(urls, 8))
            # Inventory dies at its crash point; `up` restarts it (without the crash point this time).
            async def crashed() -> bool:
                return not all(p.running for p in supervisor.processes())

            waiting.run_until_complete(eventually(crashed, "inventory to reach its crash point", 30, every=0.05))
            supervisor.up(None)
            outcomes = waiting.run_until_complete(task)
            quantity, balance = waiting.run_until_complete(_totals(urls))
        finally:
            waiting.close()
        # Seed: 10 units, 100.00. Eight sales of one unit at 1.00: all finalized, each once.
        assert sorted(outcomes.values()) == ["FINALIZED"] * 8
        assert (quantity, balance) == (2, "92.00")
    finally:
        supervisor.down(kill=True)


def test_a_poison_event_is_dead_lettered_and_blocks_nothing(system: Supervisor) -> None:
    async def scenario() -> tuple[dict[int, str], int]:
        urls = system.nats_urls()
        client = await SagaClient.connect(urls, name="test-pipeline")
        try:
            js = client.nc.jetstream()
            await js.publish("saga.sale.created", b"{not json", headers={"Nats-Msg-Id": "poison-1"})
            outcomes = await _submit_and_wait(urls, 3)

            async def parked() -> bool:
                return (await js.stream_info("SAGA_DLQ")).state.messages >= 1

            await eventually(parked, "the poison event to be dead-lettered", 20)
            return outcomes, (await js.stream_info("SAGA_DLQ")).state.messages
        finally:
            await client.close()

    outcomes, dead = asyncio.run(scenario())
    assert sorted(outcomes.values()) == ["FINALIZED"] * 3 and dead == 1


def test_stream_bounds_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from participants.runtime import broker
    from participants.runtime.settings import Settings

    monkeypatch.setenv("SAGACTL_STREAM_MAX_AGE", "3600")
    monkeypatch.setenv("SAGACTL_STREAM_MAX_BYTES", "1048576")
    settings = Settings.from_env("sale")
    config = broker.stream_config(1, settings.stream_max_age_s, settings.stream_max_bytes)
    assert (config.name, config.max_age, config.max_bytes) == (STREAM, 3600, 1048576)
    assert Settings.from_env("sale").__class__(nats_urls=[], db_url="", state_dir=Path()).stream_max_bytes == 1 << 30


