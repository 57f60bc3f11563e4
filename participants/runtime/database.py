"""A participant's database: engine settings, the runtime's own tables, rows as plain data.

SQLite is the default (one file per participant). Its settings are what make replicas of one
participant safe on one file: WAL so readers never block the writer, a busy timeout so a second
writer waits instead of failing, and `BEGIN IMMEDIATE` so a transaction takes the write lock
before it reads the rows it will change.

PostgreSQL (`postgresql+psycopg://...`) runs at its default READ COMMITTED: the handlers' changes
are single conditional UPDATEs, which PostgreSQL re-checks against the committed row after
waiting for its lock, so they stay atomic; replicas starting together take an advisory lock to
create the schema and insert the seed rows once.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import BigInteger, Connection, Engine, LargeBinary, event, inspect, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, create_engine, select

from participants.contract import MONEY_PLACES, from_cents, to_cents


class Money(TypeDecorator):
    """Exact money stored as whole cents, read back as a two-place Decimal on every backend."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Any) -> int | None:
        if value is None:
            return None
        return to_cents(Decimal(value).quantize(MONEY_PLACES))

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        return None if value is None else from_cents(value)


class InboxEntry(SQLModel, table=True):
    """An event this participant has applied; its presence makes a redelivery a no-op.

    `stream_seq` is where the event was consumed from: a row is pruned only once the consumer's
    ack floor has passed it (nothing at or below the floor is delivered again), see outbox.prune.
    """

    __tablename__ = "saga_inbox"
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=64)
    sale_id: int
    handled_at: datetime
    stream_seq: int | None = Field(default=None, sa_type=BigInteger)


class OutboxEntry(SQLModel, table=True):
    """An event decided in a handler's transaction, published by the relay after the commit.

    `cause_id` is the consumed event whose handler decided it (None for a control request): a
    redelivery of that event republishes its unsent rows before it is acked. `claimed_by` and
    `claimed_until` are the lease of the process sweeping an unsent row (recovery.claim_unsent).
    """

    __tablename__ = "saga_outbox"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=64)
    subject: str = Field(max_length=255)
    payload: bytes = Field(sa_type=LargeBinary)
    created_at: datetime
    sent_at: datetime | None = Field(default=None, index=True)
    # No index of its own: it is only asked for among unsent rows, which the sent_at index finds.
    cause_id: str | None = Field(default=None, max_length=64)
    claimed_by: str | None = Field(default=None, max_length=128)
    claimed_until: datetime | None = None


class RuntimeMeta(SQLModel, table=True):
    """Small facts the runtime keeps about its database (for instance: seed rows inserted)."""

    __tablename__ = "saga_meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255)


RUNTIME_TABLES = (InboxEntry, OutboxEntry, RuntimeMeta)


def utc_datetime() -> datetime:
    return datetime.now(timezone.utc)


# Key of the PostgreSQL advisory lock that serialises schema creation and seeding across the
# replicas of a participant starting at the same time (any constant; "sagactl" in ASCII).
SCHEMA_LOCK_KEY = 0x736167616374


def make_engine(url: str, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0) -> Engine:
    """Create the engine for a participant database URL (SQLite tuned for one writer at a time)."""
    if not url.startswith("sqlite"):
        return create_engine(postgres_driver(url), pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below issue BEGIN IMMEDIATE instead of pysqlite's lazy BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        use_wal(cursor, busy_timeout_s)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # On the driver connection, not exec_driver_sql: SQLAlchemy's execution path cost 15-20 µs
        # of every transaction (a batch of one event: 150 -> 130 µs, docs/performance.md). Its
        # errors are the driver's own, which settle.is_transient reads as they are.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")

    return engine


def use_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL (it stays so). Replicas opening a new file together contend for
    the exclusive lock this takes, and SQLite answers "locked" without waiting: ask again."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def postgres_driver(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (SQLAlchemy's default is psycopg2)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def lock_schema(connection: Connection) -> None:
    """Serialise schema creation and seeding with other replicas until this transaction ends.

    SQLite needs nothing here: every transaction begins IMMEDIATE, which already excludes
    other writers of the file.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


class OutdatedSchema(RuntimeError):
    """The database was created by an older sagactl whose runtime tables lack columns."""


def create_schema(engine: Engine, tables: Iterable[type[SQLModel]]) -> None:
    """Create the runtime's tables and the participant's own; existing tables are kept.

    Raises OutdatedSchema when an existing runtime table lacks a column this version needs
    (there is no migration: start from a fresh database).
    """
    wanted = [*RUNTIME_TABLES, *tables]
    with engine.begin() as connection:
        lock_schema(connection)
        SQLModel.metadata.create_all(connection, tables=[t.__table__ for t in wanted])  # type: ignore[attr-defined]
        inspector = inspect(connection)
        for table in RUNTIME_TABLES:
            name = table.__tablename__  # type: ignore[attr-defined]
            have = {column["name"] for column in inspector.get_columns(name)}
            missing = sorted({c.name for c in table.__table__.columns} - have)  # type: ignore[attr-defined]
            if missing:
                raise OutdatedSchema(
                    f"{name} lacks column(s) {', '.join(missing)}: the database was made by an older sagactl; "
                    "start from a fresh database (delete the file or drop the database)"
                )


def seed_once(engine: Engine, rows: Iterable[SQLModel]) -> bool:
    """Insert the seed rows the first time this database starts; later starts change nothing."""
    with Session(engine) as session:
        lock_schema(session.connection())
        if session.get(RuntimeMeta, "seeded") is not None:
            return False
        for row in rows:
            session.add(row)
        session.add(RuntimeMeta(key="seeded", value=utc_datetime().isoformat()))
        session.commit()
    return True


def plain(value: Any) -> Any:
    """A column value as JSON-friendly data: money as a string, enums by name."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def table_rows(session: Session, table: type[SQLModel]) -> list[dict[str, Any]]:
    """Every row of a table, ordered by primary key, as plain dicts."""
    key = inspect(table).primary_key[0]
    rows = session.exec(select(table).order_by(key)).all()
    columns = [c.key for c in inspect(table).columns]
    return [{name: plain(getattr(row, name)) for name in columns} for row in rows]
