"""`sagactl bench`: throughput, latency, each process's CPU and memory, and the checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sagactl.bench.runner import BenchReport


def print_bench(out: Console, report: BenchReport) -> None:
    data = report.as_json()
    mode = "raw (no database work)" if data["raw"] else "saga"
    loop = f"concurrency {data['concurrency']}" if data["concurrency"] else f"offered {data['rate']:g} sagas/s"
    out.print(f"{mode}: {data['sagas']} sagas, {loop}, {data['fault_rate']:.0%} designed to fail")
    out.print(f"  {data['sagas_per_s']:,.0f} sagas/s, {data['events_per_s']:,.0f} events/s over {data['seconds']:.2f} s "
              f"({data['finalized']} finalized, {data['canceled']} canceled)")
    out.print(f"  latency submit to end: p50 {data['p50_ms']:.1f} ms, p90 {data['p90_ms']:.1f} ms, "
              f"p99 {data['p99_ms']:.1f} ms, max {data['max_ms']:.1f} ms")
    table = Table(title=f"processes (during the load: {data['cpu_us_per_saga']:.0f} µs of CPU per saga in all)",
                  title_justify="left")
    for column in ("process", "pid", "CPU s", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for p in data["processes"]:
        table.add_row(p["name"], str(p["pid"]), f"{p['cpu_s']:.2f}", f"{p['peak_rss_mb']:.1f}")
    out.print(table)
    checks = data["checks"]
    verdict = "[green]passed[/]" if checks["passed"] else "[bold red]FAILED[/]"
    out.print(f"checks {verdict}: {'; '.join(checks['what'])}")
    for problem in checks["problems"]:
        out.print(f"  [red]{problem}[/]")
    out.print(f"[dim]{data['durability']}; load average {data['load_average']}[/]")
