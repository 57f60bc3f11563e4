"""`sagactl run SCENARIO`: play a scenario file on a fresh, private system and judge it."""

from __future__ import annotations

import json as json_text  # `json` is the name of the --json option
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagactl.cli.common import err, handle_errors, out, print_json
from sagactl.errors import ExitCode

if TYPE_CHECKING:  # imported by the command itself, so `sagactl --help` stays fast
    from sagactl.scenario.model import Scenario, ScenarioStep
    from sagactl.scenario.runner import Observer, Report, StepResult

MAX_ROWS_SHOWN = 12  # per table; a load scenario's sales table has hundreds


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(run))


def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario (`sagactl scenario list`) or a scenario file.")],
    keep: Annotated[bool, typer.Option("--keep", help="Leave the system running afterwards (its state dir is printed).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout (no progress, no events).")] = False,
    events: Annotated[bool, typer.Option("--events/--no-events", help="Print the saga events as they happen.")] = True,
) -> None:
    """Play a scenario on a fresh private system: steps, events as they happen, tables before and after, verdicts.

    The file is checked first: a malformed one is reported line by line (exit 2) and nothing
    starts. Exit 0 when every expectation holds, 1 when one fails.

    Example: sagactl run success
    """
    from sagactl.scenario import loader
    from sagactl.scenario.runner import Observer, run_scenario

    plan = loader.load(loader.resolve(scenario))
    report = run_scenario(plan, Observer() if json else _console_observer(plan, events), keep=keep)
    if json:
        print_json(report.as_json())
    else:
        _print_report(report)
    if report.state_dir:
        err.print(f"kept running: sagactl status --state-dir {report.state_dir}   "
                  f"(stop: sagactl down --state-dir {report.state_dir})")
    if not report.passed:
        raise typer.Exit(int(ExitCode.FAILED))


def _console_observer(plan: Scenario, show_events: bool) -> Observer:
    from rich.rule import Rule

    from sagactl.scenario.runner import Observer
    from sagactl.views.events import event_line

    out.print(Rule(f"scenario {plan.name}"))
    if plan.description:
        out.print(plan.description)

    def started(index: int, total: int, step: ScenarioStep) -> None:
        err.print(f"[bold]▶ step {index}/{total}[/] [dim](line {step.line})[/] {step.summary()}")

    def done(result: StepResult) -> None:
        mark = "[green]✓[/]" if result.passed else "[bold red]✗[/]"
        err.print(f"{mark} step {result.index} [dim]{result.seconds:.2f}s[/] {result.detail}")

    return Observer(
        phase=lambda text: err.print(f"[dim]{text}[/]"),
        step_started=started,
        step_done=done,
        event=(lambda body, subject: out.print(event_line(body, subject=subject))) if show_events else (lambda *_: None),
    )


def _print_report(report: Report) -> None:
    from rich.rule import Rule
    from rich.table import Table

    from sagactl.views.tables import render_state

    out.print(Rule("before"))
    out.print(render_state(_shortened(report.before)))
    out.print(Rule("after"))
    out.print(render_state(_shortened(report.after)))
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    table = Table(title=f"{report.scenario}: {verdict} in {report.seconds:.2f}s ({report.events} events)",
                  title_justify="left")
    table.add_column("expectation")
    table.add_column("verdict")
    table.add_column("expected")
    table.add_column("actual")
    for v in report.verdicts:
        mark = "[green]passed[/]" if v.passed else "[bold red]failed[/]"
        table.add_row(v.what, mark, _show(v.expected), "" if v.passed else _show(v.actual))
    out.print(table)


def _shortened(state: dict[str, Any]) -> dict[str, Any]:
    """The tables with at most MAX_ROWS_SHOWN rows each, and a note row saying how many were left out."""
    result: dict[str, Any] = {}
    for participant, tables in state.items():
        if tables is None:
            result[participant] = None
            continue
        result[participant] = {}
        for name, rows in tables.items():
            if len(rows) <= MAX_ROWS_SHOWN:
                result[participant][name] = rows
            else:
                note = {column: None for column in rows[0]}
                note[next(iter(note))] = f"… {len(rows) - MAX_ROWS_SHOWN} more"
                result[participant][name] = rows[:MAX_ROWS_SHOWN] + [note]
    return result


def _show(value: Any) -> str:
    return json_text.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
