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
    setup,
    tail,
    top,
    trace,
)
from sagactl.cli.style import SagactlGroup

EPILOG = """Examples:
$ sagactl up
$ sagactl submit --product-id 1 --user-id 1 --value 20.00 --quantity 2 --wait
$ sagactl trace 1
$ sagactl setup --product 1=100 --user 1=500.00
$ sagactl run fault
$ sagactl down --purge

Exit codes: 0 ok, 1 the answer is no (a canceled sale, a failed check or expectation), 2 bad
input (nothing was done), 3 NATS or a participant unreachable, 4 timed out waiting, 70 a bug in
sagactl.

Environment: SAGACTL_STATE_DIR (the state dir, default ./.sagactl), NATS_URL (a NATS server
instead of the embedded one), SAGACTL_NATS_CREDS and SAGACTL_TLS_CA (a secured server),
SAGACTL_DB_URL_<NAME> (a participant's database), SAGACTL_TRACEBACK=1 (a traceback instead of
the one-line internal error), NO_COLOR=1 (no colours).
"""

app = typer.Typer(
    name="sagactl",
    help="Run, watch, script and stress a choreographed saga (sale, inventory, payment) over NATS JetStream.",
    epilog=EPILOG,
    cls=SagactlGroup,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, wrapped to the terminal (see cli/style.py)
)
lifecycle.register(app)
sales.register(app)
setup.register(app)
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


if __name__ == "__main__":
    main()
