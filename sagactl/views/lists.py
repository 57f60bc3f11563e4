"""The short listings: dead letters, the participants that answer discovery, the shipped scenarios, the event contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from sagactl.asyncapi import EventType
    from sagactl.streams.deadletters import DeadLetter


def dead_letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letter(s)", title_justify="left")
    for column in ("seq", "time", "participant", "event", "sale", "tries"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("seq", "sale", "tries") else "left")
    table.add_column("error", overflow="fold", ratio=1)
    for letter in letters:
        table.add_row(str(letter.seq), letter.time.strftime("%H:%M:%S"), letter.participant, letter.event_type,
                      str(letter.sale_id if letter.sale_id is not None else "—"), str(letter.deliveries), letter.error)
    return table


def participants_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title="participants", title_justify="left")
    for column in ("participant", "replica", "host", "pid", "handles", "tables", "metrics"):
        table.add_column(column, overflow="fold")
    for p in found:
        table.add_row(p["participant"], str(p["replica"]), str(p["host"]), str(p["pid"]),
                      ", ".join(p["handles"] or []), ", ".join(p["tables"] or []), _address(p.get("metrics_url")))
    return table


def _address(metrics_url: str | None) -> str:
    """host:port of a /metrics URL (the path is always /metrics; --json has the whole URL)."""
    if not metrics_url:
        return "off"
    return metrics_url.removeprefix("http://").removesuffix("/metrics")


def scenarios_table(rows: list[dict[str, str]]) -> Table:
    table = Table(title="shipped scenarios (sagactl run NAME)", title_justify="left", show_lines=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for row in rows:
        table.add_row(row["name"], row["description"])
    return table


def contract_table(types: list[EventType]) -> Table:
    table = Table(title="event contract (stream SAGA)", title_justify="left")
    for column in ("event type", "subject", "producer", "consumers"):
        table.add_column(column)
    for t in types:
        consumers = ", ".join(t.consumers) or ("— (ends the saga)" if t.terminal else "—")
        table.add_row(t.name, t.subject, t.producer or "?", consumers)
    return table
