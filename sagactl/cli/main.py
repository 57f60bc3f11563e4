"""The `sagactl` entry point: the command groups put together."""

from __future__ import annotations

import typer

from sagactl import __version__
from sagactl.cli import (
    bench,
    check,
    contract,
    deadletters,
    lifecycle,
    logs,
    metrics,
    participant,
    run,
    sales,
    scenario,
    tail,
    top,
    trace,
)

app = typer.Typer(
    name="sagactl",
    help="Run, watch, script and stress a choreographed saga (sale, inventory, payment) over NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
lifecycle.register(app)
sales.register(app)
run.register(app)
tail.register(app)
trace.register(app)
logs.register(app)
bench.register(app)
check.register(app)
deadletters.register(app)
scenario.register(app)
participant.register(app)
contract.register(app)
metrics.register(app)
top.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sagactl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Run, watch, script and stress a choreographed saga over NATS JetStream."""


def main() -> None:
    app()
