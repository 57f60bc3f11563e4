"""`sagactl logs SERVICE`: a participant's structured log, readable."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console

from sagactl.cli.common import StateDirOption, Terminal, handle_errors, state_dir
from sagactl.errors import UsageError
from sagactl.system import logs as participant_logs
from sagactl.system.logs import LogLine


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(logs))


def logs(
    service: Annotated[str, typer.Argument(help="The participant (sale, inventory, payment, or one added to the system).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written; Ctrl-C ends it (exit 0).")] = False,
    lines: Annotated[int | None, typer.Option("--lines", "-n", help="Only the last N lines.")] = None,
    state: StateDirOption = None,
    json: Annotated[bool, typer.Option("--json", help="The raw lines, one JSON object each, as the participant wrote them.")] = False,
    *,
    term: Terminal,
) -> None:
    """Show a participant's log: one line per handled event (event, sale, what it emitted, how long it took).

    The log is `logs/<participant>.log` in the state dir (one file per replica, merged by time).
    Lines that are not JSON (a traceback of a process that died) are shown as they are.

    Example: sagactl logs inventory --follow
    """
    stateful = state_dir(state)
    participant_logs.log_files(stateful, service)  # an unknown participant is a usage error
    if lines is not None and lines < 0:
        raise UsageError(f"--lines takes a count >= 0, not {lines}")
    emit = _print_raw if json else functools.partial(_print_readable, term.out)
    found, offsets = participant_logs.read_lines(participant_logs.log_files(stateful, service))
    if not found and not follow:
        term.err.print(f"{service} has not written a log in {stateful.logs_dir} yet")
    for line in found[-lines:] if lines else ([] if lines == 0 else found):
        emit(line)
    if follow:
        try:
            participant_logs.follow(lambda: participant_logs.log_files(stateful, service), emit, offsets)
        except KeyboardInterrupt:
            return


def _print_readable(out: Console, line: LogLine) -> None:
    from sagactl.views.logs import log_line  # the views import the contract (pydantic)

    out.print(log_line(line))


def _print_raw(line: LogLine) -> None:
    sys.stdout.write(line.raw + "\n")
    sys.stdout.flush()
