"""Hand-written SQL on the driver connection of a handler's transaction, for the hot path.

A handler's ORM statement costs 50 to 100 µs of SQLAlchemy work per call; the same statement
on the DBAPI cursor costs a few µs (docs/performance.md has the measurements). A `Statement` is
written once with `:name` parameters and runs on the session's own connection, inside the
runtime's transaction: nothing changes about what commits together.

Parameters should be plain ints and strings (money as cents), so every driver stores the same.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from participants.runtime.interleave import TURNS
from participants.runtime.results import Result, run_each

_CURSOR = "sagactl.lean.cursor"
_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_cursor(session: OrmSession, _transaction: Any) -> None:
    # A cursor belongs to the connection of one transaction; the next one may use another.
    session.info.pop(_CURSOR, None)


def numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """`:name` parameters as PostgreSQL's `$1, $2 ...`; the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"
    return _NAMED.sub(number, sql).encode(), tuple(names)


class Statement:
    """One SQL statement with `:name` parameters, translated once per database dialect."""

    def __init__(self, sql: str, plan_each_time: bool = False) -> None:
        """`plan_each_time`: on PostgreSQL, never run as a prepared statement. For a statement
        over a parameter array on a growing table: a prepared plan chosen while the table was
        small keeps scanning all of it (docs/performance.md), a fresh plan uses its index."""
        self.sql = sql
        self._by_style: dict[str, str] = {}
        self._numbered: tuple[bytes, tuple[str, ...]] | None = None
        self._options = {"prepare": False} if plan_each_time else {}

    def _for(self, dialect: str) -> str:
        text = self._by_style.get(dialect)
        if text is None:
            if dialect == "sqlite":  # sqlite3 takes :name as it is
                text = self.sql
            elif dialect == "postgresql":  # psycopg takes %(name)s
                text = _NAMED.sub(r"%(\1)s", self.sql.replace("%", "%%"))
            else:
                raise NotImplementedError(f"lean SQL does not support {dialect}")
            self._by_style[dialect] = text
        return text

    def _values(self, params: dict[str, Any]) -> tuple[bytes, list[Any]]:
        """PostgreSQL's numbered form of the statement and its values in that order."""
        if self._numbered is None:
            self._numbered = numbered(self.sql)
        sql, names = self._numbered
        return sql, [params[name] for name in names]

    def run(self, session: Session, **params: Any) -> Any:
        """Execute in the session's transaction; return the DBAPI cursor (rowcount, fetchone ...).

        The cursor is shared by the session's lean statements: read what you need from it
        before running the next one. In a batch on PostgreSQL the statement waits for the other
        handlers' to go to the server with it (participants/runtime/interleave.py).
        """
        # ORM rows added before must be visible to this statement. Session.new and .deleted build
        # a set on every call (2-3 % of a participant under load); the dicts behind them do not.
        if session._new or session._deleted:
            session.flush()
        turns = session.info.get(TURNS)
        if turns is not None:
            return turns.execute(*self._values(params))
        cached = session.info.get(_CURSOR)
        if cached is None:
            connection = session.connection()
            cached = (connection.connection.driver_connection.cursor(), connection.dialect.name)  # type: ignore[union-attr]
            session.info[_CURSOR] = cached
        cursor, dialect = cached
        cursor.execute(self._for(dialect), params)
        return cursor

    def run_each(self, session: Session, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Run once for each parameter set, in order; each one's result (`rowcount`, `fetchone()`,
        `fetchall()`). On PostgreSQL they go in one round trip instead of one each."""
        if not rows:
            return []
        if session._new or session._deleted:
            session.flush()
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            return run_each(connection.connection.driver_connection, [self._values(params) for params in rows])  # type: ignore[union-attr]
        results = []
        for params in rows:
            cursor = self.run(session, **params)
            results.append(Result(cursor.rowcount, cursor.description, cursor.fetchall() if cursor.description else []))
        return results

    def run_many(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        """`executemany` on a Core connection's driver cursor (the runtime's inbox and outbox rows)."""
        if rows:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(self._for(connection.dialect.name), rows)
            cursor.close()

    def rows(self, connection: Connection, **params: Any) -> list[Any]:
        """Run a query on a Core connection's driver cursor; all its rows."""
        cursor = self.execute(connection, **params)
        result = cursor.fetchall()
        cursor.close()
        return result

    def execute(self, connection: Connection, **params: Any) -> Any:
        """Run once on a Core connection's driver cursor; the cursor."""
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        dialect = connection.dialect.name
        cursor.execute(self._for(dialect), params, **(self._options if dialect == "postgresql" else {}))
        return cursor


def db_time(connection: Connection, moment: datetime) -> Any:
    """A timestamp as SQLAlchemy's DateTime column stores it: naive ISO text in SQLite."""
    if connection.dialect.name == "sqlite":
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def one_of(connection: Connection, column: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`column IN (values)` as SQL with its parameters: one array parameter on PostgreSQL (a
    list of 64 parameters cost its planner about 1 ms a query here), one each on SQLite."""
    if connection.dialect.name == "postgresql":
        return f"{column} = ANY(:values)", {"values": list(values)}
    names = ", ".join(f":v{n}" for n in range(len(values)))
    return f"{column} IN ({names})", {f"v{n}": v for n, v in enumerate(values)}


@contextmanager
def one_round_trip(connection: Connection) -> Iterator[None]:
    """Statements whose results nobody reads, sent together: one round trip on PostgreSQL
    (psycopg's pipeline mode; errors are raised at the end of the block). SQLite has no round trips."""
    if connection.dialect.name == "postgresql":
        with connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
            yield
    else:
        yield
