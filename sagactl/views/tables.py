"""A Rich table per database table, grouped by the participant that owns it."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from participants.contract import STATUS_CANCELED, STATUS_FINALIZED, STATUS_PENDING

STATUS_STYLES = {STATUS_FINALIZED: "green", STATUS_CANCELED: "red", STATUS_PENDING: "yellow"}


def table_of(participant: str, name: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{participant} · {name}", title_justify="left", expand=False)
    columns = list(rows[0]) if rows else ["(no rows)"]
    for column in columns:
        data = [r for r in rows if not _is_note(next(iter(r.values()), None))]  # the "… N older" row aside
        numeric = bool(data) and all(isinstance(r.get(column), (int, float)) or _is_money(r.get(column)) for r in data)
        # fold: at 80 columns a long value wraps inside its cell, never ends in "…"
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(column, row.get(column)) for column in columns))
    return table


def render_state(state: dict[str, dict[str, Any] | None], max_rows: int | None = None) -> RenderableType:
    """Every participant's tables; with `max_rows`, each table's newest rows and a count of the rest."""
    parts: list[RenderableType] = []
    for participant, tables in state.items():
        if tables is None:
            parts.append(Text(f"{participant}: did not answer (not running?)", style="bold red"))
            continue
        for name, rows in tables.items():
            parts.append(table_of(participant, name, newest(rows, max_rows)))
    return Group(*parts)


def state_that_fits(state: dict[str, dict[str, Any] | None], console: Console, height: int) -> RenderableType:
    """The tables on at most `height` lines of `console`: as many of each table's newest rows as fit."""
    full = render_state(state)
    most = max((len(rows) for tables in state.values() if tables for rows in tables.values()), default=0)
    if most <= 1 or _height(console, full) <= height:
        return full
    low, high, best = 1, most - 1, render_state(state, 1)
    while low <= high:  # the most rows per table that still fit: each try is one render
        middle = (low + high) // 2
        candidate = render_state(state, middle)
        if _height(console, candidate) <= height:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def _height(console: Console, renderable: RenderableType) -> int:
    return len(console.render_lines(renderable, console.options.reset_height(), pad=False))


def newest(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if limit is None or len(rows) <= limit:
        return rows
    note = {column: None for column in rows[0]}
    note[next(iter(note))] = f"… {len(rows) - limit} older"
    return [note, *rows[-limit:]]


def _is_note(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("… ")


def _is_money(value: Any) -> bool:
    return isinstance(value, str) and value.replace(".", "", 1).isdigit() and "." in value


def _cell(column: str, value: Any) -> Text:
    if value is None:
        return Text("—", style="dim")
    text = str(value)
    if column == "status":
        return Text(text, style=STATUS_STYLES.get(text, ""))
    return Text(text)
