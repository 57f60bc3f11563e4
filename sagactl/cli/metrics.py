"""`sagactl metrics`: every participant's Prometheus figures, merged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import JsonOption, NatsUrlOption, StateDirOption, Terminal, handle_errors, print_json, run_async, state_dir
from sagactl.errors import ExitCode
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:
    from sagactl.system.metrics import Merged

OUTCOMES = ("applied", "duplicate", "retried", "dead_lettered")


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(metrics))


def metrics(
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    json: JsonOption = False,
    targets: Annotated[bool, typer.Option("--targets", help="Print the replicas' /metrics addresses as a Prometheus file_sd target list (JSON) instead.")] = False,
    *,
    term: Terminal,
) -> None:
    """Print the metrics of every participant replica that answers on NATS, summed per participant.

    Each participant serves them on /metrics (its URL: `participant list`, `status --json`) for
    Prometheus; this reads them all once. --targets writes the list Prometheus' file_sd_configs
    reads. Exit 1 when no participant answers or none serves metrics.

    Example: sagactl metrics --targets > sagactl-targets.json
    """
    supervisor = Supervisor(state_dir(state))
    urls = supervisor.nats_urls(nats_url)
    merged = run_async(_collect(urls, supervisor.expected_participants(), scrape=not targets))
    if targets:
        from sagactl.system.metrics import file_sd_targets

        print_json(file_sd_targets(merged.sources))
    elif json:
        print_json(merged.to_json())
    else:
        _print(merged, term)
    if not any("error" not in s for s in merged.sources):
        raise typer.Exit(int(ExitCode.FAILED))


async def _collect(urls: list[str], expected: list[str], scrape: bool = True) -> "Merged":
    from sagactl.client import SagaClient
    from sagactl.system.metrics import merge, scrape_all

    client = await SagaClient.connect(urls, name="sagactl-metrics")
    try:
        answers = await client.participants(expected=expected)
    finally:
        await client.close()
    return await scrape_all(answers) if scrape else merge(answers, {a["metrics_url"]: "" for a in answers if a.get("metrics_url")})


def _print(merged: "Merged", term: Terminal) -> None:
    from rich.table import Table

    if not merged.sources:
        term.err.print("no participant answered")
        return
    for source in merged.sources:
        if "error" in source:
            term.err.print(f"{source['participant']}-{source['replica']}: {source['error']}")
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
    term.out.print(table)
    statuses = merged.label_values("sagactl_sagas_total", "status")
    if statuses:
        sagas = Table(title="sagas", title_justify="left")
        for column in ("status", "reason", "sagas"):
            sagas.add_column(column, justify="right" if column == "sagas" else "left")
        for status in statuses:
            for reason in merged.label_values("sagactl_sagas_total", "reason"):
                count = merged.value("sagactl_sagas_total", status=status, reason=reason)
                if count:
                    sagas.add_row(status, reason or "—", f"{count:.0f}")
        term.out.print(sagas)
        p50 = merged.quantile("sagactl_saga_duration_seconds", 0.5)
        p99 = merged.quantile("sagactl_saga_duration_seconds", 0.99)
        if p50 is not None and p99 is not None:
            term.out.print(f"saga duration (submit to terminal): p50 ≤ {p50 * 1000:g} ms, p99 ≤ {p99 * 1000:g} ms")
