"""The `sagactl top` screen: one frame drawn from a TopView (sagactl/system/top.py)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sagactl.system.top import Saga, TopView

STATUS_STYLE = {"FINALIZED": "bold green", "CANCELED": "bold red", "PENDING": "yellow"}
KEYS = "↑/↓ select · enter: trace of the selected saga · esc: back · q: quit"


def _figure(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def render_top(view: TopView, selected: int = 0, interval: float = 1.0) -> RenderableType:
    header = Text()
    header.append(f"sagactl top · {datetime.now():%H:%M:%S} · every {interval:g}s   ", style="bold")
    if view.nats_error:
        header.append(f"{view.nats_error} (retrying)", style="bold red")
    else:
        header.append("NATS ok", style="green")
    figures = Table.grid(padding=(0, 3))
    for _ in range(6):
        figures.add_column(justify="right")
    figures.add_row("sagas/s", "events/s", "in flight", "p50 (10 s)", "p99 (10 s)", "dead letters", style="dim")
    figures.add_row(_figure(view.sagas_per_s, digits=1), _figure(view.events_per_s, digits=1), _figure(view.in_flight),
                    _figure(view.p50_ms, " ms"), _figure(view.p99_ms, " ms"), _figure(view.dead_letters), style="bold")
    return Group(header, figures, _participants(view), _sagas("latest sagas", view.latest, selected),
                 _sagas("stuck sagas", view.stuck, None), Text(KEYS, style="dim"))


def _participants(view: TopView) -> Table:
    table = Table(title="participants", title_justify="left", expand=True)
    for column in ("participant", "replica", "pid", "pending", "ack pending", "redelivered", "outbox", "dead letters", "CPU %", "RSS MB"):
        table.add_column(column, justify="left" if column == "participant" else "right")
    consumers = {c["name"]: c for c in view.consumers}
    shown = set()
    for r in view.replicas:
        c = consumers.get(r.participant, {}) if r.participant not in shown else {}  # the consumer is shared: once
        shown.add(r.participant)
        table.add_row(r.participant, str(r.replica), str(r.pid or "—"), _figure(c.get("pending")), _figure(c.get("ack_pending")),
                      _figure(c.get("redelivered")), _figure(r.outbox), _figure(r.dead_letters),
                      _figure(r.cpu_percent, digits=0), _figure(r.rss_mb, digits=0))
    for name, c in consumers.items():
        if name not in shown:  # a consumer whose participant did not answer
            table.add_row(Text(name, style="red"), "—", "not answering", _figure(c["pending"]), _figure(c["ack_pending"]),
                          _figure(c["redelivered"]), "—", "—", "—", "—")
    return table


def _sagas(title: str, sagas: list[Saga], selected: int | None) -> Table:
    table = Table(title=title, title_justify="left", expand=True)
    for column in ("sale", "status", "last event", "by", "reason", "events", "age"):
        table.add_column(column, justify="right" if column in ("sale", "events", "age") else "left")
    now = datetime.now().astimezone()
    for index, saga in enumerate(sagas):
        last = saga.last
        age = (now - last.time).total_seconds()
        table.add_row(str(saga.sale_id), Text(saga.status, style=STATUS_STYLE.get(saga.status, "")), last.event_type or "?",
                      str(last.field("producer") or ""), str(last.field("reason") or ""), str(len(saga.events)), f"{age:,.0f} s",
                      style="reverse" if index == selected else "")
    if not sagas:
        table.add_row("—", "", "", "", "", "", "")
    return table


def render_trace_panel(saga: Saga) -> RenderableType:
    """The selected saga's trace, as `sagactl trace` draws it (from the events top has seen)."""
    from sagactl.streams.trace import build_trace
    from sagactl.views.trace import render_trace

    return Panel(render_trace(build_trace(saga.sale_id, saga.events)), title=f"sale {saga.sale_id} · esc: back",
                 title_align="left")
