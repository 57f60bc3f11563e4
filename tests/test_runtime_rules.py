"""The runtime's failure rules, settings and paged reads, without NATS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel, select

from participants.contract import (
    CREATED_SALE,
    UPDATED_INVENTORY,
    ContractError,
    Event,
    Refused,
    new_event,
    parse_sale,
)
from participants.runtime import Participant, TransientError
from participants.runtime.database import create_schema, make_engine
from participants.runtime.settle import failure_action, is_transient
from participants.runtime.rows import read_page
from participants.runtime.settings import ConfigError, Settings
from participants.runtime.database import InboxEntry, OutboxEntry
from participants.runtime.transaction import apply_batch, apply_event, apply_request
from participants.builtin import sale
from participants.sale.handlers import submit


def sqlite_error(message: str, code: int, wrapped: bool = True) -> BaseException:
    """As SQLAlchemy raises it, or as the driver cursor of the runtime's lean statements does."""
    orig = sqlite3.OperationalError(message)
    orig.sqlite_errorcode = code  # type: ignore[attr-defined]
    return OperationalError("statement", {}, orig) if wrapped else orig


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (sqlite_error("database is locked", 5), True),
        (sqlite_error("disk I/O error", 10 | (3 << 8)), True),
        (sqlite_error("database or disk is full", 13), True),
        (sqlite_error("no such column: balance", 1), False),
        (sqlite_error("database is locked", 5, wrapped=False), True),
        (sqlite_error("no such table: users", 1, wrapped=False), False),
        (TransientError("try later"), True),
        (IntegrityError("statement", {}, sqlite3.IntegrityError("UNIQUE constraint failed")), False),
        (LookupError("sale 9 does not exist"), False),
    ],
)
def test_which_failures_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
    # A transient failure retries past max_deliver; poison goes dead on its last allowed delivery.
    assert failure_action(exc, deliveries=5, max_deliver=5) == ("retry" if transient else "dead")
    assert failure_action(exc, deliveries=4, max_deliver=5) == "retry"


class Ticket(SQLModel, table=True):
    """A table whose handler can break its own constraint: one ticket per product."""

    __tablename__ = "constraint_tickets"
    product_id: int = Field(primary_key=True)


def _issue_ticket(event: Event, session: Session) -> None:
    # The built-ins decide by their rows and never break their constraints; this handler does.
    session.add(Ticket(product_id=event.product_id))
    session.flush()


def _bloated(event: Event, session: Session) -> Event:
    # A user's participant that puts a whole file into its event: more than a NATS message holds.
    return event.follow(UPDATED_INVENTORY, "bloat", attachment="z" * (1 << 20))


def test_an_event_too_large_to_publish_is_refused_before_anything_commits(tmp_path: Path) -> None:
    # Committed, it would stay in the outbox for good (every publish of it fails) and its saga
    # would never move; refused, the consumed event is dead-lettered at once with the reason.
    bloat = Participant(name="bloat", tables=[], handlers={CREATED_SALE: _bloated})
    engine = make_engine(f"sqlite:///{tmp_path / 'bloat.db'}")
    create_schema(engine, bloat.all_tables)
    event = new_event(CREATED_SALE, 1, parse_sale(1, 1, "20.00", 1), "sale")
    assert apply_batch(engine, bloat, [event]) is None
    with pytest.raises(Refused, match="UPDATED_INVENTORY event of 10[0-9]{5} bytes") as refused:
        apply_event(engine, bloat, event)
    assert failure_action(refused.value, deliveries=1, max_deliver=5) == "dead"
    with Session(engine) as session:
        assert session.exec(select(InboxEntry)).all() == [] and session.exec(select(OutboxEntry)).all() == []


def _own_ids(event: Event) -> Event:
    return Event(**{**event.model_dump(), "type": UPDATED_INVENTORY, "event_id": "mine\r\nPUB x 1", "producer": "ids"})


def test_an_event_whose_id_would_break_its_header_line_is_refused_before_anything_commits(tmp_path: Path) -> None:
    # The relay writes the id into `Nats-Msg-Id: <id>` as it is (jetstream.event_command): a line
    # break in it would be a protocol command of its own, and the server would close the connection.
    ids = Participant(name="ids", tables=[], handlers={CREATED_SALE: lambda event, session: _own_ids(event)})
    engine = make_engine(f"sqlite:///{tmp_path / 'ids.db'}")
    create_schema(engine, ids.all_tables)
    event = new_event(CREATED_SALE, 1, parse_sale(1, 1, "20.00", 1), "sale")
    with pytest.raises(Refused, match="whitespace or control characters") as refused:
        apply_event(engine, ids, event)
    assert failure_action(refused.value, deliveries=1, max_deliver=5) == "dead"
    with Session(engine) as session:
        assert session.exec(select(OutboxEntry)).all() == []


def test_a_handler_row_breaking_a_constraint_is_a_failure_not_a_race(tmp_path: Path) -> None:
    tickets = Participant(name="tickets", tables=[Ticket], handlers={CREATED_SALE: _issue_ticket})
    engine = make_engine(f"sqlite:///{tmp_path / 'tickets.db'}")
    create_schema(engine, tickets.all_tables)
    first = new_event(CREATED_SALE, 1, parse_sale(1, 1, "20.00", 1), "sale")
    apply_event(engine, tickets, first)
    # A second, distinct event: its ticket row breaks the primary key.
    second = new_event(CREATED_SALE, 2, parse_sale(1, 1, "20.00", 1), "sale")
    with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
        apply_event(engine, tickets, second)
    with Session(engine) as session:
        assert len(session.exec(select(Ticket)).all()) == 1  # nothing of the failed event committed


def test_settings_name_the_variable_that_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGACTL_SQLITE_BUSY_TIMEOUT", "0.25")
    monkeypatch.setenv("SAGACTL_SQLITE_SYNCHRONOUS", "full")
    settings = Settings.from_env("inventory")
    assert (settings.sqlite_busy_timeout_s, settings.sqlite_synchronous, settings.max_deliver) == (0.25, "FULL", 5)
    for name, raw in [("SAGACTL_BATCH_SIZE", "0"), ("SAGACTL_ACK_WAIT", "nan"), ("SAGACTL_SQLITE_BUSY_TIMEOUT", "soon")]:
        monkeypatch.setenv(name, raw)
        with pytest.raises(ConfigError, match=name):
            Settings.from_env("inventory")
        monkeypatch.delenv(name)


def test_rows_come_a_page_at_a_time(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sale.db'}")
    create_schema(engine, sale.all_tables)
    with Session(engine) as session:
        for _ in range(7):
            submit({"product_id": 1, "user_id": 1, "value": "1.00", "quantity": 1}, session)
        session.commit()
    pages, after = [], 0
    while after is not None:
        page = orjson.loads(read_page(engine, sale.tables, {"table": "sales", "after": after, "limit": 3}, 1 << 20))
        pages.append([row[0] for row in page["rows"]])
        after = page["next"]
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    # A page too big for one message is cut short, and says where to go on.
    small = orjson.loads(read_page(engine, sale.tables, {"table": "sales", "after": 0, "limit": 7}, 150))
    assert 1 <= len(small["rows"]) < 7 and small["next"] == small["rows"][-1][0]
    for body in ({"table": "saga_inbox"}, {"table": "sales", "limit": 0}, {"table": "sales", "after": "x"}):
        with pytest.raises(ContractError):
            read_page(engine, sale.tables, body, 1 << 20)


def test_a_repeated_submit_with_the_same_request_id_returns_the_first_sale(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sale.db'}")
    create_schema(engine, sale.all_tables)
    body = {"product_id": 1, "user_id": 1, "value": "1.00", "quantity": 1, "request_id": "order-7"}
    first, events = apply_request(engine, sale.requests["submit"], body)
    again, repeated = apply_request(engine, sale.requests["submit"], body)
    assert (first["sale_id"], len(events)) == (1, 1)
    assert (again, repeated) == ({"sale_id": 1, "status": "PENDING", "repeated": True}, [])
    assert apply_request(engine, sale.requests["submit"], {**body, "request_id": "order-8"})[0]["sale_id"] == 2
    with pytest.raises(ContractError, match="request_id"):
        apply_request(engine, sale.requests["submit"], {**body, "request_id": ""})
