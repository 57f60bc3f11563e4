"""`sagactl run SCENARIO`: a self-contained demonstration on a fresh, private state."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagactl.cli.common import err, handle_errors, out, print_json, run_async
from sagactl.errors import ExitCode
from sagactl.statedir import StateDir
from sagactl.supervisor import Supervisor

if TYPE_CHECKING:  # imported by the command itself, so `sagactl --help` stays fast
    from sagactl.scenario.model import Scenario
    from sagactl.scenario.runner import Report


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(run))


def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario (success, fault, ...) or a scenario file.")],
    keep: Annotated[bool, typer.Option("--keep", help="Leave the system running afterwards (its state dir is printed).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Play a scenario on a fresh private system: events as they happen, tables before and after, verdicts.

    Exit 0 when every expectation holds, 1 when one fails.

    Example: sagactl run success
    """
    from sagactl.scenario import loader

    plan = loader.load(loader.resolve(scenario))
    state = StateDir.at(tempfile.mkdtemp(prefix=f"sagactl-{plan.name}-"))
    supervisor = Supervisor(state)
    try:
        with err.status(f"starting a private system for {plan.name}…"):
            urls = supervisor.up(None)
        report = run_async(_play(plan, urls, show=not json))
    finally:
        if not keep:
            supervisor.down(purge=True)
            shutil.rmtree(state.root, ignore_errors=True)
    if json:
        print_json(report.as_json())
    else:
        _print_report(report)
    if keep:
        err.print(f"kept running: sagactl status --state-dir {state.root}   (stop: sagactl down --state-dir {state.root})")
    if not report.passed:
        raise typer.Exit(int(ExitCode.FAILED))


async def _play(plan: Scenario, urls: list[str], show: bool) -> Report:
    from rich.rule import Rule

    from sagactl.client import SagaClient
    from sagactl.scenario.runner import follow_events, play
    from sagactl.views.events import event_line
    from sagactl.views.tables import render_state

    client = await SagaClient.connect(urls, name="sagactl-run")
    try:
        if show:
            out.print(Rule(f"scenario {plan.name}"))
            if plan.description:
                out.print(plan.description.strip())
            await follow_events(client, lambda body: out.print(event_line(body)))
        report = await play(plan, client, on_step=(lambda line: err.print(f"[dim]{line}[/]")) if show else (lambda _: None))
        if show:
            out.print(Rule("before"))
            out.print(render_state(report.before))
            out.print(Rule("after"))
            out.print(render_state(report.after))
        return report
    finally:
        await client.close()


def _print_report(report: Report) -> None:
    from rich.table import Table

    table = Table(title=f"{report.scenario}: {'passed' if report.passed else 'FAILED'} in {report.seconds:.2f}s", title_justify="left")
    table.add_column("expectation")
    table.add_column("verdict")
    table.add_column("expected")
    table.add_column("actual")
    for v in report.verdicts:
        verdict = "[green]passed[/]" if v.passed else "[bold red]failed[/]"
        table.add_row(v.what, verdict, _short(v.expected), "" if v.passed else _short(v.actual))
    out.print(table)


def _short(value: Any) -> str:
    return str(value) if not isinstance(value, Path) else str(value)
