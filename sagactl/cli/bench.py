"""`sagactl bench`: how fast the saga goes on this machine, and whether it stayed correct."""

from __future__ import annotations

from typing import Annotated

import typer

from sagactl.cli.common import (
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    handle_errors,
    print_json,
    state_dir,
)
from sagactl.errors import ExitCode, UsageError

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
    *,
    term: Terminal,
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
    with Progress(*columns, console=term.err, transient=True) as progress:
        task = progress.add_task("sagas", total=sagas)
        report = run_bench(config, lambda done, total: progress.update(task, completed=done))
    if json:
        print_json(report.as_json())
    else:
        from sagactl.views.bench import print_bench

        print_bench(term.out, report)
    if not report.checks_passed:
        raise typer.Exit(int(ExitCode.FAILED))
