"""An embedded JetStream cluster: N nats-server nodes on loopback, routed to each other.

`sagactl up --cluster 3` starts them. Each node has its own client port, cluster (route) port,
store directory, log and pid file; all listen on 127.0.0.1 only. The ports are chosen free at
first start and kept in `system.json`, so a node restarted later comes back on the same ports and
rejoins with its store. The streams get one replica per node (at most 3, JetStream's limit
that makes sense here), so losing one node loses nothing and the stream elects a new leader.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sagactl.errors import Unavailable, UsageError
from sagactl.system.processes import (
    READY_TIMEOUT_S,
    free_port,
    nats_config_file,
    nats_server_binary,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    tail,
)
from sagactl.system.statedir import StateDir

CLUSTER_NAME = "sagactl"
MAX_NODES = 5


@dataclass(frozen=True)
class Node:
    number: int
    port: int
    cluster_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def server_name(self) -> str:
        return f"sagactl-{self.number}"


class EmbeddedCluster:
    """Start, find and stop the nodes of one state directory's cluster."""

    def __init__(self, state: StateDir) -> None:
        self.state = state

    def nodes(self) -> list[Node]:
        cluster = self.state.load_system().get("cluster") or {}
        return [Node(**node) for node in cluster.get("nodes") or []]

    def store_dir(self, node: Node) -> Path:
        return self.state.nats_dir / f"node-{node.number}" / "store"

    def node_pid(self, node: Node) -> int | None:
        pid = read_pid(self.state.nats_pid_file(node.number))
        return pid if pid_alive(pid) else None

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{other.cluster_port}" for other in nodes if other != node)
        return [
            nats_server_binary(), "-c", str(nats_config_file()), "-a", "127.0.0.1", "-p", str(node.port),
            "-n", node.server_name, "-js", "-sd", str(self.store_dir(node)),
            "--cluster_name", CLUSTER_NAME, "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
            "--routes", routes, "-l", str(self.state.nats_log_file(node.number)),
        ]

    def start(self, size: int) -> list[str]:
        """Start every node that is not running (all of them the first time); return all URLs."""
        if not 2 <= size <= MAX_NODES:
            raise UsageError(f"--cluster takes 2 to {MAX_NODES} nodes, not {size}")
        self.state.make()
        system = self.state.load_system()
        if system.get("embedded") and not system.get("cluster") and read_pid(self.state.nats_pid_file()):
            raise UsageError(f"{self.state.root} runs a single embedded server: `sagactl down` it first")
        nodes = self.nodes()
        if nodes and len(nodes) != size:
            raise UsageError(f"{self.state.root} holds a cluster of {len(nodes)} nodes, not {size}")
        if not nodes:
            nodes = [Node(n, free_port(), free_port()) for n in range(1, size + 1)]
        nodes = [self._free_ports(node, nodes) for node in nodes]
        system.update(
            cluster={"name": CLUSTER_NAME, "size": size, "nodes": [asdict(n) for n in nodes]},
            nats_url=",".join(n.url for n in nodes), nats_port=nodes[0].port, embedded=True,
        )
        self.state.save_system(system)
        started = [(node, self._spawn(node, nodes)) for node in nodes if not self.node_pid(node)]
        deadline = time.monotonic() + READY_TIMEOUT_S
        for node, process in started:
            while not port_open(node.port):
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.state.nats_log_file(node.number)
                    raise Unavailable(f"cluster node {node.number} did not start on {node.url} (log: {log}):\n{tail(log)}")
                time.sleep(0.02)
        self._wait_for_full_mesh(nodes, deadline)
        return [n.url for n in nodes]

    def _wait_for_full_mesh(self, nodes: list[Node], deadline: float) -> None:
        """Until every node routes to every other: a request reaches its responder only over a
        direct route, so a missing one would make a participant look absent from some nodes."""
        for node in nodes:
            wanted = {f"127.0.0.1:{n.port}" for n in nodes}
            while not wanted <= set(server_info(node.port).get("connect_urls") or []):
                if time.monotonic() > deadline:
                    raise Unavailable(f"cluster node {node.number} did not route to all its peers "
                                      f"(log: {self.state.nats_log_file(node.number)})")
                time.sleep(0.05)

    def _free_ports(self, node: Node, nodes: list[Node]) -> Node:
        """Keep a stopped node's ports unless another process took them meanwhile."""
        if self.node_pid(node) or not (port_open(node.port) or port_open(node.cluster_port)):
            return node
        return Node(node.number, free_port(), free_port())

    def _spawn(self, node: Node, nodes: list[Node]) -> subprocess.Popen[bytes]:
        self.store_dir(node).mkdir(parents=True, exist_ok=True)
        log_file = self.state.nats_log_file(node.number)
        process = subprocess.Popen(
            self.command(node, nodes), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(log_file, "ab"), start_new_session=True,
        )
        self.state.nats_pid_file(node.number).write_text(str(process.pid))
        return process

    def kill(self, number: int) -> int | None:
        """SIGKILL one node (a crash, for tests and scenarios); return the pid it had."""
        node = next((n for n in self.nodes() if n.number == number), None)
        pid = self.node_pid(node) if node else None
        if pid:
            stop_pid(pid, sig=signal.SIGKILL)
        return pid

    async def kill_stream_leader(self, js: Any, stream: str = "SAGA") -> Node:
        """SIGKILL the node that leads `stream` now (the failover that tests and scenarios play)."""
        info = await js.stream_info(stream)
        leader = node_by_server_name(self.nodes(), info.cluster.leader if info.cluster else None)
        if leader is None:
            raise Unavailable(f"stream {stream} has no leader among this state dir's nodes")
        self.kill(leader.number)
        return leader

    def stop(self) -> list[str]:
        """Stop every node (all signalled first: each waits for its peers otherwise)."""
        nodes = [(node, self.node_pid(node)) for node in self.nodes()]
        for _, pid in nodes:
            if pid:
                os.kill(pid, signal.SIGTERM)  # all now; stop_pid below waits for each
        stopped = []
        for node, pid in nodes:
            if pid:
                stop_pid(pid)
                stopped.append(node.server_name)
            self.state.nats_pid_file(node.number).unlink(missing_ok=True)
        return stopped


def server_info(port: int) -> dict[str, Any]:
    """The INFO a nats-server greets clients with (its peers' client URLs included); {} if none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            line = connection.makefile("rb").readline()
        return json.loads(line.split(b" ", 1)[1]) if line.startswith(b"INFO ") else {}
    except (OSError, ValueError):
        return {}


def node_by_server_name(nodes: list[Node], server_name: str | None) -> Node | None:
    return next((n for n in nodes if n.server_name == server_name), None)


def describe(nodes: list[Node], cluster: EmbeddedCluster) -> list[dict[str, Any]]:
    """Each node with its URL and whether it runs (for `status`)."""
    return [{"node": n.number, "name": n.server_name, "url": n.url, "running": cluster.node_pid(n) is not None}
            for n in nodes]
