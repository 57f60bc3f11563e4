"""`sagactl run SCENARIO`: play a scenario file on a fresh, private system and judge it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import Terminal, handle_errors, print_json
from sagactl.errors import ExitCode

if TYPE_CHECKING:  # imported by the command itself, so `sagactl --help` stays fast
    from sagactl.scenario.model import Scenario, ScenarioStep
    from sagactl.scenario.runner import Observer, StepResult

def register(app: typer.Typer) -> None:
    app.command()(handle_errors(run))


def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario (`sagactl scenario list`) or a scenario file.")],
    keep: Annotated[bool, typer.Option("--keep", help="Leave the system running afterwards (its state dir is printed).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout (no progress, no events).")] = False,
    events: Annotated[bool, typer.Option("--events/--no-events", help="Print the saga events as they happen.")] = True,
    *,
    term: Terminal,
) -> None:
    """Play a scenario on a fresh private system: steps, events as they happen, tables before and after, verdicts.

    The file is checked first: a malformed one is reported line by line (exit 2) and nothing
    starts. Exit 0 when every expectation holds, 1 when one fails.

    Example: sagactl run success
    """
    from sagactl.scenario import loader
    from sagactl.scenario.runner import Observer, run_scenario
    from sagactl.views.report import print_report

    plan = loader.load(loader.resolve(scenario))
    report = run_scenario(plan, Observer() if json else _console_observer(plan, events, term), keep=keep)
    if json:
        print_json(report.as_json())
    else:
        print_report(term.out, report, plan.source)
    if report.state_dir:
        term.err.print(f"kept running: sagactl status --state-dir {report.state_dir}   "
                       f"(stop: sagactl down --state-dir {report.state_dir})")
    if not report.passed:
        raise typer.Exit(int(ExitCode.FAILED))


def _console_observer(plan: Scenario, show_events: bool, term: Terminal) -> Observer:
    from rich.rule import Rule

    from sagactl.scenario.runner import Observer
    from sagactl.views.events import event_line

    out, err = term.out, term.err
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
