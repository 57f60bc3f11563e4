"""`sagactl participant run|list`: run one participant (yours or a built-in), see which ones answer."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from sagactl.cli.common import (
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    Terminal,
    handle_errors,
    nats_urls,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import ExitCode
from sagactl.system.references import load
from sagactl.system.supervisor import Supervisor

participant_app = typer.Typer(
    help="Run your own participant (or a built-in) and list the participants that answer on NATS.",
    no_args_is_help=True,
    epilog="Examples:\n$ sagactl participant list\n$ sagactl participant run examples.shipping:participant",
)


def register(app: typer.Typer) -> None:
    participant_app.command("run")(handle_errors(run))
    participant_app.command("list")(handle_errors(list_participants))
    app.add_typer(participant_app, name="participant")


def run(
    reference: Annotated[str, typer.Argument(help="MODULE:OBJECT naming a participants.runtime.Participant, or a built-in name.")],
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    db_url: Annotated[str | None, typer.Option("--db-url", help="Its database [default: env SAGACTL_DB_URL_<NAME>, else <state dir>/<name>.db].", show_default=False)] = None,
    replica: Annotated[int, typer.Option("--replica", min=1, help="Replica number, when several processes share the participant.")] = 1,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", envvar="SAGACTL_METRICS_PORT", min=0, max=65535, help="Serve /metrics on this port [default: a free one].", show_default=False)] = None,
    metrics_host: Annotated[str | None, typer.Option("--metrics-host", envvar="SAGACTL_METRICS_HOST", help="Bind /metrics to this address [default: 127.0.0.1].", show_default=False)] = None,
    *,
    term: Terminal,
) -> None:
    """Run one participant in the foreground until Ctrl-C; its log lines (JSON) go to stderr.

    Without --nats-url it joins the system `sagactl up` started in the state directory. The module
    is imported from the current directory. It is not recorded in the state directory, so `status`
    and `down` do not know it: use `sagactl up --with MODULE:OBJECT` for that.

    Example: sagactl participant run examples.shipping:participant
    """
    from participants.runtime import run as run_participant
    from sagactl.system.connection import parse_db_urls, redact_db_url
    from participants.runtime.settings import db_url_env, to_env

    participant = load(reference)
    if db_url:  # checked as `up --db-url` checks it: a bad URL or a missing driver is a usage error
        db_url = parse_db_urls([f"{participant.name}={db_url}"])[participant.name]
    supervisor = Supervisor(state_dir(state))
    urls = nats_urls(supervisor, nats_url)
    supervisor.state.make()
    extra = to_env(participant.name, db_url=db_url) if db_url else {}
    if metrics_port is not None:
        extra["SAGACTL_METRICS_PORT"] = str(metrics_port)
    if metrics_host:
        extra["SAGACTL_METRICS_HOST"] = metrics_host
    # The same environment `sagactl up` gives the processes it starts.
    os.environ.update(supervisor.participant_env(participant.name, replica, urls, extra))
    term.err.print(f"participant {participant.name}: NATS {supervisor.describe_url(urls)}, "
                   f"database {redact_db_url(os.environ[db_url_env(participant.name)])}; Ctrl-C stops it")
    run_participant(participant)


def list_participants(state: StateDirOption = None, nats_url: NatsUrlOption = None, json: JsonOption = False,
                      *, term: Terminal) -> None:
    """List every participant replica that answers on NATS, on this machine or any other.

    Exit 1 when none answers.

    Example: sagactl participant list --json
    """
    urls = nats_urls(Supervisor(state_dir(state)), nats_url)
    found = run_async(_discover(urls))
    if json:
        print_json(found)
    else:
        _print(found, term)
    if not found:
        raise typer.Exit(int(ExitCode.FAILED))


async def _discover(urls: list[str]) -> list[dict[str, Any]]:
    from sagactl.client import SagaClient

    client = await SagaClient.connect(urls, name="sagactl-participant-list")
    try:
        answers = await client.participants()
    finally:
        await client.close()
    keys = ("participant", "replica", "host", "pid", "handles", "requests", "tables", "metrics_url")
    return [{key: answer.get(key) for key in keys} for answer in answers]


def _print(found: list[dict[str, Any]], term: Terminal) -> None:
    from sagactl.views.lists import participants_table

    if not found:
        term.err.print("no participant answered")
        return
    term.out.print(participants_table(found))
