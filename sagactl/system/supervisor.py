"""Start and stop the embedded nats-server and the participant processes; know what runs.

Every process is started detached (its own session) with a pid file in the state directory, so
`sagactl down` in another shell, or after a crash of the CLI, finds and stops exactly what `up`
started, and `up` again restarts only what is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from participants.runtime.loader import BUILT_IN
from participants.runtime.settings import db_url_env, to_env
from sagactl.errors import Unavailable, UsageError
from sagactl.system.connection import CONNECTION_FILE_VARIABLES
from sagactl.system.forking import ParticipantProcess, fork_server, stop_fork_server
from sagactl.system.processes import (
    READY_TIMEOUT_S,
    free_port,
    nats_config_file,
    nats_server_binary,
    pid_alive,
    port_closes,
    port_open,
    read_pid,
    stop_pid,
    tail,
)
from sagactl.system.statedir import StateDir


@dataclass
class ProcessInfo:
    name: str
    replica: int
    pid: int | None
    running: bool
    log_file: Path


# How many ports start_nats tries when the one it chose is taken before the server binds it.
PORT_ATTEMPTS = 5


class Supervisor:
    """What `up`, `down` and `status` do to one state directory."""

    def __init__(self, state: StateDir) -> None:
        self.state = state

    # -- NATS ----------------------------------------------------------------------------
    def nats_urls(self, given: str | None = None) -> list[str]:
        """The servers to use: the given URL list, else the servers of this state dir.

        A state dir started with `up --creds/--tls-ca` also lends those files to this process's
        connections (unless the environment names others), so every command reaches its server.
        """
        system = self.state.load_system()
        for variable, path in (system.get("connection_files") or {}).items():
            os.environ.setdefault(variable, path)
        if given:
            return [u.strip() for u in given.split(",") if u.strip()]
        url = system.get("nats_url")
        if not url:
            raise Unavailable(f"nothing is running in {self.state.root}: run `sagactl up` (or pass --nats-url)")
        return [u for u in url.split(",") if u]

    def embedded_pid(self) -> int | None:
        pid = read_pid(self.state.nats_pid_file())
        return pid if pid_alive(pid) else None

    def start_nats(self) -> str:
        """Start the embedded server (on the port it had before, if any); return its URL."""
        self.state.make()
        system = self.state.load_system()
        port = int(system.get("nats_port") or 0)
        if self.embedded_pid() and port and port_open(port):
            return f"nats://127.0.0.1:{port}"
        if not port or not port_closes(port):
            port = free_port()
        log_file = self.state.nats_log_file()
        for _ in range(PORT_ATTEMPTS):
            since = log_file.stat().st_size if log_file.exists() else 0
            process = self._spawn_nats(port, log_file)
            if self._nats_ready(process, port, log_file, since):
                break
            # A free port can be taken between free_port() and the server's bind (tests start
            # many servers at once): another one, rather than a failure or someone else's server.
            port = free_port()
        else:
            raise Unavailable(f"embedded nats-server found no free port in {PORT_ATTEMPTS} tries (log: {log_file}):\n"
                              f"{tail(log_file)}")
        url = f"nats://127.0.0.1:{port}"
        system.update(nats_url=url, nats_port=port, embedded=True)
        self.state.save_system(system)
        return url

    def _spawn_nats(self, port: int, log_file: Path) -> subprocess.Popen[bytes]:
        command = [
            nats_server_binary(), "-c", str(nats_config_file()), "-a", "127.0.0.1", "-p", str(port),
            "-js", "-sd", str(self.state.store_dir), "-l", str(log_file),
        ]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log_file, "ab"),
            start_new_session=True,
        )
        self.state.nats_pid_file().write_text(str(process.pid))
        return process

    def _nats_ready(self, process: subprocess.Popen[bytes], port: int, log_file: Path, since: int) -> bool:
        """True once this process listens on the port (its own log line says so: an open port
        alone may be another process's); False when the port was taken; raise on other failures."""
        ours = f"[{process.pid}] ".encode()
        listening = f"Listening for client connections on 127.0.0.1:{port}".encode()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with open(log_file, "rb") as log:
                log.seek(since)
                lines = log.read().splitlines()
            if process.poll() is None and any(line.startswith(ours) and listening in line for line in lines):
                return True
            if process.poll() is not None or time.monotonic() > deadline:
                stop_pid(process.pid)
                if any(b"address already in use" in line for line in lines):
                    return False
                raise Unavailable(f"embedded nats-server did not start on 127.0.0.1:{port} (log: {log_file}):\n"
                                  f"{tail(log_file)}")
            time.sleep(0.02)

    def stop_nats(self, kill: bool = False) -> None:
        pid = read_pid(self.state.nats_pid_file())
        if pid:
            stop_pid(pid, sig=signal.SIGKILL if kill else signal.SIGTERM)
        self.state.nats_pid_file().unlink(missing_ok=True)

    # -- participants --------------------------------------------------------------------
    def participant_env(self, name: str, replica: int, nats_urls: list[str], extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(to_env(nats_urls=nats_urls, state_dir=self.state.root, replica=replica))
        system = self.state.load_system()
        given_db = (system.get("db_urls") or {}).get(name)  # `up --db-url`, kept for restarts
        if given_db:
            env.update(to_env(name, db_url=given_db))
        env.setdefault(db_url_env(name), self.state.db_url(name))
        if system.get("cluster"):
            env = {**to_env(stream_replicas=min(int(system["cluster"]["size"]), 3)), **env}  # a default only
        if name == "sale" and system.get("sale_deadline"):  # `up --sale-deadline`, kept for restarts
            env["SAGACTL_SALE_DEADLINE"] = str(system["sale_deadline"])
        env.update(extra)
        return env

    def remember(self, **settings: object) -> None:
        """Keep settings of `up` (such as sale_deadline) in the state dir for later starts."""
        self.state.make()
        system = self.state.load_system()
        system.update(settings)
        self.state.save_system(system)

    def start_participant(
        self, name: str, reference: str, replica: int, nats_urls: list[str], extra_env: dict[str, str] | None = None
    ) -> ParticipantProcess:
        """Start one participant process (forked from this state dir's preloaded interpreter when
        it can be: sagactl/system/forking.py) and write its pid file."""
        log_file = self.state.log_file(name, replica)
        env = self.participant_env(name, replica, nats_urls, extra_env or {})
        cwd = (self.state.load_system().get("directories") or {}).get(name) or os.getcwd()
        server = fork_server(self.state.root)
        process: ParticipantProcess | None = server.spawn(reference, env, cwd, log_file) if server else None
        if process is None:
            process = subprocess.Popen(
                [sys.executable, "-m", "participants.runtime", reference],
                stdin=subprocess.DEVNULL,
                stdout=open(log_file, "ab"),
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=cwd,
            )
        self.state.pid_file(name, replica).write_text(str(process.pid))
        return process

    def wait_ready(self, started: list[tuple[str, int, ParticipantProcess, int]]) -> None:
        """Wait until each started process logged `ready`; on failure stop them all and explain."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = list(started)
        while pending:
            for item in list(pending):
                name, replica, process, offset = item
                log_file = self.state.log_file(name, replica)
                if _logged_ready(log_file, offset, process.pid):
                    pending.remove(item)
                elif process.poll() is not None or time.monotonic() > deadline:
                    for _, _, other, _ in started:
                        stop_pid(other.pid)
                    why = "exited" if process.poll() is not None else "did not become ready"
                    raise Unavailable(f"participant {name} {why}: {_reason(log_file, offset)} (log: {log_file})")
            time.sleep(0.02)

    def up(
        self,
        nats_url: str | None,
        participants: dict[str, str] | None = None,
        replicas: dict[str, int] | None = None,
        extra_env: dict[str, dict[str, str]] | None = None,
        db_urls: dict[str, str] | None = None,
        cluster: int | None = None,
    ) -> list[str]:
        """Start whatever is not running; return the NATS URLs in use.

        `cluster`: an embedded cluster of that many nodes instead of one server. `db_urls`:
        participant -> database URL (kept for later `up`s); the others keep SQLite files here.
        """
        self.state.make()
        system = self.state.load_system()
        if nats_url:
            urls = self.nats_urls(nats_url)
            system.update(nats_url=",".join(urls), embedded=False)
            self.state.save_system(system)
        elif cluster or system.get("cluster"):
            from sagactl.system.cluster import EmbeddedCluster

            urls = EmbeddedCluster(self.state).start(cluster or int(system["cluster"]["size"]))
            system = self.state.load_system()
        else:
            urls = [self.start_nats()]
            system = self.state.load_system()
        self._remember_connection_files(system)
        if db_urls:
            system["db_urls"] = {**(system.get("db_urls") or {}), **db_urls}
        wanted = dict(system.get("participants") or {})
        wanted.update(participants or BUILT_IN)
        # Where an added participant's module imports from: `up` again from elsewhere finds it.
        directories = dict(system.get("directories") or {})
        for name in wanted:
            if name not in BUILT_IN:
                directories.setdefault(name, os.getcwd())
        system["directories"] = directories
        counts = dict(system.get("replicas") or {})
        counts.update(replicas or {})
        system.update(participants=wanted, replicas=counts)
        self.state.save_system(system)
        started = []
        for name, reference in wanted.items():
            for replica in range(1, int(counts.get(name, 1)) + 1):
                if pid_alive(read_pid(self.state.pid_file(name, replica))):
                    continue
                log_file = self.state.log_file(name, replica)
                offset = log_file.stat().st_size if log_file.exists() else 0
                # Every process learns how many share its durable consumer (SAGACTL_REPLICAS).
                env = {**to_env(replicas=int(counts.get(name, 1))), **(extra_env or {}).get(name, {})}
                process = self.start_participant(name, reference, replica, urls, env)
                started.append((name, replica, process, offset))
        self.wait_ready(started)
        return urls

    def expected_participants(self) -> list[str]:
        """The built-ins and every participant `up` started here (with --with): those that should answer."""
        return list({**BUILT_IN, **(self.state.load_system().get("participants") or {})})

    def processes(self) -> list[ProcessInfo]:
        system = self.state.load_system()
        counts = system.get("replicas") or {}
        result = []
        for name in system.get("participants") or {}:
            for replica in range(1, int(counts.get(name, 1)) + 1):
                pid = read_pid(self.state.pid_file(name, replica))
                result.append(ProcessInfo(name, replica, pid, pid_alive(pid), self.state.log_file(name, replica)))
        return result

    def stop_participant(self, name: str, replica: int = 1, kill: bool = False) -> None:
        pid_file = self.state.pid_file(name, replica)
        pid = read_pid(pid_file)
        if pid:
            stop_pid(pid, sig=signal.SIGKILL if kill else signal.SIGTERM)
        pid_file.unlink(missing_ok=True)

    def down(self, purge: bool = False, kill: bool = False) -> list[str]:
        """Stop every process this state dir started; with purge, delete databases, store and logs.

        `kill`: SIGKILL instead of a graceful stop (about a second per system), for a system
        nothing of which is kept: a scenario's private one, a test's.
        """
        stopped = []
        infos = self.processes()
        for info in infos:
            if info.running:
                stopped.append(f"{info.name}" if info.replica == 1 else f"{info.name}-{info.replica}")
                # All at once: each takes up to a fetch timeout to stop gracefully.
                os.kill(info.pid, signal.SIGKILL if kill else signal.SIGTERM)
        for info in infos:
            self.stop_participant(info.name, info.replica, kill=kill)
        stop_fork_server(self.state.root)
        if self.state.load_system().get("cluster"):
            from sagactl.system.cluster import EmbeddedCluster

            stopped += EmbeddedCluster(self.state).stop()
        if self.embedded_pid():
            stopped.append("nats-server")
        self.stop_nats(kill=kill)
        if purge:
            for path in self.state.db_files():
                path.unlink(missing_ok=True)
            shutil.rmtree(self.state.nats_dir, ignore_errors=True)
            shutil.rmtree(self.state.logs_dir, ignore_errors=True)  # or the next system's logs mix with these
            self.state.system_file.unlink(missing_ok=True)
        return stopped

    def remove(self, name: str) -> list[str]:
        """Stop a participant added with `up --with` and forget it; the others keep running.

        Its database (and the events it emitted) stay: `up --with` again resumes where it was.
        """
        system = self.state.load_system()
        if name in BUILT_IN:
            raise UsageError(f"{name} is a built-in participant: the saga needs it (stop all with `sagactl down`)")
        if name not in (system.get("participants") or {}):
            added = [n for n in system.get("participants") or {} if n not in BUILT_IN]
            raise UsageError(f"no participant {name!r} was added here (added: {', '.join(added) or 'none'})")
        stopped = []
        for info in self.processes():
            if info.name == name:
                if info.running:
                    stopped.append(name if info.replica == 1 else f"{name}-{info.replica}")
                self.stop_participant(name, info.replica)
        for key in ("participants", "replicas", "directories"):
            (system.get(key) or {}).pop(name, None)
        self.state.save_system(system)
        return stopped

    def describe_url(self, urls: list[str]) -> str:
        from participants.runtime.broker import redact

        return ",".join(redact(u) for u in urls)

    def _remember_connection_files(self, system: dict[str, Any]) -> None:
        """Keep `--creds`/`--tls-ca` (set in the environment by the CLI) for later commands."""
        files = {v: os.environ[v] for v in CONNECTION_FILE_VARIABLES if os.environ.get(v)}
        if files:
            system["connection_files"] = {v: str(Path(p).resolve()) for v, p in files.items()}
            self.state.save_system(system)


def _reason(log_file: Path, offset: int) -> str:
    """Why a participant did not start, in one line: its last error since `offset`, not its log."""
    import json

    try:
        with open(log_file, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return "it wrote no log"
    for line in reversed([line.strip() for line in lines if line.strip()]):
        try:
            record = json.loads(line)
        except ValueError:
            return line.removeprefix("error: ")  # the runtime's plain last words (an import error)
        if isinstance(record, dict) and record.get("what") == "fatal":
            return str(record.get("error"))
    return "no error in its log"


def _logged_ready(log_file: Path, offset: int, pid: int) -> bool:
    try:
        with open(log_file, "rb") as log:
            log.seek(offset)
            text = log.read()
    except FileNotFoundError:
        return False
    return f'"what":"ready","pid":{pid}'.encode() in text
