"""`sagactl metrics`: every participant's Prometheus figures, merged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagactl.cli.common import JsonOption, NatsUrlOption, StateDirOption, Terminal, handle_errors, print_json, run_async, state_dir
from sagactl.errors import ExitCode
from sagactl.system.supervisor import Supervisor

if TYPE_CHECKING:
    from sagactl.system.metrics import Merged


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
    from sagactl.views.metrics import participants_metrics_table, saga_duration_line, sagas_metrics_table

    if not merged.sources:
        term.err.print("no participant answered")
        return
    for source in merged.sources:
        if "error" in source:
            term.err.print(f"{source['participant']}-{source['replica']}: {source['error']}")
    term.out.print(participants_metrics_table(merged))
    sagas = sagas_metrics_table(merged)
    if sagas is not None:
        term.out.print(sagas)
        duration = saga_duration_line(merged)
        if duration is not None:
            term.out.print(duration)
