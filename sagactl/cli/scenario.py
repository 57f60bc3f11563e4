"""`sagactl scenario list|validate`: the shipped scenarios, and checking a file without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sagactl.cli.common import JsonOption, Terminal, handle_errors, print_json
from sagactl.errors import UsageError

app = typer.Typer(help="List the shipped scenarios; check a scenario file without running it.", no_args_is_help=True,
                  epilog="Examples:\n$ sagactl scenario list\n$ sagactl scenario validate my-scenario.yaml\n$ sagactl run my-scenario.yaml")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="scenario")


@app.command("list")
@handle_errors
def list_(json: JsonOption = False, *, term: Terminal) -> None:
    """The scenarios shipped with sagactl: name and what each demonstrates (`sagactl run NAME` plays one).

    Example: sagactl scenario list
    """
    from sagactl.scenario import loader
    from sagactl.views.lists import scenarios_table

    rows = []
    for stem, path in loader.shipped_scenarios().items():
        scenario = loader.load(path)
        rows.append({"name": stem, "file": str(path), "description": " ".join(scenario.description.split())})
    if json:
        print_json(rows)
        return
    term.out.print(scenarios_table(rows))


@app.command()
@handle_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario files (or shipped names) to check.", show_default=False)],
    *,
    term: Terminal,
) -> None:
    """Check scenario files without starting anything: every problem with its line, exit 2 if any.

    Example: sagactl scenario validate scenarios/fault.yaml
    """
    from sagactl.scenario import loader

    invalid = []
    for file in files:
        try:
            scenario = loader.load(loader.resolve(str(file)))
        except loader.ScenarioInvalid as exc:  # report every file's problems, then exit 2
            invalid.append(str(exc))
            continue
        expectations = len(scenario.expect.sales) + len(scenario.expect.tables) + len(scenario.expect.events) \
            + len(scenario.expect.dead_letters) + int(scenario.expect.invariants)
        term.out.print(f"{file}: valid: scenario {scenario.name}, {len(scenario.steps)} steps, "
                       f"{expectations} final expectations")
    if invalid:
        raise UsageError("\n".join(invalid))
