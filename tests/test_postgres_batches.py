"""PostgreSQL: a batch in a few round trips, never a scan of the runtime's growing tables, and the
same decisions as handlers run one after the other (participants/runtime/interleave.py)."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal
from typing import Iterator

import psycopg
import pytest
from backends import PostgresBackend, postgres_server_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from roundtrips import RoundTrips
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Field, Session, SQLModel, col, update
from test_backends import wait_for_a_lock_wait

from participants.builtin import inventory
from participants.contract import CANCELED_SALE, CREATED_SALE, FAILED_PAYMENT, FINALIZED_SALE, Event, new_event, parse_sale
from participants.runtime import Participant, Statement
from participants.runtime.database import create_schema, make_engine, seed_once, utc_datetime
from participants.runtime.results import run_each
from participants.runtime.sql import numbered
from participants.runtime.transaction import Applied, apply_batch, apply_event, mark_sent

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[PostgresBackend]:
    backend = PostgresBackend(postgres_server_url())
    try:
        yield backend
    finally:
        backend.close()


def prepared(url: str, participant: Participant, stock: int = 1_000_000) -> Engine:
    engine = make_engine(url)
    create_schema(engine, participant.all_tables)
    seed_once(engine, participant.seed())
    with engine.begin() as connection:
        connection.execute(text("UPDATE inventories SET quantity = :q WHERE product_id = 1"), {"q": stock})
    return engine


def created(sale_id: int, quantity: int = 1) -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(1, 1, "1.00", quantity), "sale")


def follow_up(event_type: str, sale_id: int, quantity: int = 1) -> Event:
    return new_event(event_type, sale_id, parse_sale(1, 1, "1.00", quantity), "sale", reason="test")


def via(proxy: RoundTrips, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def test_a_batch_takes_a_few_round_trips_not_one_per_statement(pg: PostgresBackend) -> None:
    """64 CREATED_SALE events, two statements each in inventory's handler: sent in turns, the
    whole batch waits for the server a handful of times; one after the other, 128 times and more."""
    url = pg.url("inventory")
    prepared(url, inventory).dispose()
    server = make_url(url)
    proxy = RoundTrips(server.host or "127.0.0.1", server.port or 5432)
    engine = make_engine(via(proxy, url))
    try:
        with engine.connect() as connection:
            used = {}
            for name, participant in (("warm-up", inventory), ("in turns", inventory),
                                      ("one after the other", dataclasses.replace(inventory, interleave=False))):
                events = [created(sale_id) for sale_id in range(len(used) * 100 + 1, len(used) * 100 + 65)]
                before = proxy.count
                result = apply_batch(connection, participant, events, sequences=list(range(64)))
                used[name] = proxy.count - before
                assert result is not None and all(o.applied is Applied.DONE for o in result.outcomes)
                assert len(result.messages) == 64
    finally:
        engine.dispose()
        proxy.close()
    assert used["in turns"] <= 8, used
    assert used["one after the other"] >= 128, used


def test_the_inbox_and_outbox_are_never_scanned_whole(pg: PostgresBackend) -> None:
    """Tables never analyzed (no statistics: the state of a fresh database until autovacuum comes
    by) with 20,000 rows each: the inbox check and the sent marks still go through the index. An
    `IN` list planned as a prepared statement while the planner thought the table small scanned
    all of it, 400 ms a batch at 40,000 rows."""
    engine = prepared(pg.url("inventory"), inventory)
    with engine.begin() as connection:
        for table in ("saga_inbox", "saga_outbox"):
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        connection.execute(text("INSERT INTO saga_inbox (event_id, event_type, sale_id, handled_at) "
                                "SELECT md5(g::text), 'CREATED_SALE', g, now() FROM generate_series(1, 20000) g"))
        connection.execute(text("INSERT INTO saga_outbox (event_id, subject, payload, created_at, sent_at) "
                                "SELECT md5(g::text), 'saga.x', '\\x00', now(), now() FROM generate_series(1, 20000) g"))

    def scans(connection) -> dict[str, int]:  # type: ignore[no-untyped-def]
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = connection.execute(text("SELECT relname, seq_scan FROM pg_stat_user_tables "
                                       "WHERE relname IN ('saga_inbox', 'saga_outbox')")).all()
        connection.commit()
        return dict(rows)  # type: ignore[arg-type]

    with engine.connect() as connection:
        before = scans(connection)
        for round_ in range(8):  # past psycopg's prepare threshold (5) and PostgreSQL's custom plans (5)
            events = [created(sale_id) for sale_id in range(100_000 + round_ * 100, 100_000 + round_ * 100 + 64)]
            result = apply_batch(connection, inventory, events + events[:3], sequences=list(range(67)))
            assert result is not None and [o.applied for o in result.outcomes].count(Applied.DUPLICATE) == 3
            with connection.begin():
                mark_sent(connection, [m.event_id for m in result.messages], utc_datetime())
        after = scans(connection)
    engine.dispose()
    assert after == before, (before, after)


def test_a_replica_claiming_the_same_events_waits_and_then_sees_duplicates(pg: PostgresBackend) -> None:
    """Replica A is inside its batch (inbox rows claimed, not committed); replica B's batch of the
    same events waits for A's commit and then finds them recorded: nothing applied twice, nothing
    to retry."""
    engine = prepared(pg.url("inventory"), inventory, stock=10)
    events = [created(1, quantity=3), created(2, quantity=3)]
    results: dict[str, object] = {}

    def replica_b() -> None:
        with engine.connect() as connection:
            results["b"] = apply_batch(connection, inventory, events, sequences=[1, 2])

    thread = threading.Thread(target=replica_b)

    def inside_a() -> None:  # A's first handler has run: its claim holds the inbox rows
        thread.start()
        wait_for_a_lock_wait(engine)

    with engine.connect() as connection:
        a = apply_batch(connection, inventory, events, on_first=inside_a, sequences=[1, 2])
    thread.join(timeout=60)
    assert a is not None and [o.applied for o in a.outcomes] == [Applied.DONE, Applied.DONE]
    b = results["b"]
    assert b is not None and [o.applied for o in b.outcomes] == [Applied.DUPLICATE, Applied.DUPLICATE]  # type: ignore[attr-defined]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT quantity FROM inventories WHERE product_id = 1")).scalar() == 4
        assert connection.execute(text("SELECT count(*) FROM saga_inbox")).scalar() == 2
    engine.dispose()


def test_the_last_units_go_to_exactly_as_many_sales_as_they_cover(pg: PostgresBackend) -> None:
    engine = prepared(pg.url("inventory"), inventory, stock=10)
    events = [created(sale_id) for sale_id in range(1, 65)]
    with engine.connect() as connection:
        result = apply_batch(connection, inventory, events, sequences=list(range(64)))
        stock = connection.execute(text("SELECT quantity FROM inventories WHERE product_id = 1")).scalar()
        held = connection.execute(text("SELECT count(*) FROM reservations WHERE state = 'RESERVED'")).scalar()
    engine.dispose()
    assert result is not None
    decided = [o.emitted[0].type for o in result.outcomes]
    assert decided.count("UPDATED_INVENTORY") == 10 and decided.count("ROLLBACK_INVENTORY") == 54
    assert (stock, held) == (0, 10)


def test_a_handler_failing_in_its_turn_leaves_the_batch_uncommitted(pg: PostgresBackend) -> None:
    """A FAILED_PAYMENT for a sale inventory never saw is refused: the whole batch rolls back
    (its inbox claims too), and the events applied one by one afterwards take effect once."""
    engine = prepared(pg.url("inventory"), inventory)
    events = [created(1), follow_up(FAILED_PAYMENT, 99), created(2)]
    with engine.connect() as connection:
        assert apply_batch(connection, inventory, events, sequences=[1, 2, 3]) is None
        assert connection.execute(text("SELECT count(*) FROM saga_inbox")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM reservations")).scalar() == 0
        connection.rollback()
    assert apply_event(engine, inventory, events[0]).applied is Applied.DONE
    with pytest.raises(Exception, match="never saw CREATED_SALE"):
        apply_event(engine, inventory, events[1])
    assert apply_event(engine, inventory, events[2]).applied is Applied.DONE
    engine.dispose()


# A participant with ORM statements and lean ones mixed, keyed by user: events of different
# sales of one user share a row.
class Points(SQLModel, table=True):
    __tablename__ = "test_points"
    user_id: int = Field(primary_key=True)
    points: int = 0
    awards: int = 0


COUNT_AWARD = Statement("UPDATE test_points SET awards = awards + 1 WHERE user_id = :u")


def award(event: Event, session: Session) -> None:
    updated = session.exec(update(Points).where(col(Points.user_id) == event.user_id).values(points=col(Points.points) + 1))
    if updated.rowcount == 0:
        session.add(Points(user_id=event.user_id, points=1))
    COUNT_AWARD.run(session, u=event.user_id)


points = Participant(name="points", tables=[Points], handlers={FINALIZED_SALE: award})


def test_orm_work_in_a_handler_runs_where_it_stands_between_its_turns(pg: PostgresBackend) -> None:
    engine = make_engine(pg.url("points"))
    create_schema(engine, points.all_tables)
    events = [new_event(FINALIZED_SALE, sale_id, parse_sale(1, 1 + sale_id % 3, "1.00", 1), "sale") for sale_id in range(1, 31)]
    with engine.connect() as connection:
        result = apply_batch(connection, points, events, sequences=list(range(30)))
        rows = connection.execute(text("SELECT user_id, points, awards FROM test_points ORDER BY user_id")).all()
    engine.dispose()
    assert result is not None and all(o.applied is Applied.DONE for o in result.outcomes)
    assert [tuple(r) for r in rows] == [(1, 10, 10), (2, 10, 10), (3, 10, 10)]


def test_statements_sent_together_read_as_a_cursor_reads_them(pg: PostgresBackend) -> None:
    url = make_url(pg.url("results")).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE t (id serial PRIMARY KEY, name text UNIQUE, money numeric, at timestamptz, raw bytea)")
        connection.commit()
        statements = [
            "INSERT INTO t (name, money, at, raw) VALUES (:n, :m, now(), :r) RETURNING name, money, raw",
            "UPDATE t SET money = money + :m WHERE name = :n",
            "SELECT name, money, raw, at IS NOT NULL FROM t WHERE name <> :n ORDER BY id",
        ]
        params = [
            (0, {"n": "a", "m": Decimal("1.50"), "r": b"\x00\x01"}), (0, {"n": "b", "m": 2, "r": None}),
            (1, {"n": "a", "m": 1}), (1, {"n": "nobody", "m": 1}), (2, {"n": "a"}), (2, {"n": "nobody"}),
        ]
        together = run_each(connection, [(numbered(statements[k])[0], [p[name] for name in numbered(statements[k])[1]])
                                          for k, p in params])
        connection.rollback()
        cursor = connection.cursor()
        for (k, p), result in zip(params, together):
            cursor.execute(statements[k].replace(":n", "%(n)s").replace(":m", "%(m)s").replace(":r", "%(r)s"), p)
            assert result.rowcount == cursor.rowcount
            assert result.fetchall() == (cursor.fetchall() if cursor.description else [])
        connection.rollback()
        with pytest.raises(psycopg.errors.UniqueViolation):
            sql, names = numbered(statements[0])
            run_each(connection, [(sql, ["a", 1, None]), (sql, ["a", 2, None])])
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            connection.execute("SELECT 1")


# Any mix of first deliveries, copies under the same id, and the follow-ups of each sale, in
# batches: with stock enough for every sale, in turns decides exactly what one after the other does.
kinds = st.sampled_from([CREATED_SALE, CREATED_SALE, CANCELED_SALE, FAILED_PAYMENT])
runs = st.lists(st.tuples(kinds, st.integers(1, 12), st.integers(0, 3)), min_size=1, max_size=60)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=runs, batch=st.integers(2, 24))
def test_in_turns_decides_what_one_after_the_other_decides(pg: PostgresBackend, run, batch) -> None:  # type: ignore[no-untyped-def]
    decided = {}
    for name, participant in (("turns", inventory), ("sequential", dataclasses.replace(inventory, interleave=False))):
        engine = _fresh(pg, name)
        events: list[Event] = []
        for kind, sale_id, copy_of in run:
            if copy_of and events:
                events.append(events[-min(copy_of, len(events))])  # the same event delivered again
            else:
                events.append(created(sale_id) if kind == CREATED_SALE else follow_up(kind, sale_id))
        outcomes = []
        with engine.connect() as connection:
            for start in range(0, len(events), batch):
                chunk = events[start:start + batch]
                result = apply_batch(connection, participant, chunk, sequences=list(range(start, start + len(chunk))))
                if result is None:  # as the daemon does: one by one
                    connection.rollback()
                    for event in chunk:
                        try:
                            outcomes.append(_said(apply_event(engine, participant, event)))
                        except Exception as exc:
                            outcomes.append(("failed", type(exc).__name__))
                else:
                    outcomes.extend(_said(o) for o in result.outcomes)
            state = connection.execute(text("SELECT sale_id, quantity, state FROM reservations ORDER BY sale_id")).all()
            stock = connection.execute(text("SELECT quantity FROM inventories WHERE product_id = 1")).scalar()
            connection.rollback()
        engine.dispose()
        decided[name] = (outcomes, [tuple(r) for r in state], stock)
    assert decided["turns"] == decided["sequential"]


def _said(outcome) -> tuple:  # type: ignore[no-untyped-def]
    return (outcome.applied.value, [(e.type, e.sale_id, e.reason) for e in outcome.emitted])


def _fresh(pg: PostgresBackend, name: str) -> Engine:
    """The participant's database emptied (a hypothesis example runs many times on one fixture)."""
    url = pg.url(f"inventory_{name}")
    engine = make_engine(url)
    create_schema(engine, inventory.all_tables)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE saga_inbox, saga_outbox, saga_meta, reservations, inventories, stock_baselines"))
    seed_once(engine, inventory.seed())
    with engine.begin() as connection:
        connection.execute(text("UPDATE inventories SET quantity = 1000000 WHERE product_id = 1"))
    return engine
