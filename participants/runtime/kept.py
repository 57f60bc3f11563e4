"""The one database connection a participant keeps open for its hot path, checked before use.

All database work runs on the event-loop thread, one transaction after the other, so one kept
connection saves a pool checkout and reset per batch. But a kept connection can die while it
is idle (PostgreSQL restarted, its backend terminated) and the pool's pre-ping never sees it:
before each use its socket is looked at (a server that ended the session has said so there),
and after a pause it is also asked a trivial query, so the first request after a lost
connection does not fail. After the database itself failed (read-only, I/O error, lost), the
engine's pool is emptied too: a file fixed meanwhile is opened afresh, not through a
connection that was opened read-only.
"""

from __future__ import annotations

import select
import time

from sqlalchemy import Connection, Engine

# Under load the connection is used every few milliseconds and never checked; after this long
# idle a check costs one round trip that nobody waits for.
CHECK_AFTER_IDLE_S = 1.0


class KeptConnection:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._used_at = time.monotonic()
        # A SQLite file does not go away while idle (and its BEGIN takes the write lock).
        self._check_idle = engine.dialect.name != "sqlite"

    def get(self) -> Connection:
        """The kept connection, opened (or reopened) when it is missing, closed or found dead."""
        connection = self._connection
        now = time.monotonic()
        if self._check_idle and connection is not None and not (connection.closed or connection.invalidated):
            if _server_spoke(connection) or (now - self._used_at > CHECK_AFTER_IDLE_S and not _answers(connection)):
                self.reset(reopen=True)  # dead while idle: open a new one below
                connection = None
        if connection is None or connection.closed or connection.invalidated:
            connection = self._connection = self.engine.connect()
        self._used_at = now
        return connection

    def reset(self, reopen: bool = False) -> None:
        """Close the kept connection (after a failed batch: the next one starts afresh); with
        `reopen`, also every pooled one, because the database itself failed."""
        if self._connection is not None:
            try:
                self._connection.invalidate() if reopen else self._connection.close()
            except Exception:
                pass
        self._connection = None
        if reopen:
            self.engine.dispose()


def _server_spoke(connection: Connection) -> bool:
    """Between transactions the server says nothing unless it ends the session (a terminated
    backend, a shutdown): bytes or EOF waiting on the socket mean the connection is gone. One
    zero-timeout select, no round trip."""
    try:
        fileno = connection.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        readable, _, _ = select.select([fileno], [], [], 0)
    except Exception:
        return True
    return bool(readable)


def _answers(connection: Connection) -> bool:
    try:
        connection.exec_driver_sql("SELECT 1")
        connection.rollback()
        return True
    except Exception:
        return False
