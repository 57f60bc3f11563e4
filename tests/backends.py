"""The database backends the suite runs against: SQLite files, and PostgreSQL when configured.

One set of tests, the backend chosen by configuration: fixtures that touch a participant's
database take `db_backend`, which is parametrized over `sqlite` and `postgres` (by
`pytest_generate_tests` in conftest.py; `sqlite` alone for tests marked `sqlite_only`). The PostgreSQL
half needs `SAGACTL_TEST_POSTGRES_URL` (a server URL whose role may create databases, e.g.
`postgresql://postgres@127.0.0.1:5432/test`); each test gets databases of its own, created for it
and dropped after it. Without the URL those tests are skipped with the reason, unless
`SAGACTL_REQUIRE_POSTGRES=1` (set by `.ci/run`), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

POSTGRES_URL_ENV = "SAGACTL_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "SAGACTL_REQUIRE_POSTGRES"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class SqliteBackend:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def url(self, participant: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.folder / participant}.db"

    def close(self) -> None:
        pass


class PostgresBackend:
    """One fresh database per participant per test on the configured server; dropped at the end."""

    name = "postgres"

    def __init__(self, server_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.server = make_url(server_url).set(drivername="postgresql+psycopg")
        self.prefix = f"sagactl_t{uuid.uuid4().hex[:10]}"
        self.created: dict[str, str] = {}

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        plain = self.server.set(drivername="postgresql")
        return psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True, connect_timeout=5)

    def url(self, participant: str) -> str:
        if participant not in self.created:
            database = f"{self.prefix}_{participant}"
            with self._admin() as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            self.created[participant] = database
        return self.server.set(database=self.created[participant]).render_as_string(hide_password=False)

    def close(self) -> None:
        if not self.created:
            return
        with self._admin() as admin:
            for database in self.created.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.created.clear()


def postgres_server_url() -> str:
    """The configured server, or skip (fail in CI) with the reason."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    reason = f"PostgreSQL tests need {POSTGRES_URL_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 forbids skipping them")
    pytest.skip(reason)


def backends_for(definition: pytest.Function) -> list:  # type: ignore[type-arg]
    """The backends a test runs on: SQLite alone when it is marked `sqlite_only` (CLI and view
    tests: what they show does not depend on the database), else every backend."""
    return ["sqlite"] if definition.get_closest_marker("sqlite_only") else BACKENDS


@pytest.fixture
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteBackend | PostgresBackend]:
    """Where participants keep their tables in this test: SQLite files or PostgreSQL databases."""
    backend: SqliteBackend | PostgresBackend
    if request.param == "postgres":
        backend = PostgresBackend(postgres_server_url())
    else:
        backend = SqliteBackend(tmp_path / "db")
    try:
        yield backend
    finally:
        backend.close()


def db_urls(backend: SqliteBackend | PostgresBackend, participants: list[str]) -> dict[str, str]:
    """`--db-url` values for a system; SQLite keeps the supervisor's default files in the state dir."""
    if backend.name == "sqlite":
        return {}
    return {name: backend.url(name) for name in participants}


def refuse_inserts(backend: SqliteBackend | PostgresBackend, state_root: Path, participant: str, table: str,
                   message: str) -> Callable[[], None]:
    """Make a participant's database refuse new rows of `table` with `message` (a trigger, as an
    operator's mistake would); return the function that lifts it. `state_root`: where a system's
    SQLite files live (the supervisor's default, used on the SQLite backend)."""
    if backend.name == "sqlite":
        connection = sqlite3.connect(state_root / f"{participant}.db", isolation_level=None)
        connection.execute(f"CREATE TRIGGER frozen BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END")

        def lift_sqlite() -> None:
            connection.execute("DROP TRIGGER frozen")
            connection.close()

        return lift_sqlite
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(backend.url(participant)).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE FUNCTION frozen() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql")
        connection.execute(f"CREATE TRIGGER frozen BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION frozen()")

    def lift_postgres() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP TRIGGER frozen ON {table}")

    return lift_postgres
