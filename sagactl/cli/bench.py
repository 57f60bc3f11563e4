"""`sagactl bench`: how fast the saga goes on this machine, and whether it stayed correct."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import (
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    err,
    handle_errors,
    out,
    print_json,
    state_dir,
)
from sagactl.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from sagactl.bench.runner import BenchReport


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(bench))


def bench(
    sagas: Annotated[int, typer.Option("--sagas", help="Sales to submit.")] = 2000,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Closed loop: at most this many sales in flight.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Open loop: submit this many sales per second.")] = None,
    fault_rate: Annotated[float, typer.Option("--fault-rate", help="Fraction of sales designed to fail (half out of stock, half refused payment).")] = 0.1,
    raw: Annotated[bool, typer.Option("--raw", help="Participants skip their database work: the messaging limit of this machine.")] = False,
    fsync: Annotated[bool, typer.Option("--fsync", help="JetStream sync_interval always and SQLite synchronous=FULL.")] = False,
    reuse: Annotated[bool, typer.Option("--reuse", help="Bench the running system of --state-dir instead of a fresh private one.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the last sales to end.")] = 300.0,
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
) -> None:
    """Submit many sales, wait for all to end, print throughput, latency, CPU, memory and the checks.

    By default on a fresh private system (started and removed by the command). Exit 1 when the
    checks fail.

    Example: sagactl bench --sagas 20000 --concurrency 2000
    """
    if (concurrency is None) == (rate is None):
        raise UsageError("give exactly one of --concurrency (closed loop) or --rate (open loop)")
    if sagas < 1 or (concurrency is not None and concurrency < 1) or (rate is not None and rate <= 0):
        raise UsageError("--sagas, --concurrency and --rate must be positive")
    if not 0 <= fault_rate <= 1:
        raise UsageError("--fault-rate must be between 0 and 1")
    if reuse and (raw or fsync):
        raise UsageError("--raw and --fsync set how the processes start: they need a fresh system, not --reuse")

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from sagactl.bench.load import LoadPlan
    from sagactl.bench.runner import BenchConfig, run_bench

    config = BenchConfig(
        plan=LoadPlan(sagas=sagas, concurrency=concurrency, rate=rate, fault_rate=fault_rate),
        reuse=reuse, raw=raw, fsync=fsync, state_dir=state_dir(state) if reuse else None,
        nats_url=nats_url, timeout_s=timeout,
    )
    columns = (TextColumn("sagas"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("sagas", total=sagas)
        report = run_bench(config, lambda done, total: progress.update(task, completed=done))
    if json:
        print_json(report.as_json())
    else:
        _print_report(report)
    if not report.checks_passed:
        raise typer.Exit(int(ExitCode.FAILED))


def _print_report(report: "BenchReport") -> None:
    from rich.table import Table

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
