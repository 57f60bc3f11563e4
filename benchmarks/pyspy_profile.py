"""Profile the participants under bench load with py-spy; print where each one spends its CPU.

    .venv/bin/pip install py-spy
    .venv/bin/python benchmarks/pyspy_profile.py --sagas 20000 --concurrency 2000 [--raw] [--out DIR]

Starts a private system (with SAGACTL_RAW=1 under --raw), records each participant with py-spy
while `sagactl bench --reuse` drives it, writes one flame graph (SVG) and one collapsed-stack
file per participant into --out, and prints the functions with the largest inclusive share.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

PARTICIPANTS = ("sale", "inventory", "payment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sagas", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/profiles"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    state = StateDir.at(tempfile.mkdtemp(prefix="sagactl-profile-"))
    supervisor = Supervisor(state)
    env = {"SAGACTL_RAW": "1"} if args.raw else {}
    try:
        supervisor.up(None, extra_env={name: dict(env) for name in PARTICIPANTS})
        pids = {p.name: p.pid for p in supervisor.processes()}
        tag = "raw" if args.raw else "saga"
        spies = {}
        for name in PARTICIPANTS:
            raw_file = args.out / f"{tag}-{name}.txt"
            spies[name] = (raw_file, subprocess.Popen(
                ["py-spy", "record", "-p", str(pids[name]), "-r", "200", "-f", "raw", "-o", str(raw_file)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        bench = subprocess.run(
            [sys.executable, "-c", "from sagactl.cli.main import main; main()", "bench", "--reuse", "--sagas",
             str(args.sagas), "--concurrency", str(args.concurrency), "--state-dir", str(state.root)],
            capture_output=True, text=True, env={**os.environ, "SAGACTL_STATE_DIR": str(state.root)},
        )
        print(bench.stdout.split("\n", 3)[1].strip() if bench.stdout else bench.stderr)
        for name, (raw_file, spy) in spies.items():
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(timeout=60)
            summarize(name, raw_file, args.top)
    finally:
        supervisor.down(purge=True)


# Where a sample's stack is, by the first matching rule (the groups in docs/performance.md).
GROUPS = (
    ("sqlite commit", ("do_commit",)),
    ("SQL on the driver cursor (handlers, inbox, outbox, marks)", ("sql.py", "results.py", "seen (transaction")),
    ("event bodies (parse, copy, serialize)", ("follow (contract", "to_bytes", "parse_event", "new_event")),
    ("NATS client and event loop", ("nats/aio", "jetstream.py", "uvloop")),
    ("SQLAlchemy (session, transaction)", ("sqlalchemy", "sqlmodel")),
    ("structured log", ("eventlog", "_log_outcome")),
)


# Threads that only wait (the metrics server's): left out of every share.
IDLE = ("serve_forever", "Thread._bootstrap")


def groups(lines: list[str]) -> collections.Counter[str]:
    shares: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        group = next((g for g, marks in GROUPS if any(m in stack for m in marks)), "other")
        shares[group] += int(count)
    return shares


def summarize(name: str, raw_file: Path, top: int) -> None:
    """Inclusive share of each function (a function counted once per sample)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    try:
        lines = [line for line in raw_file.read_text().splitlines() if not any(mark in line for mark in IDLE)]
    except FileNotFoundError:
        print(f"== {name}: no profile (is py-spy installed and allowed to attach?)")
        return
    for line in lines:
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        seen = set()
        for frame in stack.split(";"):
            function, _, where = frame.partition(" (")
            key = f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]}"
            if key not in seen:
                seen.add(key)
                inclusive[key] += samples
    print(f"== {name}: {total} samples")
    for group, samples in groups(lines).most_common():
        print(f"{samples * 100 / max(total, 1):5.1f}%  [{group}]")
    for key, samples in inclusive.most_common(top):
        print(f"{samples * 100 / max(total, 1):5.1f}%  {key}")


if __name__ == "__main__":
    main()
