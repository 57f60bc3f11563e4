"""Helpers for the tests of tail, trace, logs and the live views: a CLI in a subprocess whose
output lines are collected as they come."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

from commands import sagactl
from polling import wait_for

from sagactl.system.supervisor import Supervisor

WIDE = {"COLUMNS": "160"}  # Rich reads the width at each print; tables then need no wrapping


def wide(supervisor: Supervisor, *args: str) -> Any:
    """`sagactl ARGS` on a 160-column terminal."""
    return sagactl(supervisor, *args, env=WIDE)


def submit(supervisor: Supervisor, product: int, user: int, value: str, quantity: int) -> dict[str, Any]:
    result = sagactl(supervisor, "submit", "--product-id", str(product), "--user-id", str(user), "--value", value,
                     "--quantity", str(quantity), "--wait", "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


class Background:
    """`sagactl ARGS` in a subprocess (a real process, so signals are real); lines collected live."""

    def __init__(self, supervisor: Supervisor, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "SAGACTL_STATE_DIR": str(supervisor.state.root), **WIDE, **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from sagactl.cli.main import main; main()", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(s, into), daemon=True)
                         for s, into in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout) if line.startswith("{")]

    def interrupt(self, timeout: float = 20.0, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (or `sig`), then the exit code; fails when the process does not end in time."""
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def watch_a_sale(supervisor: Supervisor, *args: str, ready: Callable[[Background], Any],
                 shown: Callable[[Background], Any]) -> Background:
    """Start `sagactl ARGS`; once `ready`, submit a sale that finalizes; once `shown`, Ctrl-C (exit 0)."""
    process = Background(supervisor, *args)
    try:
        wait_for(lambda: ready(process), what=f"`sagactl {' '.join(args)}` to start")
        assert submit(supervisor, 1, 1, "20.00", 2)["status"] == "FINALIZED"
        wait_for(lambda: shown(process), what=f"`sagactl {' '.join(args)}` to show the sale")
        assert process.interrupt() == 0
    finally:
        process.stop()
    assert not any("Traceback" in line for line in process.stderr)
    return process
