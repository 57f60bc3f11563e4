"""`sagactl top` headless: the real command in a pseudo-terminal (its own controlling terminal, so
keys and Ctrl-C are real), against a real system; what it draws is read back from the pty."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import sys
import termios
import threading

from typing import Iterator

import pytest
from commands import runner, sagactl
from polling import wait_for

from participants.runtime.loader import BUILT_IN
from sagactl.cli.main import app
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
LEAVE_ALTERNATE_SCREEN = b"\x1b[?1049l"


class Terminal:
    """`sagactl top ARGS` on a 160x60 pseudo-terminal; everything it wrote, collected live."""

    def __init__(self, supervisor: Supervisor, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: size the terminal, become sagactl
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 160, 0, 0))
            env = {**os.environ, "SAGACTL_STATE_DIR": str(supervisor.state.root), "TERM": "xterm-256color"}
            env.pop("COLUMNS", None)
            os.execve(sys.executable, [sys.executable, "-c", "from sagactl.cli.main import main; main()", "top", *args], env)
        self.raw = bytearray()
        self.lock = threading.Lock()
        self.returncode: int | None = None
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            with self.lock:
                self.raw.extend(data)

    def text(self) -> str:
        with self.lock:
            return ANSI.sub("", self.raw.decode(errors="replace"))

    def since(self, mark: int) -> str:
        with self.lock:
            return ANSI.sub("", self.raw[mark:].decode(errors="replace"))

    def mark(self) -> int:
        with self.lock:
            return len(self.raw)

    def press(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait_exit(self, timeout: float = 15.0) -> int:
        def exited() -> bool:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode is not None

        wait_for(exited, what="sagactl top to exit", timeout=timeout)
        return int(self.returncode)  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def sqlite_system(state: StateDir) -> Iterator[Supervisor]:
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, participants=dict(BUILT_IN))
        yield supervisor
    finally:
        supervisor.down(kill=True)


def submit(supervisor: Supervisor, quantity: int) -> int:
    result = sagactl(supervisor, "submit", "--product-id", "1", "--user-id", "1", "--value", "1.00",
                     "--quantity", str(quantity), "--wait", "--json")
    assert result.exit_code in (0, 1), result.output
    return int(json.loads(result.stdout)["sale_id"])


def test_top_draws_the_system_opens_a_trace_survives_a_nats_restart_and_quits_clean(sqlite_system: Supervisor) -> None:
    submit(sqlite_system, 1)
    canceled = submit(sqlite_system, 1000)  # out of stock
    terminal = Terminal(sqlite_system, "--interval", "0.3")
    try:
        wait_for(lambda: all(w in terminal.text() for w in ("latest sagas", "CANCELED", "out of stock", "FINALIZED", "inventory")),
                 what="top's first frames")
        assert "NATS ok" in terminal.text()

        mark = terminal.mark()
        terminal.press(b"\r")  # the selected saga is the latest: the canceled one
        wait_for(lambda: f"sale {canceled} · esc: back" in terminal.since(mark), what="the trace of the selected saga")
        assert "CANCELED_SALE" in terminal.since(mark)
        terminal.press(b"\x1b")
        mark = terminal.mark()
        wait_for(lambda: "latest sagas" in terminal.since(mark), what="the main screen again")

        sqlite_system.stop_nats()
        mark = terminal.mark()
        wait_for(lambda: "retrying" in terminal.since(mark), what="top to say NATS is away")
        sqlite_system.start_nats()  # on the same port, the same store
        later = wait_for(lambda: _submitted(sqlite_system), what="a sale once NATS is back")
        mark = terminal.mark()
        wait_for(lambda: re.search(rf"\b{later}\s*│\s*FINALIZED", terminal.since(mark)) and "NATS ok" in terminal.since(mark),
                 what="the sale submitted after the restart, on a healthy screen")

        terminal.press(b"q")
        assert terminal.wait_exit() == 0
        assert LEAVE_ALTERNATE_SCREEN in bytes(terminal.raw)[-64:]
    finally:
        terminal.kill()


def _submitted(supervisor: Supervisor) -> int | None:
    try:
        return submit(supervisor, 1)
    except AssertionError:  # the sale service not reconnected yet
        return None


def test_ctrl_c_leaves_the_terminal_as_it_was(sqlite_system: Supervisor) -> None:
    terminal = Terminal(sqlite_system, "--interval", "0.3")
    try:
        wait_for(lambda: "latest sagas" in terminal.text(), what="top's first frame")
        terminal.press(b"\x03")  # Ctrl-C, through the terminal: SIGINT to top
        assert terminal.wait_exit() == 0
        assert LEAVE_ALTERNATE_SCREEN in bytes(terminal.raw)[-64:]
        lflag = termios.tcgetattr(terminal.fd)[3]
        assert lflag & termios.ECHO and lflag & termios.ICANON  # echo and line mode back on
    finally:
        terminal.kill()


def test_once_prints_one_frame_and_bad_input_is_one_line(sqlite_system: Supervisor) -> None:
    submit(sqlite_system, 1)
    result = runner.invoke(app, ["top", "--once", "--interval", "0.2", "--state-dir", str(sqlite_system.state.root)],
                           env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "FINALIZED" in result.stdout and "payment" in result.stdout and "sagactl-top" not in result.stdout
    bad = runner.invoke(app, ["top", "--interval", "0", "--state-dir", str(sqlite_system.state.root)])
    assert bad.exit_code == 2 and "--interval must be > 0" in bad.output


def test_a_saga_waiting_on_a_stopped_participant_is_shown_stuck(sqlite_system: Supervisor) -> None:
    sqlite_system.stop_participant("payment")
    result = sagactl(sqlite_system, "submit", "--product-id", "1", "--user-id", "1", "--value", "1.00", "--quantity", "1", "--json")
    assert result.exit_code == 0, result.output
    sale_id = json.loads(result.stdout)["sale_id"]

    def stuck_table() -> str | None:
        frame = runner.invoke(app, ["top", "--once", "--interval", "0.1", "--stuck-after", "0.5",
                                    "--state-dir", str(sqlite_system.state.root)], env={"COLUMNS": "160"})
        assert frame.exit_code == 0, frame.output
        stuck = frame.stdout.split("stuck sagas")[1]
        return stuck if re.search(rf"\b{sale_id}\s*│\s*PENDING\s*│\s*UPDATED_INVENTORY", stuck) else None

    wait_for(stuck_table, what=f"sale {sale_id} among the stuck sagas (payment is stopped)")

