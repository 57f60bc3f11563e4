"""Plot throughput and p99 latency from `benchmarks/sweep.py` output (matplotlib, not a runtime dependency).

    .venv/bin/pip install matplotlib
    .venv/bin/python benchmarks/plot.py benchmarks/results/concurrency.jsonl benchmarks/results/rate.jsonl \
        --out docs/performance.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def panel(axis, runs: list[dict], key: str, label: str) -> None:  # type: ignore[no-untyped-def]
    for raw, style in ((False, "o-"), (True, "s--")):
        chosen = sorted((r for r in runs if r["raw"] == raw and r[key]), key=lambda r: r[key])
        if not chosen:
            continue
        xs = [r[key] for r in chosen]
        name = "raw (no database)" if raw else "saga"
        axis.plot(xs, [r["sagas_per_s"] for r in chosen], style, color="tab:blue", label=f"{name}: sagas/s")
        twin = axis.twinx() if not hasattr(axis, "_twin") else axis._twin
        axis._twin = twin
        twin.plot(xs, [r["p99_ms"] for r in chosen], style, color="tab:red", label=f"{name}: p99 ms")
        twin.set_ylabel("p99 submit to end (ms)", color="tab:red")
        twin.set_yscale("log")
    if key == "rate":
        axis.plot(xs, xs, ":", color="grey", label="offered")
    axis.set_xlabel(label)
    axis.set_ylabel("sagas/s", color="tab:blue")
    axis.grid(alpha=0.3)
    lines = axis.get_legend_handles_labels()
    if hasattr(axis, "_twin"):
        more = axis._twin.get_legend_handles_labels()
        lines = (lines[0] + more[0], lines[1] + more[1])
    axis.legend(*lines, fontsize=7, loc="upper left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/performance.png"))
    args = parser.parse_args()
    runs = [run for path in args.files for run in load(path)]
    closed = [r for r in runs if r.get("concurrency")]
    opened = [r for r in runs if r.get("rate")]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panel(axes[0], closed, "concurrency", "concurrency (sales in flight, closed loop)")
    axes[0].set_xscale("log")
    panel(axes[1], opened, "rate", "offered rate (sagas/s, open loop)")
    loads = sorted({r["load_average"][0] for r in runs if r.get("load_average")})
    figure.suptitle(f"sagactl bench on the shared 2-core machine ({runs[0]['sagas']} sagas per point, "
                    f"1-min load {loads[0]:.1f} to {loads[-1]:.1f})", fontsize=10)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
