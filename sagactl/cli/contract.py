"""`sagactl contract`: the event contract, as a table, as JSON Schema or as an AsyncAPI document."""

from __future__ import annotations

from typing import Annotated

import typer

from sagactl.cli.common import StateDirOption, Terminal, handle_errors, print_json, state_dir
from sagactl.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(contract))


def contract(
    asyncapi: Annotated[bool, typer.Option("--asyncapi", help="Print an AsyncAPI 3.0 document (JSON).")] = False,
    json_schema: Annotated[bool, typer.Option("--json-schema", help="Print one JSON Schema (2020-12) of every event body.")] = False,
    with_: Annotated[list[str], typer.Option("--with", help="Also include this participant's events and handlers, MODULE:OBJECT (repeatable).")] = [],
    state: StateDirOption = None,
    *,
    term: Terminal,
) -> None:
    """Print the event contract: each event type's subject, who publishes it and who consumes it.

    The built-in participants are always in it, and so is every participant `sagactl up --with`
    started in the state directory (imported from the current directory, as `up` did) and every
    --with given here: the event types they register, with who produces and consumes them.

    Example: sagactl contract --asyncapi > saga.asyncapi.json
    """
    if asyncapi and json_schema:
        raise UsageError("--asyncapi and --json-schema print different documents: give one of them")
    from participants.runtime.loader import BUILT_IN
    from sagactl import __version__
    from sagactl.asyncapi import asyncapi_document, event_types, json_schema_document
    from sagactl.system.references import load

    recorded = state_dir(state).load_system().get("participants") or {}
    references = dict.fromkeys([*BUILT_IN.values(), *recorded.values(), *with_])
    participants = {}
    for reference in references:
        participant = load(reference)  # importing it registers its event types
        participants.setdefault(participant.name, participant)
    types = event_types(list(participants.values()))
    if asyncapi:
        print_json(asyncapi_document(types, __version__))
    elif json_schema:
        print_json(json_schema_document(types))
    else:
        from sagactl.views.lists import contract_table

        term.out.print(contract_table(types))
