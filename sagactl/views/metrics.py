"""`sagactl metrics` as tables: the participants' figures (replicas summed) and the sagas' ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from sagactl.system.metrics import Merged

OUTCOMES = ("applied", "duplicate", "retried", "dead_lettered")


def participants_metrics_table(merged: Merged) -> Table:
    table = Table(title="participants (replicas summed)", title_justify="left")
    for column in ("participant", *OUTCOMES, "redelivered", "outbox", "inbox rows", "batches", "p99 batch", "cpu s", "rss MB"):
        table.add_column(column, justify="left" if column == "participant" else "right")
    for name in sorted({s["participant"] for s in merged.sources if "error" not in s}):
        p99 = merged.quantile("sagactl_handle_seconds", 0.99, participant=name)
        table.add_row(
            name,
            *(f"{merged.value('sagactl_events_handled_total', participant=name, outcome=o):.0f}" for o in OUTCOMES),
            f"{merged.value('sagactl_redeliveries_total', participant=name):.0f}",
            f"{merged.value('sagactl_outbox_backlog', participant=name):.0f}",
            f"{merged.value('sagactl_inbox_rows', participant=name):.0f}",
            f"{merged.value('sagactl_handle_seconds_count', participant=name):.0f}",
            "—" if p99 is None else f"≤{p99 * 1000:g} ms",
            f"{merged.value('process_cpu_seconds_total', participant=name):.1f}",
            f"{merged.value('process_resident_memory_bytes', participant=name) / 1e6:.0f}",
        )
    return table


def sagas_metrics_table(merged: Merged) -> Table | None:
    """Sagas ended, by status and reason; None before any ended."""
    statuses = merged.label_values("sagactl_sagas_total", "status")
    if not statuses:
        return None
    table = Table(title="sagas", title_justify="left")
    for column in ("status", "reason", "sagas"):
        table.add_column(column, justify="right" if column == "sagas" else "left")
    for status in statuses:
        for reason in merged.label_values("sagactl_sagas_total", "reason"):
            count = merged.value("sagactl_sagas_total", status=status, reason=reason)
            if count:
                table.add_row(status, reason or "—", f"{count:.0f}")
    return table


def saga_duration_line(merged: Merged) -> str | None:
    p50 = merged.quantile("sagactl_saga_duration_seconds", 0.5)
    p99 = merged.quantile("sagactl_saga_duration_seconds", 0.99)
    if p50 is None or p99 is None:
        return None
    return f"saga duration (submit to terminal): p50 ≤ {p50 * 1000:g} ms, p99 ≤ {p99 * 1000:g} ms"
