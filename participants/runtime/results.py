"""PostgreSQL: many statements sent in one round trip, each result read as a cursor's.

psycopg's `executemany` in a pipeline costs the participant 20-26 µs of CPU a statement on the
2-core machine (it polls the socket and adapts each one through the cursor machinery); the same
prepared statements sent on the libpq connection underneath (`psycopg.pq`, psycopg's documented
libpq wrapper), one pipeline and one sync for all, cost 3 µs (docs/performance.md). Parameters
are dumped and results loaded by psycopg's own `Transformer`, so values come back as the cursor
gives them. tests/test_postgres_batches.py holds both paths equal.
"""

from __future__ import annotations

import select
from typing import Any, Iterator, Sequence
from weakref import WeakKeyDictionary



class Result:
    """One statement's result out of a shared round trip: `rowcount`, `fetchone()`,
    `fetchall()`, iteration and `description`, as on a cursor."""

    __slots__ = ("rowcount", "description", "_rows", "_next")

    def __init__(self, rowcount: int, description: Any, rows: list[Any]) -> None:
        self.rowcount, self.description, self._rows, self._next = rowcount, description, rows, 0

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


# The statements prepared on each connection (they live as long as it does).
_prepared: WeakKeyDictionary[Any, dict[bytes, bytes]] = WeakKeyDictionary()


def run_each(driver: Any, statements: Sequence[tuple[bytes, Sequence[Any]]]) -> list[Result]:
    """Run (`sql.numbered` SQL, values) statements in one round trip, in order; each one's result.

    Inside the transaction psycopg began on `driver` (begun here if it was not yet). The first
    statement that fails raises its error (the transaction is then aborted, as with a cursor).
    """
    from psycopg import errors, pq
    from psycopg.adapt import PyFormat, Transformer

    pgconn = driver.pgconn
    if pgconn.transaction_status == pq.TransactionStatus.IDLE and not driver.autocommit:
        driver.execute("SELECT 1")  # psycopg's own BEGIN, with the connection's isolation settings
    names = _prepared.setdefault(driver, {})
    for sql, _ in statements:
        if sql not in names:
            name = b"sagactl_%d" % len(names)
            prepared = pgconn.prepare(name, sql)
            if prepared.status != pq.ExecStatus.COMMAND_OK:
                raise errors.error_from_result(prepared, encoding=driver.info.encoding)
            names[sql] = name
    transformer = Transformer(driver)
    text = PyFormat.TEXT
    pgconn.enter_pipeline_mode()
    try:
        raw = _send(pgconn, [(names[sql], transformer.dump_sequence(values, [text] * len(values))) for sql, values in statements])
    except BaseException:
        try:  # the connection broke (it is reset by its keeper) or we were interrupted: say why, not this
            pgconn.exit_pipeline_mode()
        except Exception:
            pass
        raise
    pgconn.exit_pipeline_mode()
    results = []
    for result in raw:
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            failed = next(r for r in raw if r.status == pq.ExecStatus.FATAL_ERROR)
            raise errors.error_from_result(failed, encoding=driver.info.encoding)
        rows: list[Any] = []
        description = None
        if result.status == pq.ExecStatus.TUPLES_OK:
            transformer.set_pgresult(result)
            rows = transformer.load_rows(0, result.ntuples, tuple)
            description = [(result.fname(n) or b"").decode() for n in range(result.nfields)]
            count = result.ntuples
        else:
            tuples = result.command_tuples
            count = tuples if tuples is not None else -1
        results.append(Result(count, description, rows))
    return results


def _send(pgconn: Any, prepared: list[tuple[bytes, list[Any]]]) -> list[Any]:
    """Send prepared statements and a sync on a connection in pipeline mode; their results."""
    from psycopg import pq

    for name, params in prepared:
        pgconn.send_query_prepared(name, params)
    pgconn.pipeline_sync()
    while pgconn.flush():
        select.select([], [pgconn.socket], [])
    raw = []
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            continue
        if result.status == pq.ExecStatus.PIPELINE_SYNC:
            return raw
        raw.append(result)
