"""The private system one scenario runs on: a fresh state directory, its processes and faults.

A scenario step acts on one participant at a time (kill, restart, start), so this starts and
stops exactly the processes a step names; `Supervisor.up` would also bring back a participant
that an earlier step killed on purpose.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from participants.runtime.faults import DELAY_MS_ENV, FAIL_RATE_ENV
from participants.runtime.loader import BUILT_IN
from participants.runtime.settings import to_env
from sagactl.errors import UsageError
from sagactl.scenario.model import ParticipantSettings, Scenario
from sagactl.system.processes import pid_alive, read_pid
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

def fault_env(settings: ParticipantSettings, first_start: bool) -> dict[str, str]:
    """The environment that injects a participant's faults; the crash point only on its first start."""
    env = {}
    if settings.fail_rate:
        env[FAIL_RATE_ENV] = f"{settings.fail_rate:g}"
    if settings.delay_ms:
        env[DELAY_MS_ENV] = f"{settings.delay_ms:g}"
    if settings.crash and first_start:
        env.update(to_env(crash_point=settings.crash.spec))
    if settings.ack_wait_s:
        env.update(to_env(ack_wait_s=settings.ack_wait_s))
    return env


class ScenarioSystem:
    def __init__(self, scenario: Scenario, state: StateDir) -> None:
        self.scenario = scenario
        self.state = state
        self.supervisor = Supervisor(state)
        self.references: dict[str, str] = dict(BUILT_IN)
        for name, settings in scenario.participants.items():
            if settings.module:
                self.references[name] = settings.module

    @classmethod
    def fresh(cls, scenario: Scenario) -> "ScenarioSystem":
        return cls(scenario, StateDir.at(tempfile.mkdtemp(prefix=f"sagactl-{scenario.name}-")))

    @property
    def participants(self) -> list[str]:
        return list(self.references)

    def settings(self, name: str) -> ParticipantSettings:
        return self.scenario.participants.get(name, ParticipantSettings())

    def replicas(self, name: str) -> int:
        return self.settings(name).replicas

    def start(self) -> list[str]:
        """NATS and every participant of the scenario, each with its replicas and faults."""
        if self.scenario.setup.deadline_s:
            self.supervisor.remember(sale_deadline=self.scenario.setup.deadline_s)
        return self.supervisor.up(
            None,
            participants=self.references,
            replicas={name: self.replicas(name) for name in self.references},
            extra_env={name: fault_env(self.settings(name), first_start=True) for name in self.references},
            cluster=self.scenario.cluster,
        )

    def add(self, name: str, reference: str) -> None:
        """Add a participant to the running system (a `start` step)."""
        system = self.state.load_system()
        system.setdefault("participants", {})[name] = reference
        system.setdefault("replicas", {})[name] = self.replicas(name)
        self.state.save_system(system)  # so that `down` and `status` know it
        self.references[name] = reference
        self._launch(name, fault_env(self.settings(name), first_start=True))

    def kill(self, name: str, replica: int | None = None) -> None:
        for number in [replica] if replica else range(1, self.replicas(name) + 1):
            self.supervisor.stop_participant(name, number, kill=True)

    def restart(self, name: str) -> None:
        """Stop the participant's processes that still run (SIGTERM), then start them all again."""
        for number in range(1, self.replicas(name) + 1):
            self.supervisor.stop_participant(name, number)
        self._launch(name, fault_env(self.settings(name), first_start=False))

    def freeze(self, name: str, frozen: bool) -> list[int]:
        """SIGSTOP (or SIGCONT) every running process of a participant; their pids."""
        pids = [pid for n in range(1, self.replicas(name) + 1) if pid_alive(pid := read_pid(self.state.pid_file(name, n)))]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)
        return pids

    def running(self, name: str) -> list[int]:
        """The replicas of `name` whose process is alive."""
        return [n for n in range(1, self.replicas(name) + 1) if pid_alive(read_pid(self.state.pid_file(name, n)))]

    async def kill_nats_leader(self, js: Any) -> str:
        """SIGKILL the cluster node that leads the SAGA stream; its server name."""
        from sagactl.system.cluster import EmbeddedCluster

        return (await EmbeddedCluster(self.state).kill_stream_leader(js)).server_name

    def stop_nats(self) -> None:
        self.supervisor.stop_nats(kill=True)

    def start_nats(self) -> str:
        return self.supervisor.start_nats()

    def close(self) -> list[str]:
        """Stop everything and delete the state; the names of what was still running.

        SIGKILL: nothing of this system is kept, so a graceful stop (each participant finishing its
        fetch) would only cost time. Ctrl-C is ignored meanwhile, so an impatient second one
        cannot leave half a system behind.
        """
        previous = _ignore_interrupts()
        try:
            removed = [info.name if info.replica == 1 else f"{info.name}-{info.replica}"
                       for info in self.supervisor.processes() if info.running]
            if self.supervisor.embedded_pid():
                removed.insert(0, "nats-server")
            self.supervisor.down(purge=True, kill=True)
            removed += _kill_strays(self.state.root)
            shutil.rmtree(self.state.root, ignore_errors=True)
            return removed
        finally:
            _restore_interrupts(previous)

    def _launch(self, name: str, env: dict[str, str]) -> None:
        if name not in self.references:
            raise UsageError(f"participant {name} is not part of this scenario")
        urls = self.supervisor.nats_urls()
        started = []
        for number in range(1, self.replicas(name) + 1):
            log_file = self.state.log_file(name, number)
            offset = log_file.stat().st_size if log_file.exists() else 0
            process = self.supervisor.start_participant(name, self.references[name], number, urls, env)
            started.append((name, number, process, offset))
        self.supervisor.wait_ready(started)


def wait_exited(system: ScenarioSystem, name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while system.running(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _ignore_interrupts() -> Any:
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to ignore there
        return None


def _restore_interrupts(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def _kill_strays(root: Path) -> list[str]:
    """Processes of this state dir that no pid file names (an interrupt between a start and its
    pid file): found by the state dir in their environment or command line, SIGKILLed."""
    import psutil

    strays = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            mine = process.environ().get("SAGACTL_STATE_DIR") == str(root) or \
                any(str(root) in part for part in process.info["cmdline"] or [])
            if mine and process.pid != os.getpid():
                process.kill()
                strays.append(f"{process.info['name']} (pid {process.pid}, no pid file)")
        except (psutil.Error, OSError):
            continue
    return strays
