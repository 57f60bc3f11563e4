"""A Rich table per database table, grouped by the participant that owns it."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {"FINALIZED": "green", "CANCELED": "red", "PENDING": "yellow"}


def table_of(participant: str, name: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{participant} · {name}", title_justify="left", expand=False)
    columns = list(rows[0]) if rows else ["(no rows)"]
    for column in columns:
        numeric = bool(rows) and all(isinstance(r.get(column), (int, float)) or _is_money(r.get(column)) for r in rows)
        # fold: at 80 columns a long value wraps inside its cell, never ends in "…"
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(column, row.get(column)) for column in columns))
    return table


def render_state(state: dict[str, dict[str, Any] | None]) -> RenderableType:
    parts: list[RenderableType] = []
    for participant, tables in state.items():
        if tables is None:
            parts.append(Text(f"{participant}: did not answer (not running?)", style="bold red"))
            continue
        for name, rows in tables.items():
            parts.append(table_of(participant, name, rows))
    return Group(*parts)


def _is_money(value: Any) -> bool:
    return isinstance(value, str) and value.replace(".", "", 1).isdigit() and "." in value


def _cell(column: str, value: Any) -> Text:
    if value is None:
        return Text("—", style="dim")
    text = str(value)
    if column == "status":
        return Text(text, style=STATUS_STYLES.get(text, ""))
    return Text(text)
