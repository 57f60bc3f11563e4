"""`sagactl check`: do the databases, the stream and the dead-letter list agree?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import (
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    handle_errors,
    nats_urls,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import ExitCode, UsageError
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:  # the check imports nats and the contract (pydantic): only when it runs
    from sagactl.check import CheckReport


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(check))


def check(
    stuck_after: Annotated[str, typer.Option("--stuck-after", help="Seconds a sale may stay PENDING before it counts as stuck.")] = "30",
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
    *,
    term: Terminal,
) -> None:
    """Check that the three databases, the stream and the dead-letter list agree.

    Stock and money are conserved, every FINALIZED sale has one matching payment, no CANCELED
    sale holds stock or money, nothing was applied twice, no sale is PENDING longer than
    --stuck-after (the last event and who acts next are named) and no event sits in the
    dead-letter list. Reads everything through NATS. Exit 0 when every rule holds, 1 otherwise.

    Example: sagactl check --stuck-after 10
    """
    seconds = _seconds(stuck_after)
    urls = nats_urls(Supervisor(state_dir(state)), nats_url)
    report = run_async(_check(urls, seconds))
    if json:
        print_json(report.as_json())
    else:
        from sagactl.views.check import print_check

        print_check(term.out, term.err, report)
    if not report.passed:
        raise typer.Exit(int(ExitCode.FAILED))


def _seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise UsageError(f"--stuck-after takes a number of seconds, not {raw!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"--stuck-after must be a finite number of seconds >= 0, not {raw!r}")
    return seconds


async def _check(urls: list[str], stuck_after: float) -> "CheckReport":
    from sagactl.check import run_checks
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls, name="sagactl-check")
    try:
        return await run_checks(client, stuck_after)
    finally:
        await client.close()
