"""`sagactl status`: the NATS server, each participant process, the stream and each consumer's backlog."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def render_status(report: dict[str, Any]) -> RenderableType:
    nats = report["nats_url"] or "(none: run `sagactl up`)"
    reach = "reachable" if report["nats_reachable"] else "[red]not reachable[/]"
    parts: list[RenderableType] = [Text.from_markup(f"NATS: {nats} ({reach})   state: {report['state_dir']}")]
    if report.get("cluster"):
        nodes = ", ".join(f"{n['name']} {'[green]running[/]' if n['running'] else '[red]stopped[/]'}" for n in report["cluster"])
        parts.append(Text.from_markup(f"cluster: {nodes}"))
    for name, url in (report.get("databases") or {}).items():
        parts.append(Text(f"database {name}: {url}"))
    processes = Table(title="participants", title_justify="left")
    for column in ("name", "replica", "pid", "state", "log"):
        processes.add_column(column, overflow="fold")  # a log path wraps whole at 80 columns
    for p in report["participants"]:
        state = ("[green]running[/]" if p.get("healthy", p["running"]) else
                 f"[red]running, {p.get('problem', 'unhealthy')}[/]" if p["running"] else "[red]stopped[/]")
        processes.add_row(p["name"], str(p["replica"]), str(p["pid"] or "—"), state, p["log"])
    parts.append(processes)
    if report["stream"]:
        s = report["stream"]
        copies = f"{s['replicas']} replica" + ("s" if s["replicas"] != 1 else "")
        where = f", {copies}, leader {s['leader']}" if s.get("leader") else ""
        parts.append(Text(f"stream {s['name']}: {s['messages']} messages ({s['bytes']} bytes){where}, "
                          f"dead letters: {report['dead_letters']}"))
        consumers = Table(title="consumers", title_justify="left")
        for column in ("consumer", "pending", "ack pending", "redelivered"):
            consumers.add_column(column, justify="right" if column != "consumer" else "left")
        for c in report["consumers"]:
            consumers.add_row(c["name"], str(c["pending"]), str(c["ack_pending"]), str(c["redelivered"]))
        parts.append(consumers)
    parts += [Text.from_markup(f"[yellow]warning: {w}[/]") for w in report.get("warnings") or []]
    return Group(*parts)
