"""Run `sagactl bench --json` over a range of concurrencies or offered rates; one JSON line per run.

    .venv/bin/python benchmarks/sweep.py concurrency 50 200 1000 2000 --sagas 20000 > benchmarks/results/concurrency.jsonl
    .venv/bin/python benchmarks/sweep.py rate 1000 2000 3000 --sagas 20000 > benchmarks/results/rate.jsonl

Each run is a fresh private system (as `sagactl bench` does by default). The machine's load
average is recorded in every line (`load_average`), so a noisy run can be spotted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("axis", choices=["concurrency", "rate"])
    parser.add_argument("values", nargs="+", type=float)
    parser.add_argument("--sagas", type=int, default=20000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--extra", nargs="*", default=[], help="more bench options, e.g. --raw or --fsync")
    args = parser.parse_args()
    for value in args.values:
        option = str(int(value)) if args.axis == "concurrency" else f"{value:g}"
        command = [sys.executable, "-c", "from sagactl.cli.main import main; main()", "bench", "--sagas", str(args.sagas),
                   f"--{args.axis}", option, "--fault-rate", str(args.fault_rate), "--json", *args.extra]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode not in (0, 1) or not done.stdout.strip():
            sys.stderr.write(f"bench {args.axis}={option} failed:\n{done.stderr}\n")
            continue
        report = json.loads(done.stdout)
        report.pop("checks", None)
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        sys.stderr.write(f"{args.axis}={option}: {report['sagas_per_s']:.0f} sagas/s, p99 {report['p99_ms']:.1f} ms, "
                         f"checks {'passed' if report['checks_passed'] else 'FAILED'}, load {report['load_average']}\n")


if __name__ == "__main__":
    main()
