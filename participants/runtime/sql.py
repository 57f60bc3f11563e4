"""Hand-written SQL on the driver connection of a handler's transaction, for the hot path.

A handler's ORM statement costs 50 to 100 µs of SQLAlchemy work per call; the same statement
on the DBAPI cursor costs a few µs (docs/performance.md has the measurements). A `Statement` is
written once with `:name` parameters and runs on the session's own connection, inside the
runtime's transaction: nothing changes about what commits together.

Parameters should be plain ints and strings (money as cents), so every driver stores the same.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

_CURSOR = "sagactl.lean.cursor"
_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_cursor(session: OrmSession, _transaction: Any) -> None:
    # A cursor belongs to the connection of one transaction; the next one may use another.
    session.info.pop(_CURSOR, None)


class Statement:
    """One SQL statement with `:name` parameters, translated once per database dialect."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self._by_style: dict[str, str] = {}

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

    def run(self, session: Session, **params: Any) -> Any:
        """Execute in the session's transaction; return the DBAPI cursor (rowcount, fetchone ...).

        The cursor is shared by the session's lean statements: read what you need from it
        before running the next one.
        """
        # ORM rows added before must be visible to this statement. Session.new and .deleted build
        # a set on every call (2-3 % of a participant under load); the dicts behind them do not.
        if session._new or session._deleted:
            session.flush()
        cached = session.info.get(_CURSOR)
        if cached is None:
            connection = session.connection()
            cached = (connection.connection.driver_connection.cursor(), connection.dialect.name)  # type: ignore[union-attr]
            session.info[_CURSOR] = cached
        cursor, dialect = cached
        cursor.execute(self._for(dialect), params)
        return cursor

    def run_many(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        """`executemany` on a Core connection's driver cursor (the runtime's inbox and outbox rows)."""
        if rows:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(self._for(connection.dialect.name), rows)
            cursor.close()

    def rows(self, connection: Connection, **params: Any) -> list[Any]:
        """Run a query on a Core connection's driver cursor; all its rows."""
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(self._for(connection.dialect.name), params)
        result = cursor.fetchall()
        cursor.close()
        return result


def db_time(connection: Connection, moment: datetime) -> Any:
    """A timestamp as SQLAlchemy's DateTime column stores it: naive ISO text in SQLite."""
    if connection.dialect.name == "sqlite":
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment
