"""`sagactl trace SALE_ID`: one saga rebuilt from the stream, as a table, JSON, Mermaid or SVG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import (
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    handle_errors,
    integer,
    nats_urls,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import SagactlError, UsageError
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:  # the trace model imports the contract (pydantic) and the stream reader nats
    from sagactl.streams.trace import SagaTrace


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(trace))


def trace(
    sale_id: Annotated[str, typer.Argument(help="The sale to trace (its id, as `submit` printed it).")],
    as_mermaid: Annotated[bool, typer.Option("--mermaid", help="Print a Mermaid sequence diagram of its events.")] = False,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also draw it as an SVG sequence diagram in this file (lifelines, one arrow per event).")] = None,
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
    *,
    term: Terminal,
) -> None:
    """Rebuild one saga from the SAGA stream: its events in order, timings, handling, and its end.

    Each event with its producer, the time since the submit and since the previous event, who
    handled it (from the participants' logs in the state dir: time, redeliveries, duplicates),
    compensations marked. A saga still running shows the step and participant it waits for.
    Exit 1 when the stream has no event of that sale.

    Example: sagactl trace 3 --mermaid
    """
    from sagactl.views.diagram import save_sequence_svg
    from sagactl.views.trace import mermaid, render_trace

    number = integer(sale_id, "SALE_ID")
    if json and as_mermaid:
        raise UsageError("--json and --mermaid both choose the output: give one")
    stateful = state_dir(state)
    urls = nats_urls(Supervisor(stateful), nats_url)
    saga = load_trace(urls, number, stateful)
    if json:
        print_json(saga.as_json())
    elif as_mermaid:
        sys.stdout.write(mermaid(saga))
    else:
        term.out.print(render_trace(saga, term.out.width))
    if svg is not None:
        save_sequence_svg(saga, svg)
        term.err.print(f"wrote {svg}")


def load_trace(urls: list[str], sale_id: int, stateful: StateDir) -> SagaTrace:
    from sagactl.streams import tail as history
    from sagactl.streams.trace import build_trace
    from sagactl.system import logs

    events = run_async(history.sale_events(urls, sale_id))
    if not events:
        raise SagactlError(f"sale {sale_id} has no events on the SAGA stream (unknown sale id?)")
    ids = {str(e.field("event_id")) for e in events}
    records = logs.records_about(stateful, ids, {e.seq for e in events}) if stateful.logs_dir.is_dir() else ()
    return build_trace(sale_id, events, records)
