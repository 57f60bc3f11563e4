"""What starting a system costs: `Supervisor.up` (as `sagactl up` runs it) until all three
participants are ready, forked from the preloaded interpreter against each spawned on its own
(`SAGACTL_FORK=0`), in alternating rounds on fresh state directories.

    python benchmarks/startup.py [--rounds 5]

Per round and mode: wall seconds of `up`, and CPU seconds of the participant processes and the
fork server at that moment (read from /proc; nats-server and this process left out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from sagactl.system.forking import fork_server
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def one_start(root: Path, fork: bool) -> tuple[float, float]:
    os.environ["SAGACTL_FORK"] = "1" if fork else "0"
    supervisor = Supervisor(StateDir.at(root))
    started = time.perf_counter()
    try:
        supervisor.up(None)
        wall = time.perf_counter() - started
        pids = [p.pid for p in supervisor.processes() if p.pid]
        server = fork_server(supervisor.state.root)
        if fork and server is not None and server.pid:
            pids.append(server.pid)
        return wall, sum(cpu_s(pid) for pid in pids)
    finally:
        supervisor.down(kill=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"forked": [], "spawned": []}
    with tempfile.TemporaryDirectory(prefix="sagactl-startup-") as tmp:
        for n in range(args.rounds):
            order = ["forked", "spawned"] if n % 2 == 0 else ["spawned", "forked"]
            for mode in order:
                wall, cpu = one_start(Path(tmp) / f"{mode}-{n}", mode == "forked")
                results[mode].append((wall, cpu))
                print(f"round {n + 1} {mode:8} up {wall:.2f} s wall, {cpu:.2f} s CPU of the participants", flush=True)
    for mode, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{mode:8} median: {statistics.median(walls):.2f} s wall ({min(walls):.2f}-{max(walls):.2f}), "
              f"{statistics.median(cpus):.2f} s CPU ({min(cpus):.2f}-{max(cpus):.2f})")


if __name__ == "__main__":
    main()
