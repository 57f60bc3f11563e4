"""`sagactl check`: a one-line summary (stderr) and, when it failed, a table of the violations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sagactl.check import CheckReport


def print_check(out: Console, err: Console, report: CheckReport) -> None:
    counts = report.counts
    summary = (f"{counts.get('sales', 0)} sales ({counts.get('finalized', 0)} finalized, {counts.get('canceled', 0)} canceled, "
               f"{counts.get('pending', 0)} pending), {counts.get('products', 0)} products, {counts.get('users', 0)} users, "
               f"{counts.get('stream_seq', 0)} events, {counts.get('dead_letters', 0)} dead letters; {report.seconds:.2f}s")
    if report.passed:
        err.print(f"[green]check: passed[/]: {summary}")
        return
    table = Table(title=f"{len(report.violations)} violation(s)", title_justify="left")
    for column in ("check", "subject", "detail"):
        table.add_column(column, overflow="fold")
    for v in report.violations:
        table.add_row(f"[red]{v.check}[/]", v.subject, v.detail)
    out.print(table)
    err.print(f"[bold red]check: failed[/]: {summary}")
