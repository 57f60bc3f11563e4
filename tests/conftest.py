"""Fixtures: a real nats-server on a free loopback port, participant systems in temp dirs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from backends import PostgresBackend, SqliteBackend, db_backend, db_urls  # noqa: F401 (db_backend is a fixture)
from participants.runtime.loader import BUILT_IN
from sagactl.statedir import StateDir
from sagactl.supervisor import Supervisor, free_port, nats_server_binary, port_open, stop_pid


@pytest.fixture(scope="session", autouse=True)
def _nats_server_available() -> None:
    try:
        nats_server_binary()
    except Exception as exc:  # fail fast with the reason, not with a hundred connection errors
        pytest.exit(f"nats-server is missing: {exc}", returncode=3)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A JetStream-enabled nats-server of our own; stopped by pid at the end."""
    port = free_port()
    store = tmp_path / "nats-store"
    process = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            assert process.poll() is None, "nats-server exited at start"
            assert time.monotonic() < deadline, "nats-server did not open its port"
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_pid(process.pid)
        process.wait(timeout=5)


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
