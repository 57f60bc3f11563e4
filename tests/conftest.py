"""Fixtures: participant systems in temp dirs.

`nats_server`, `nats_url` and `saga_harness` come from sagactl's own pytest plugin
(sagactl/testing/plugin.py), the same fixtures a user gets for testing a participant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from sagactl.statedir import StateDir
from sagactl.supervisor import Supervisor, nats_server_binary


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
def system(state: StateDir) -> Iterator[Supervisor]:
    """The embedded NATS and the three participants, as `sagactl up` starts them."""
    supervisor = Supervisor(state)
    try:
        supervisor.up(None)
        yield supervisor
    finally:
        supervisor.down()
