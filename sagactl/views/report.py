"""A scenario's report: the tables before and after, and each verdict with what differed.

Verdicts are stacked lines, not table cells: a reason or a value is never cut to fit a column
at 80 columns. A failed one says which field differs (`status: expected CANCELED, got
FINALIZED`) and the line of the scenario file that expected it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from sagactl.views.tables import render_state

if TYPE_CHECKING:
    from sagactl.scenario.judge import ExpectationVerdict
    from sagactl.scenario.runner import Report

MAX_ROWS_SHOWN = 12  # per table; a load scenario's sales table has hundreds
INDENT = "    "


def print_report(console: Console, report: Report, source: str) -> None:
    console.print(Rule("before"))
    console.print(render_state(shortened(report.before)))
    console.print(Rule("after"))
    console.print(render_state(shortened(report.after)))
    console.print(render_verdicts(report, source))


def render_verdicts(report: Report, source: str) -> RenderableType:
    held = sum(v.passed for v in report.verdicts)
    verdict = Text("passed", style="green") if report.passed else Text("FAILED", style="bold red")
    title = Text.assemble(f"{report.scenario}: ", verdict, f" in {report.seconds:.2f}s ({report.events} events): "
                          f"{held} of {len(report.verdicts)} expectations hold")
    return Group(title, *(line for v in report.verdicts for line in verdict_lines(v, source)))


def verdict_lines(verdict: ExpectationVerdict, source: str) -> list[Text]:
    where = f"  ({source}:{verdict.line})" if verdict.line else ""
    if verdict.passed:
        return [Text.assemble(("✓ passed ", "green"), verdict.what, (f"  {shown(verdict.expected)}", "dim"))]
    lines = [Text.assemble(("✗ failed ", "bold red"), verdict.what, (where, "dim"))]
    lines += [Text(INDENT + line) for line in difference(verdict.expected, verdict.actual)]
    return lines


def difference(expected: Any, actual: Any) -> list[str]:
    """What differs, field by field: `status: expected CANCELED, got FINALIZED`."""
    if _counts(expected) and _counts(actual):  # sales per status: "expected 1 CANCELED, got 1 FINALIZED"
        return [f"expected {_per_status(expected)}, got {_per_status(actual)}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        return [f"{key}: expected {shown(expected.get(key))}, got {shown(actual.get(key))}"
                for key in {**expected, **actual} if expected.get(key) != actual.get(key)] or [f"got {shown(actual)}"]
    if isinstance(expected, list) and isinstance(actual, list):
        if all(isinstance(item, str) for item in expected + actual):
            return _sequence_difference(expected, actual)
        return _rows_difference(expected, actual)
    return [f"expected {shown(expected)}", f"got      {shown(actual)}"]


def _counts(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(n, int) and str(k).split(":")[0].isupper() for k, n in value.items())


def _per_status(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _sequence_difference(expected: list[str], actual: list[str]) -> list[str]:
    first = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e != a), min(len(expected), len(actual)))
    want = expected[first] if first < len(expected) else "nothing more"
    got = actual[first] if first < len(actual) else "nothing more"
    return [f"event {first + 1}: expected {want}, got {got}",
            "expected " + " → ".join(expected), "got      " + (" → ".join(actual) or "no events")]


def _rows_difference(expected: list[Any], actual: list[Any]) -> list[str]:
    lines = []
    if len(expected) != len(actual):
        lines.append(f"expected {len(expected)} row(s), got {len(actual)}")
    for number, (want, got) in enumerate(zip(expected, actual), start=1):
        if want != got:
            for line in difference(want, got):
                lines.append(f"row {number} {line}")
    for number, row in enumerate(actual[len(expected):], start=len(expected) + 1):
        lines.append(f"row {number} not expected: {shown(row)}")
    for number, row in enumerate(expected[len(actual):], start=len(actual) + 1):
        lines.append(f"row {number} missing: {shown(row)}")
    return lines


def shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value if value and value.replace("_", "").replace(".", "").isalnum() else json.dumps(value)
    return json.dumps(value, default=str)


def shortened(state: dict[str, Any]) -> dict[str, Any]:
    """The tables with at most MAX_ROWS_SHOWN rows each, and a note row saying how many were left out."""
    result: dict[str, Any] = {}
    for participant, tables in state.items():
        if tables is None:
            result[participant] = None
            continue
        result[participant] = {}
        for name, rows in tables.items():
            if len(rows) <= MAX_ROWS_SHOWN:
                result[participant][name] = rows
            else:
                note = {column: None for column in rows[0]}
                note[next(iter(note))] = f"… {len(rows) - MAX_ROWS_SHOWN} more"
                result[participant][name] = rows[:MAX_ROWS_SHOWN] + [note]
    return result
