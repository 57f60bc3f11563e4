"""`sagactl` from a test, in process: Typer's CliRunner with the state dir of the system under test.

(A real process, for signals and live output: `observing.Background`.)
"""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner, Result

from sagactl.cli.main import app
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

runner = CliRunner()


def sagactl(system: Supervisor | StateDir | None, *args: str, env: dict[str, Any] | None = None) -> Result:
    """`sagactl ARGS --state-dir <the system's>` (no --state-dir for None); stdout and stderr apart."""
    state = system.state if isinstance(system, Supervisor) else system
    where = ["--state-dir", str(state.root)] if state is not None else []
    return runner.invoke(app, [*args, *where], env=env)
