"""Fixtures: participant systems in temp dirs.

`system` (one per test, on each backend), `module_system` (one SQLite system shared by a
module's read-only tests), `state`. `nats_server`, `nats_url` and `saga_harness` come from
sagactl's own pytest plugin (sagactl/testing/plugin.py), the same fixtures a user gets for
testing a participant: a test of one participant alone uses `saga_harness`. Helpers: `commands`
(the CLI in process), `polling` (waiting with deadlines), `observing` (the CLI as a process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from backends import PostgresBackend, SqliteBackend, backends_for, db_backend, db_urls  # noqa: F401 (db_backend is a fixture)

from participants.runtime.loader import BUILT_IN
from sagactl.system.processes import nats_server_binary
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that touches a participant's database (through `db_backend`, `system`, ...) runs
    once per backend, or on SQLite alone when marked `sqlite_only`."""
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", backends_for(metafunc.definition), indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _nats_server_available() -> None:
    try:
        nats_server_binary()
    except Exception as exc:  # fail fast with the reason, not with a hundred connection errors
        pytest.exit(f"nats-server is missing: {exc}", returncode=3)


@pytest.fixture(autouse=True)
def _no_leaked_settings() -> Iterator[None]:
    """Fail a test that leaves a SAGACTL_* variable changed in this process (and undo it): the
    in-process CLI and `Supervisor.nats_urls` set some, and a leaked one silently reconfigures
    every later test. Autouse, so it is set up first and checks after `monkeypatch` has undone its part."""
    before = {k: v for k, v in os.environ.items() if k.startswith("SAGACTL_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("SAGACTL_")}
    if after != before:
        for name in after.keys() - before.keys():
            del os.environ[name]
        os.environ.update(before)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        pytest.fail(f"the test left {', '.join(changed)} changed in the environment", pytrace=False)


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir.at(tmp_path / "state")


@pytest.fixture
def system(state: StateDir, db_backend: SqliteBackend | PostgresBackend) -> Iterator[Supervisor]:
    """The embedded NATS and the three participants, as `sagactl up` starts them, on each backend."""
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, db_urls=db_urls(db_backend, list(BUILT_IN)))
        yield supervisor
    finally:
        supervisor.down(kill=True)


@pytest.fixture(scope="module")
def module_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    """One system (SQLite) shared by the tests of a module that only read it: cheaper than a
    `system` each. A test that changes it (a sale, a stop) takes `system` instead."""
    supervisor = Supervisor(StateDir.at(tmp_path_factory.mktemp("shared") / "state"))
    try:
        supervisor.up(None)
        yield supervisor
    finally:
        supervisor.down(kill=True)


@pytest.fixture
def fast_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s ack wait for the participants this test starts: an event held by a killed one comes back at once."""
    monkeypatch.setenv("SAGACTL_ACK_WAIT", "1")


@pytest.fixture
def fast_system(fast_ack: None, system: Supervisor) -> Supervisor:
    """`system` with a 1 s ack wait (`fast_ack` is set up first: fixtures run in the order requested)."""
    return system
