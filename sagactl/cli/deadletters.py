"""`sagactl deadletters list|replay|purge`: the events participants gave up on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable

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

if TYPE_CHECKING:  # nats and the dead-letter core load only when a command runs
    from nats.js import JetStreamContext

app = typer.Typer(help="Inspect, replay or purge the dead-letter list (events a participant gave up on).", no_args_is_help=True,
                   epilog="Examples:\n$ sagactl deadletters list\n$ sagactl deadletters replay 3\n$ sagactl deadletters purge --all --yes")

SeqArgument = Annotated[list[str] | None, typer.Argument(help="Dead-letter sequence numbers (see `list`).", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter.")]


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="deadletters")


@app.command("list")
@handle_errors
def list_(state: StateDirOption = None, nats_url: NatsUrlOption = None, json: JsonOption = False, *, term: Terminal) -> None:
    """List the dead letters: which participant gave up on which event, after how many deliveries, and why.

    Example: sagactl deadletters list --json
    """
    from sagactl.streams import deadletters

    letters = _run(state, nats_url, deadletters.list_dead_letters)
    if json:
        print_json([letter.as_json() for letter in letters])
        return
    if not letters:
        term.err.print("no dead letters")
        return
    from sagactl.views.lists import dead_letters_table

    term.out.print(dead_letters_table(letters))


@app.command()
@handle_errors
def replay(seqs: SeqArgument = None, all: AllOption = False, state: StateDirOption = None, nats_url: NatsUrlOption = None,
           *, term: Terminal) -> None:
    """Publish dead letters again, to the participant that gave up on each alone, and remove them from the list.

    Replay after fixing what made them fail. A participant that had applied one already ignores
    the copy, however late (it decides by its rows for the sale, not by the event id).

    Example: sagactl deadletters replay --all
    """
    from sagactl.streams import deadletters

    chosen = _chosen(seqs, all)
    letters = _run(state, nats_url, lambda js: deadletters.replay(js, chosen))
    term.err.print(f"replayed {len(letters)} dead letter(s)" + (f": {', '.join(str(x.seq) for x in letters)}" if letters else ""))


@app.command()
@handle_errors
def purge(seqs: SeqArgument = None, all: AllOption = False,
          yes: Annotated[bool, typer.Option("--yes", help="Purge --all without asking (needed when not in a terminal).")] = False,
          state: StateDirOption = None, nats_url: NatsUrlOption = None, *, term: Terminal) -> None:
    """Drop dead letters for good (their events stay in the SAGA stream's history).

    --all asks first, in a terminal; elsewhere (a script, a pipe) it needs --yes.

    Example: sagactl deadletters purge 3 4
    """
    import sys

    from sagactl.streams import deadletters

    chosen = _chosen(seqs, all)
    if chosen is None and not yes:
        if not sys.stdin.isatty():
            raise UsageError("--all drops every dead letter for good: add --yes to confirm")
        if not typer.confirm("Drop every dead letter for good?", default=False, err=True):
            raise typer.Exit(int(ExitCode.FAILED))
    letters = _run(state, nats_url, lambda js: deadletters.purge(js, chosen))
    term.err.print(f"purged {len(letters)} dead letter(s)")


def _chosen(seqs: list[str] | None, every: bool) -> list[int] | None:
    """None for --all, else the sequence numbers given; exactly one of the two."""
    if every and seqs:
        raise UsageError("give sequence numbers or --all, not both")
    if every:
        return None
    if not seqs:
        raise UsageError("name the dead letters by sequence number, or pass --all")
    chosen = []
    for raw in seqs:
        if not raw.isdigit() or int(raw) < 1:
            raise UsageError(f"{raw!r} is not a dead-letter sequence number (an integer >= 1)")
        chosen.append(int(raw))
    return chosen


def _run(state: Any, nats_url: str | None, action: "Callable[[JetStreamContext], Awaitable[Any]]") -> Any:
    from sagactl.system.connection import connect

    urls = nats_urls(Supervisor(state_dir(state)), nats_url)

    async def go() -> Any:
        nc = await connect(urls, "sagactl-deadletters")
        try:
            return await action(nc.jetstream())
        finally:
            await nc.close()

    return run_async(go())
