"""`sagactl check` finds every inconsistency: a quiet, consistent system is corrupted in many distinct
ways at once (its tables edited behind the participants' backs, events forged onto the stream), and
each corruption must be flagged under its own rule and subject."""

from __future__ import annotations

from typing import Any

import pytest
from backends import PostgresBackend, SqliteBackend
from sqlalchemy import create_engine, text

from participants.contract import (
    REFUNDED_PAYMENT,
    UPDATED_INVENTORY,
    new_event,
    parse_sale,
)
from sagactl.check import run_checks
from sagactl.system.supervisor import Supervisor
from tests.driving import checked, connect, quiesce, settle

Backend = SqliteBackend | PostgresBackend
KINDS = 13  # one user and one product per corruption, so each shows under its own subject


def database(backend: Backend, supervisor: Supervisor, participant: str) -> Any:
    url = f"sqlite:///{supervisor.state.root / participant}.db" if backend.name == "sqlite" else backend.url(participant)
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def run_sql(engine: Any, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            assert connection.execute(text(statement)).rowcount != 0, statement


async def test_check_flags_each_corruption_of_tables_and_stream(system: Supervisor, db_backend: Backend) -> None:
    client = await connect(system)
    try:
        ids = range(1, KINDS + 1)
        await client.request("inventory", "setup", {"products": {str(i): 10 for i in ids}})
        await client.request("payment", "setup", {"users": {str(i): {"balance": "100.00"} for i in ids}})
        # Sale i: user i buys one unit of product i for 10.00; sales 2 and 5 ask for more than the stock.
        sale = {}
        for i in ids:
            sale[i] = await client.submit(parse_sale(i, i, "10.00", 11 if i in (2, 5) else 1))
        rows = await settle(client, list(sale.values()))
        assert [rows[sale[i]]["status"] for i in (1, 2, 5)] == ["FINALIZED", "CANCELED", "CANCELED"]
        await quiesce(client)
        await checked(client, stuck_after=0)  # consistent before

        payment, inventory, sales = (database(db_backend, system, name) for name in ("payment", "inventory", "sale"))
        # 1. an extra payment: user 2 charged (balance and all) for a sale that was canceled
        run_sql(payment, f"UPDATE payments SET state = 'CHARGED' WHERE sale_id = {sale[2]}",
                "UPDATE users SET balance = balance - 1000 WHERE id = 2")
        # 2. a payment for a sale that never existed, with an id above the newest sale
        run_sql(payment, "INSERT INTO payments (user_id, sale_id, value, state) VALUES (3, 90000, 1000, 'CHARGED')",
                "UPDATE users SET balance = balance - 1000 WHERE id = 3")
        # 3. stock off by one
        run_sql(inventory, "UPDATE inventories SET quantity = quantity + 1 WHERE product_id = 4")
        # 4. a sale FINALIZED without payment
        run_sql(sales, f"UPDATE sales SET status = 'FINALIZED', reason = NULL WHERE id = {sale[5]}")
        # 5. a double refund: a finalized sale refunded, and the money given back twice
        run_sql(payment, f"UPDATE payments SET state = 'REFUNDED' WHERE sale_id = {sale[6]}",
                "UPDATE users SET balance = balance + 2000 WHERE id = 6")
        # 6. negative stock
        run_sql(inventory, "UPDATE inventories SET quantity = -1 WHERE product_id = 7")
        run_sql(inventory, "UPDATE stock_baselines SET quantity = 0 WHERE product_id = 7")
        # 7. a sale CANCELED that still holds its stock and its payment
        run_sql(sales, f"UPDATE sales SET status = 'CANCELED', reason = 'out of stock' WHERE id = {sale[8]}")
        # 8. a payment whose amount is not the sale's (the balance agrees with it)
        run_sql(payment, f"UPDATE payments SET value = 500 WHERE sale_id = {sale[9]}",
                "UPDATE users SET balance = balance + 500 WHERE id = 9")
        # 9. a user row gone
        run_sql(payment, "DELETE FROM users WHERE id = 10")
        # 10. a finalized sale back to PENDING
        run_sql(sales, f"UPDATE sales SET status = 'PENDING' WHERE id = {sale[11]}")
        # 11. the stream: a step decided twice (a second UPDATED_INVENTORY, a new event id)
        js = client.nc.jetstream()
        again = new_event(UPDATED_INVENTORY, sale[12], parse_sale(12, 12, "10.00", 1), "inventory")
        await js.publish(again.subject, again.to_bytes(), headers={"Nats-Msg-Id": again.event_id})
        # 12. the stream: a poison event, dead-lettered
        await js.publish("saga.sale.created", b"not an event")
        # 13. a product row gone
        run_sql(inventory, "DELETE FROM inventories WHERE product_id = 13")
        # 14. a refund on the stream for a sale that was never refunded (and its money)
        refund = new_event(REFUNDED_PAYMENT, sale[1], parse_sale(1, 1, "10.00", 1), "payment")
        await js.publish(refund.subject, refund.to_bytes(), headers={"Nats-Msg-Id": refund.event_id})
        run_sql(payment, "UPDATE users SET balance = balance + 1000 WHERE id = 1")
        for engine in (payment, inventory, sales):
            engine.dispose()
        await quiesce(client)

        report = await run_checks(client, stuck_after=0)
        found = {(v.check, v.subject) for v in report.violations}
        expected = {
            ("payment", f"sale {sale[2]}"),
            ("payment", "sale 90000"),
            ("stock", "product 4"),
            ("payment", f"sale {sale[5]}"),
            ("payment", f"sale {sale[6]}"), ("money", "user 6"),
            ("negative", "product 7"),
            ("payment", f"sale {sale[8]}"), ("canceled", f"sale {sale[8]}"),
            ("payment", f"sale {sale[9]}"),
            ("money", "user 10"),
            ("stuck", f"sale {sale[11]}"),
            ("applied-twice", f"sale {sale[12]}"),
            ("money", "user 1"), ("payment", f"sale {sale[1]}"),
            ("stock", "product 13"),
        }
        assert expected <= found, "\n".join(f"missed: {m}" for m in sorted(expected - found)) + f"\nfound: {sorted(found)}"
        assert any(v.check == "dead-letter" for v in report.violations)
        # Nothing flagged about what was left alone.
        untouched = {f"sale {sale[3]}", f"sale {sale[4]}", f"sale {sale[7]}", f"sale {sale[10]}", f"sale {sale[13]}",
                     "user 4", "user 5", "user 7", "user 8", "user 11", "user 12", "user 13", "product 1", "product 6"}
        assert not [v for v in report.violations if v.subject in untouched], report.violations
    finally:
        await client.close()


@pytest.mark.postgres
def test_payment_baseline_reads_balances_and_payments_in_one_snapshot() -> None:
    """A payment committing while the baseline is read (forced between its reads, not by timing)
    must not break baseline = balance + paid: under PostgreSQL's READ COMMITTED two queries would
    each see their own snapshot. (SQLite: a request's transaction holds the write lock, one
    snapshot by construction, and the forced writer would wait for it: so PostgreSQL alone.)"""
    from backends import postgres_server_url

    db_backend = PostgresBackend(postgres_server_url())
    try:
        _baseline_with_a_payment_forced_between_its_reads(db_backend)
    finally:
        db_backend.close()


def _baseline_with_a_payment_forced_between_its_reads(db_backend: Backend) -> None:
    from decimal import Decimal

    from sqlalchemy import event

    from participants.builtin import payment
    from participants.runtime.database import create_schema, make_engine, seed_once
    from participants.runtime.transaction import apply_request

    engine = make_engine(db_backend.url("payment"))
    create_schema(engine, payment.all_tables)
    seed_once(engine, payment.seed())
    other = make_engine(db_backend.url("payment"))
    committed: list[str] = []

    @event.listens_for(engine, "after_cursor_execute")
    def commit_a_payment_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "balance_baselines" in statement and not committed:
            committed.append(statement)
            with other.begin() as connection:
                connection.execute(text("UPDATE users SET balance = balance - 1000 WHERE id = 1"))
                connection.execute(text("INSERT INTO payments (user_id, sale_id, value, state) VALUES (1, 77, 1000, 'CHARGED')"))

    reply, _ = apply_request(engine, payment.requests["baseline"], {})
    assert committed, "the concurrent payment was not forced in"
    [user] = reply["users"]
    assert Decimal(user["baseline"]) == Decimal(user["balance"]) + Decimal(user["paid"]), user
    engine.dispose()
    other.dispose()
