"""Fixtures: participant systems in temp dirs.

`nats_server`, `nats_url` and `saga_harness` come from sagactl's own pytest plugin
(sagactl/testing/plugin.py), the same fixtures a user gets for testing a participant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from backends import PostgresBackend, SqliteBackend, db_backend, db_urls  # noqa: F401 (db_backend is a fixture)

from participants.runtime.loader import BUILT_IN
from sagactl.system.processes import nats_server_binary, read_pid
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor


@pytest.fixture(scope="session", autouse=True)
def _nats_server_available() -> None:
    try:
        nats_server_binary()
    except Exception as exc:  # fail fast with the reason, not with a hundred connection errors
        pytest.exit(f"nats-server is missing: {exc}", returncode=3)


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
        supervisor.down()


@pytest.fixture
def fast_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s ack wait for the participants this test starts: an event held by a killed one comes back at once."""
    monkeypatch.setenv("SAGACTL_ACK_WAIT", "1")


@pytest.fixture
def fast_system(fast_ack: None, system: Supervisor) -> Supervisor:
    """`system` with a 1 s ack wait (`fast_ack` is set up first: fixtures run in the order requested)."""
    return system


@pytest.fixture
def lone_participant(nats_url: str, state: StateDir) -> Iterator[Callable[..., int]]:
    """Start one built-in participant against the test's own nats-server: `start("inventory", SAGACTL_X="1")`.

    Calling it again restarts the participant if it died (with the environment given then).
    """
    supervisor = Supervisor(state)

    def start(name: str, **env: str) -> int:
        supervisor.up(nats_url, participants={name: BUILT_IN[name]}, extra_env={name: env})
        return int(read_pid(state.pid_file(name)) or 0)

    try:
        yield start
    finally:
        supervisor.down()
