"""What replicas rely on in the database, on each backend: concurrent starts seed once, conditional
updates stay atomic (PostgreSQL: READ COMMITTED), one event applied by two replicas counts once."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from backends import PostgresBackend, SqliteBackend
from polling import wait_for
from sqlalchemy import inspect, text
from sqlmodel import Session, select

from participants.contract import (
    CREATED_SALE,
    UPDATED_INVENTORY,
    Event,
    new_event,
    parse_sale,
)
from participants.builtin import inventory
from participants.inventory.handlers import on_event as on_created_sale
from participants.inventory.models import Inventory
from participants.builtin import payment
from participants.payment.models import User
from participants.runtime.database import (
    InboxEntry,
    create_schema,
    make_engine,
    seed_once,
    utc_datetime,
)
from participants.runtime.transaction import Applied, apply_event, apply_request

Backend = SqliteBackend | PostgresBackend


def created(sale_id: int, quantity: int = 1, value: str = "1.00", user_id: int = 1) -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(1, user_id, value, quantity), "sale")


def prepared(backend: Backend, participant):  # type: ignore[no-untyped-def]
    engine = make_engine(backend.url(participant.name))
    create_schema(engine, participant.all_tables)
    seed_once(engine, participant.seed())
    return engine


def test_replicas_starting_together_create_the_schema_and_seed_once(db_backend: Backend) -> None:
    url = db_backend.url("inventory")

    def start() -> bool:
        engine = make_engine(url)
        try:
            create_schema(engine, inventory.all_tables)
            return seed_once(engine, inventory.seed())
        finally:
            engine.dispose()

    with ThreadPoolExecutor(4) as pool:
        seeded = list(pool.map(lambda _: start(), range(4)))
    assert seeded.count(True) == 1
    engine = make_engine(url)
    with Session(engine) as session:
        assert [(r.id, r.product_id, r.quantity) for r in session.exec(select(Inventory))] == [(1, 1, 10)]
    # A product added later gets the next id (PostgreSQL: the seed left the sequence in step).
    apply_request(engine, inventory.requests["setup"], {"products": {"2": 5}})
    with Session(engine) as session:
        assert [(r.id, r.product_id) for r in session.exec(select(Inventory).order_by(Inventory.id))] == [(1, 1), (2, 2)]
    engine.dispose()


def test_conditional_debits_never_oversell_under_concurrency(db_backend: Backend) -> None:
    """20 sales of 1 unit race for 10 units from 8 threads: exactly 10 are served."""
    engine = prepared(db_backend, inventory)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: apply_event(engine, inventory, created(i)), range(1, 21)))
    emitted = [o.emitted[0].type for o in outcomes]
    assert emitted.count(UPDATED_INVENTORY) == 10 and all(o.applied is Applied.DONE for o in outcomes)
    with Session(engine) as session:
        assert session.exec(select(Inventory.quantity)).one() == 0
    engine.dispose()


def test_money_is_whole_cents_in_a_bigint_column(db_backend: Backend) -> None:
    engine = prepared(db_backend, payment)
    columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("users")}
    assert "BIGINT" in str(columns["balance"]).upper() or "INTEGER" in str(columns["balance"]).upper()
    apply_request(engine, payment.requests["setup"], {"users": {"1": {"balance": "99999999.99"}}})
    with Session(engine) as session:
        assert session.exec(text("SELECT balance FROM users WHERE id = 1")).one()[0] == 9999999999
        assert session.exec(select(User.balance)).one() == Decimal("99999999.99")
    engine.dispose()


def test_an_event_applied_by_two_replicas_at_once_counts_once(db_backend: Backend) -> None:
    """Replica A holds the event's transaction open; replica B applies the same event meanwhile.

    SQLite: B's BEGIN IMMEDIATE waits for A, then B finds the event in the inbox (DUPLICATE).
    PostgreSQL: B's debit waits on A's row lock and, once A commits, B's inbox insert collides
    with A's (RACED: B rolls back, the daemon naks, the redelivery is a DUPLICATE).
    """
    engine = prepared(db_backend, inventory)
    event = created(1, quantity=3)
    results: dict[str, Applied] = {}
    replica_b = threading.Thread(target=lambda: results.update(b=apply_event(engine, inventory, event).applied))
    with Session(engine) as replica_a:
        on_created_sale(event, replica_a)
        replica_a.add(InboxEntry(event_id=event.event_id, event_type=event.type, sale_id=1, handled_at=utc_datetime()))
        replica_a.flush()
        replica_b.start()
        if db_backend.name == "postgres":
            wait_for_a_lock_wait(engine)
        replica_a.commit()
    replica_b.join(timeout=30)
    assert results["b"] is (Applied.RACED if db_backend.name == "postgres" else Applied.DUPLICATE)
    assert apply_event(engine, inventory, event).applied is Applied.DUPLICATE  # the redelivery
    with Session(engine) as session:
        assert session.exec(select(Inventory.quantity)).one() == 7
        assert len(session.exec(select(InboxEntry)).all()) == 1
    engine.dispose()


def wait_for_a_lock_wait(engine, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Until some session of this database waits for a lock (replica B blocked behind A)."""
    with engine.connect() as probe:

        def waiting() -> int:
            count = probe.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )).scalar()
            probe.rollback()
            return int(count or 0)

        wait_for(waiting, "replica B to wait for replica A's lock", timeout=timeout, every=0.02)


def test_an_unreachable_database_fails_up_clearly_without_its_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from sagactl.cli.main import app

    runner = CliRunner()
    root = ["--state-dir", str(tmp_path / "state")]
    try:
        result = runner.invoke(app, ["up", "--db-url", "sale=postgresql://saga:pw-9x7@127.0.0.1:1/sale", *root])
        assert result.exit_code == 3, result.output
        assert "participant sale exited" in result.stderr and "database: connection failed" in result.stderr
        assert "Traceback" not in result.output and "pw-9x7" not in result.output
        report = runner.invoke(app, ["status", "--json", *root])
        assert json.loads(report.stdout)["databases"] == {"sale": "postgresql://saga:***@127.0.0.1:1/sale"}
        assert "pw-9x7" not in report.output
    finally:
        runner.invoke(app, ["down", *root])
    bad = runner.invoke(app, ["up", "--db-url", "sale=mysql://x/y", *root])
    assert bad.exit_code == 2 and "--db-url takes NAME=URL" in bad.stderr
