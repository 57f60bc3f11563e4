"""Participant processes forked from one preloaded interpreter per state directory.

A fresh `python -m participants.runtime REF` spends about 0.7 s of CPU importing its libraries
before it does anything (0.8 s to ready on the 2-core machine); forked from an interpreter that
imported them once (participants/runtime/forkserver.py) it is ready in about 0.1 s. So the first
participant a supervisor starts in a state directory starts that interpreter, and every later
one, replicas and restarts included, is a fork of it.

Each forked process becomes this process's own child (it makes itself a child subreaper, Linux's
`PR_SET_CHILD_SUBREAPER`), so `ForkedProcess` waits for it and reads its exit status (a negative
signal number when killed) as `subprocess.Popen` does. The server carries the state directory
in its environment, as every process of it does, and stops when the supervisor's `down` stops it
or when the process that started it exits (its stdin closes). Wherever this cannot work (not
Linux, the server does not start, `SAGACTL_FORK=0`, an interpreter setting the fork could not
honour), the process is spawned as before; nothing else changes.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Protocol

import orjson

from sagactl.system.processes import stop_pid

# How long a server may take to import the runtime and say it is ready (a busy machine).
SERVER_READY_TIMEOUT_S = 20.0
REPLY_TIMEOUT_S = 10.0
_PR_SET_CHILD_SUBREAPER = 36


class ParticipantProcess(Protocol):
    """What the supervisor and the harness need of a started participant process."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ForkedProcess:
    """A participant forked by the server and adopted by this process: `Popen`'s poll and wait."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (pid_alive): its status is gone, as Popen says
                self.returncode = 0
            else:
                if pid != 0:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


def _became_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _startup_settings(env: dict[str, str]) -> dict[str, str]:
    """The settings an interpreter reads only when it starts (PYTHONPATH is applied after a fork)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") and k != "PYTHONPATH"}


class ForkServer:
    """One preloaded interpreter for one state directory (`participants.runtime.forkserver`)."""

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self._env = {**os.environ, "SAGACTL_STATE_DIR": str(state_root)}
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.broken = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def spawn(self, reference: str, env: dict[str, str], cwd: str, log_file: Path) -> ForkedProcess | None:
        """Fork a participant process; None when it cannot be forked here (spawn it instead)."""
        if self.broken or _startup_settings(env) != _startup_settings(self._env):
            return None
        with self._lock:
            try:
                replies = self._started()
                assert self._process is not None and self._process.stdin is not None
                request = {"reference": reference, "env": env, "cwd": cwd, "log": str(log_file)}
                self._process.stdin.write(orjson.dumps(request, option=orjson.OPT_APPEND_NEWLINE))
                self._process.stdin.flush()
                reply = orjson.loads(_readline(replies, REPLY_TIMEOUT_S) or b"{}")
            except (OSError, ValueError, AssertionError):
                reply = {}
            if "pid" not in reply:
                self._give_up()
                return None
            return ForkedProcess(int(reply["pid"]))

    def _started(self) -> IO[bytes]:
        if self._process is None or self._process.poll() is not None:
            if not _became_subreaper():
                raise OSError("cannot adopt forked processes here")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "participants.runtime.forkserver"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=self._env, start_new_session=True,
            )
            assert self._process.stdout is not None
            ready = _readline(self._process.stdout, SERVER_READY_TIMEOUT_S)
            if b"ready" not in ready:
                raise OSError("the fork server did not start")
        assert self._process.stdout is not None
        return self._process.stdout

    def _give_up(self) -> None:
        self.broken = True
        self.stop()

    def stop(self) -> None:
        """Stop the server (the processes it forked run on: they are stopped by their pids)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            stop_pid(process.pid)
            process.poll()
        if process.stdout is not None:
            process.stdout.close()


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    """A line from a pipe, or b"" if none comes within the timeout (a server stuck importing)."""
    import select

    if select.select([stream], [], [], timeout)[0]:
        return stream.readline()
    return b""


_servers: dict[Path, ForkServer] = {}
_servers_lock = threading.Lock()


def fork_server(state_root: Path) -> ForkServer | None:
    """This process's server for a state directory, None when forking is switched off."""
    if os.environ.get("SAGACTL_FORK", "1") == "0":
        return None
    with _servers_lock:
        return _servers.setdefault(state_root.resolve(), ForkServer(state_root.resolve()))


def stop_fork_server(state_root: Path) -> None:
    with _servers_lock:
        server = _servers.pop(state_root.resolve(), None)
    if server is not None:
        server.stop()
