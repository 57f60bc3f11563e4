"""Participant processes forked from one preloaded interpreter per state directory
(sagactl/system/forking.py): what a spawned process had, a forked one has."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from participants.runtime.loader import BUILT_IN
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _of_state_dir(root: Path) -> list[int]:
    """Live processes whose environment names this state dir (as the stray sweep finds them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"SAGACTL_STATE_DIR={root}".encode() in environ and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def _ready_record(supervisor: Supervisor, name: str) -> dict[str, object]:
    lines = supervisor.state.log_file(name).read_bytes().splitlines()
    return next(r for r in map(orjson.loads, (line for line in lines if line.startswith(b"{"))) if r["what"] == "ready")


def test_participants_are_forked_children_with_their_own_settings(state: StateDir, tmp_path: Path) -> None:
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, extra_env={"inventory": {"SAGACTL_BATCH_SIZE": "32"}})
        processes = supervisor.processes()
        assert [p.name for p in processes] == list(BUILT_IN) and all(p.running for p in processes)
        for process in processes:
            assert process.pid is not None
            assert "participants.runtime.forkserver" in _cmdline(process.pid)  # not an interpreter of its own
            assert _parent(process.pid) == os.getpid()  # adopted: this process reads its exit status
            assert Path(f"/proc/{process.pid}/cwd").resolve() == Path.cwd().resolve()
        # Each has the environment it was given, not the server's: its own batch size and replica.
        assert _ready_record(supervisor, "inventory")["batch"] == 32
        assert _ready_record(supervisor, "sale")["batch"] == 256
    finally:
        supervisor.down(kill=True)
    assert _of_state_dir(state.root.resolve()) == []  # the participants and the fork server are gone


def test_a_forked_process_exit_status_reads_as_a_spawned_ones(state: StateDir) -> None:
    supervisor = Supervisor(state)
    try:
        urls = [supervisor.start_nats()]
        killed = supervisor.start_participant("inventory", BUILT_IN["inventory"], 1, urls)
        unknown = supervisor.start_participant("nosuch", "nosuch_module:thing", 1, urls)
        assert unknown.wait(timeout=30) == 2  # `python -m participants.runtime nosuch_module:thing` exits 2
        assert b"cannot import nosuch_module" in supervisor.state.log_file("nosuch").read_bytes()
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        supervisor.down(kill=True)


def test_with_forking_off_each_participant_is_an_interpreter_of_its_own(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGACTL_FORK", "0")
    supervisor = Supervisor(state)
    try:
        supervisor.up(None)
        for process in supervisor.processes():
            assert process.pid is not None and process.running
            assert _cmdline(process.pid).endswith(f"-m participants.runtime {BUILT_IN[process.name]} ")
    finally:
        supervisor.down(kill=True)
    assert _of_state_dir(state.root.resolve()) == []
