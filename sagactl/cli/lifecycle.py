"""`sagactl up`, `down` and `status`: the processes of a system and what NATS holds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from participants.runtime.loader import BUILT_IN
from sagactl.cli.common import (
    CredsOption,
    IntervalOption,
    JsonOption,
    NatsUrlOption,
    StateDirOption,
    TlsCaOption,
    WatchOption,
    err,
    handle_errors,
    out,
    print_json,
    run_async,
    state_dir,
)
from sagactl.errors import ExitCode, Unavailable, UsageError
from sagactl.system.connection import (
    check_reachable,
    parse_db_urls,
    use_connection_files,
)
from sagactl.system.supervisor import Supervisor, parse_replicas, parse_with


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(up))
    app.command()(handle_errors(down))
    app.command()(handle_errors(status))


def up(
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    replicas: Annotated[list[str], typer.Option("--replicas", help="Processes of one participant, e.g. inventory=3 (repeatable).")] = [],
    with_: Annotated[list[str], typer.Option("--with", help="Also run your own participant, MODULE:OBJECT (repeatable); it joins a running system live.")] = [],
    cluster: Annotated[int | None, typer.Option("--cluster", help="Start an embedded JetStream cluster of this many nodes (2-5) instead of one server.")] = None,
    db_url: Annotated[list[str], typer.Option("--db-url", help="A participant's database, e.g. sale=postgresql+psycopg://user@host/sale (repeatable; env SAGACTL_DB_URL_<NAME>).")] = [],
    creds: CredsOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Start NATS (embedded unless --nats-url) and the three participants; return when all are ready.

    Running it again starts only what is missing, so it also restarts a participant (or cluster
    node) that died, and `up --with MODULE:OBJECT` adds a participant to a running system without
    touching the others. It remembers --db-url, --creds and --tls-ca.

    Example: sagactl up --cluster 3 --replicas inventory=3 --with examples.shipping:participant
    """
    if cluster is not None and nats_url:
        raise UsageError("--cluster starts embedded servers; it cannot be combined with --nats-url")
    use_connection_files(creds, tls_ca)
    supervisor = Supervisor(state_dir(state))
    if nats_url:  # a wrong URL, credential or CA fails here in one line, before anything starts
        check_reachable(supervisor.nats_urls(nats_url))
    extra = parse_with(with_)
    with err.status("starting NATS and the participants…"):
        urls = supervisor.up(nats_url, participants={**BUILT_IN, **extra}, replicas=parse_replicas(replicas),
                             db_urls=parse_db_urls(db_url), cluster=cluster)
    running = [f"{p.name}" + (f"-{p.replica}" if p.replica > 1 else "") for p in supervisor.processes() if p.running]
    err.print(f"up: NATS {supervisor.describe_url(urls)}; running: {', '.join(running)}; state in {supervisor.state.root}")


def down(
    state: StateDirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the databases and the stream store.")] = False,
) -> None:
    """Stop everything `sagactl up` started in this state directory.

    Example: sagactl down --purge
    """
    supervisor = Supervisor(state_dir(state))
    stopped = supervisor.down(purge=purge)
    what = ", ".join(stopped) if stopped else "nothing was running"
    err.print(f"down: {what}" + ("; databases and stream store deleted" if purge else ""))


def status(state: StateDirOption = None, nats_url: NatsUrlOption = None, json: JsonOption = False,
           watch: WatchOption = False, interval: IntervalOption = 1.0, creds: CredsOption = None, tls_ca: TlsCaOption = None) -> None:
    """Show the NATS URL, each participant process, the stream and each consumer's backlog.

    Exit 0 when every participant runs and NATS answers, 1 otherwise. --watch redraws it in place.

    Example: sagactl status --json
    """
    use_connection_files(creds, tls_ca)
    supervisor = Supervisor(state_dir(state))
    if watch:
        from sagactl.views import live

        return live.watch(lambda: _status_report(supervisor, nats_url), _print_status, interval, json)
    report = _status_report(supervisor, nats_url)
    if json:
        print_json(report)
    else:
        _print_status(report)
    if not report["healthy"]:
        raise typer.Exit(int(ExitCode.FAILED))


def _status_report(supervisor: Supervisor, nats_url: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"state_dir": str(supervisor.state.root)}
    try:
        urls = supervisor.nats_urls(nats_url)
        report["nats_url"] = supervisor.describe_url(urls)
    except Unavailable:
        urls, report["nats_url"] = [], None
    report["participants"] = [
        {"name": p.name, "replica": p.replica, "pid": p.pid, "running": p.running, "log": str(p.log_file)}
        for p in supervisor.processes()
    ]
    report.update(_servers_and_databases(supervisor))
    report["stream"], report["consumers"], report["dead_letters"] = None, [], None
    report["nats_reachable"] = False
    if urls:
        from participants.runtime import (
            broker,  # imports nats: only when there is a server to ask
        )

        try:
            running = {(p["name"], p["replica"]) for p in report["participants"] if p["running"]}
            report.update(run_async(_stream_report(urls, running)))
            report["nats_reachable"] = True
        except broker.BrokerUnavailable as exc:
            report["nats_error"] = str(exc)
    metrics_urls = report.pop("metrics_urls", {})  # from the discovery replies: None when metrics are off
    for p in report["participants"]:
        p["metrics_url"] = metrics_urls.get((p["name"], p["replica"]))
    healthy = report["nats_reachable"] and bool(report["participants"]) and all(p["running"] for p in report["participants"])
    report["healthy"] = healthy
    return report


def _servers_and_databases(supervisor: Supervisor) -> dict[str, Any]:
    """The embedded cluster's nodes (if any) and the database URLs given to `up` (redacted)."""
    from sagactl.system.cluster import EmbeddedCluster
    from sagactl.system.cluster import describe as describe_nodes
    from sagactl.system.connection import redact_db_url

    cluster = EmbeddedCluster(supervisor.state)
    databases = supervisor.state.load_system().get("db_urls") or {}
    return {"cluster": describe_nodes(cluster.nodes(), cluster) or None,
            "databases": {name: redact_db_url(url) for name, url in databases.items()}}


async def _stream_report(urls: list[str], running: set[tuple[str, int]]) -> dict[str, Any]:
    from nats.js.errors import NotFoundError

    from participants.contract import DEAD_LETTER_STREAM, STREAM
    from participants.runtime import broker

    from sagactl.system.metrics import metrics_urls

    nc = await broker.connect(urls, "sagactl-status", reconnect_forever=False)
    try:
        js = nc.jetstream()
        result: dict[str, Any] = {"stream": None, "consumers": [], "dead_letters": None,
                                  "metrics_urls": await metrics_urls(nc, running)}
        try:
            info = await js.stream_info(STREAM)
        except NotFoundError:
            return result
        result["stream"] = {"name": STREAM, "messages": info.state.messages, "bytes": info.state.bytes,
                            "first_seq": info.state.first_seq, "last_seq": info.state.last_seq,
                            "replicas": info.config.num_replicas, "leader": info.cluster.leader if info.cluster else None}
        for consumer in await js.consumers_info(STREAM):
            result["consumers"].append({
                "name": consumer.name,
                "pending": consumer.num_pending,
                "ack_pending": consumer.num_ack_pending,
                "redelivered": consumer.num_redelivered,
            })
        try:
            result["dead_letters"] = (await js.stream_info(DEAD_LETTER_STREAM)).state.messages
        except NotFoundError:
            result["dead_letters"] = 0
        return result
    finally:
        await nc.close()


def _print_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    nats = report["nats_url"] or "(none: run `sagactl up`)"
    reach = "reachable" if report["nats_reachable"] else "[red]not reachable[/]"
    out.print(f"NATS: {nats} ({reach})   state: {report['state_dir']}")
    if report.get("cluster"):
        nodes = ", ".join(f"{n['name']} {'[green]running[/]' if n['running'] else '[red]stopped[/]'}" for n in report["cluster"])
        out.print(f"cluster: {nodes}")
    for name, url in (report.get("databases") or {}).items():
        out.print(f"database {name}: {url}")
    processes = Table(title="participants", title_justify="left")
    for column in ("name", "replica", "pid", "state", "log"):
        processes.add_column(column)
    for p in report["participants"]:
        state = "[green]running[/]" if p["running"] else "[red]stopped[/]"
        processes.add_row(p["name"], str(p["replica"]), str(p["pid"] or "—"), state, p["log"])
    out.print(processes)
    if report["stream"]:
        s = report["stream"]
        where = f", {s['replicas']} replicas, leader {s['leader']}" if s.get("leader") else ""
        out.print(f"stream {s['name']}: {s['messages']} messages ({s['bytes']} bytes){where}, dead letters: {report['dead_letters']}")
        consumers = Table(title="consumers", title_justify="left")
        for column in ("consumer", "pending", "ack pending", "redelivered"):
            consumers.add_column(column, justify="right" if column != "consumer" else "left")
        for c in report["consumers"]:
            consumers.add_row(c["name"], str(c["pending"]), str(c["ack_pending"]), str(c["redelivered"]))
        out.print(consumers)
