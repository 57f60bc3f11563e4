"""`sagactl tail`: the saga events as they reach the stream, or as they were."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console

from participants.runtime.loader import BUILT_IN, load_participant
from sagactl.cli.common import (
    NatsUrlOption,
    StateDirOption,
    Terminal,
    handle_errors,
    integer,
    nats_urls,
    run_async,
    state_dir,
)
from sagactl.cli.interrupt import until_interrupted
from sagactl.errors import UsageError
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:  # history imports nats and the contract pydantic: only when tail runs
    from sagactl.streams.tail import Origin, StreamEvent


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(tail))


def tail(
    all_: Annotated[bool, typer.Option("--all", help="Start at the beginning of the stream.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Start at a time: 30s, 5m, 2h, 1d ago, or an ISO timestamp.")] = None,
    last: Annotated[int | None, typer.Option("--last", help="Start with the last N matching events.")] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep following new events, or print what is there and exit.")] = True,
    sale_id: Annotated[int | None, typer.Option("--sale-id", help="Only this sale's events.")] = None,
    types: Annotated[list[str], typer.Option("--type", help="Only events of this type (repeatable).")] = [],
    services: Annotated[list[str], typer.Option("--service", help="Only events published by this participant (repeatable).")] = [],
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line: seq, subject, time, data (the body as published).")] = False,
    *,
    term: Terminal,
) -> None:
    """Show saga events as they reach the SAGA stream, one coloured line each; Ctrl-C ends it (exit 0).

    Default: new events only, followed. --all, --since, --last start in the past.
    --no-follow prints what is there and exits (from the start when no start is given).
    tail reads with its own temporary consumer and acks nothing: the participants never notice.
    It survives a NATS restart and goes on after the last event it showed.

    Example: sagactl tail --all --no-follow --type CANCELED_SALE --json
    """
    from participants.contract import subject_for
    from sagactl.streams import tail as history
    from sagactl.streams.tail import Selection

    origin = _origin(all_, since, last, follow)
    sale = None if sale_id is None else integer(sale_id, "--sale-id")
    stateful = state_dir(state)
    urls = nats_urls(Supervisor(stateful), nats_url)
    selection = Selection(subjects=tuple(subject_for(t) for t in _checked_types(types, stateful, urls)),
                          sale_id=sale, services=frozenset(services), since=origin.since)
    emit = _print_json if json else functools.partial(_print_line, term.out)
    if follow and origin.mode == "new":
        term.err.print("[dim]following new events on SAGA (Ctrl-C to stop)[/]")
    run_async(until_interrupted(history.tail(urls, selection, origin, follow, emit, _known_services(stateful))))


def _origin(all_: bool, since: str | None, last: int | None, follow: bool) -> Origin:
    from sagactl.streams import tail as history
    from sagactl.streams.tail import Origin

    given = [name for name, value in (("--all", all_), ("--since", since), ("--last", last)) if value not in (None, False)]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} both say where to start: give one")
    if last is not None:
        if last < 1:
            raise UsageError(f"--last takes a count >= 1, not {last}")
        return Origin("last", last=last)
    if since is not None:
        return Origin("since", since=history.parse_since(since))
    if all_ or not follow:
        return Origin("all")
    return Origin("new")


def _checked_types(types: list[str], state: StateDir, urls: list[str]) -> list[str]:
    from participants.contract import SUBJECTS

    unknown = [t for t in types if t not in SUBJECTS]
    if unknown:
        _register_system_participants(state)  # a participant added with `up --with` brings its own types
        unknown = [t for t in types if t not in SUBJECTS]
    if unknown:
        run_async(_discover(urls))  # one started anywhere else says which types it knows
        unknown = [t for t in types if t not in SUBJECTS]
    if unknown:
        raise UsageError(f"--type: unknown event type {unknown[0]!r} (known: {', '.join(SUBJECTS)})")
    return types


def _register_system_participants(state: StateDir) -> None:
    for reference in (state.load_system().get("participants") or {}).values():
        try:
            load_participant(reference)
        except Exception:
            continue  # its types stay unknown; the usage error names the known ones


async def _discover(urls: list[str]) -> None:
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls, name="sagactl-tail")
    try:
        await client.participants()
    finally:
        await client.close()


def _known_services(state: StateDir) -> set[str]:
    return set(BUILT_IN) | set(state.load_system().get("participants") or {})


def _print_line(out: Console, event: StreamEvent) -> None:
    from sagactl.views.events import event_line

    body = event.body if event.body is not None else {"raw": event.data.decode(errors="replace")}
    out.print(event_line(body, when=event.time, seq=event.seq, subject=event.subject))


def _print_json(event: StreamEvent) -> None:
    sys.stdout.write(orjson.dumps(event.as_json()).decode() + "\n")
    sys.stdout.flush()
