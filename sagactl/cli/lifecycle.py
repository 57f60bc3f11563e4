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
    Terminal,
    TlsCaOption,
    WatchOption,
    handle_errors,
    nats_urls,
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
from sagactl.system.references import parse_with
from sagactl.system.supervisor import Supervisor


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
    sale_deadline: Annotated[float | None, typer.Option("--sale-deadline", envvar="SAGACTL_SALE_DEADLINE", help="Cancel every sale still PENDING this many seconds after its submit ('deadline exceeded'; default: none).", show_default=False)] = None,
    creds: CredsOption = None,
    tls_ca: TlsCaOption = None,
    *,
    term: Terminal,
) -> None:
    """Start NATS (embedded unless --nats-url) and the three participants; return when all are ready.

    Running it again starts only what is missing, so it also restarts a participant (or cluster
    node) that died, and `up --with MODULE:OBJECT` adds a participant to a running system without
    touching the others. It remembers --db-url, --creds and --tls-ca.

    Example: sagactl up --replicas inventory=3 --with examples.shipping:participant
    """
    if cluster is not None and nats_url:
        raise UsageError("--cluster starts embedded servers; it cannot be combined with --nats-url")
    if sale_deadline is not None and not 0 < sale_deadline <= 7 * 24 * 3600:
        raise UsageError(f"--sale-deadline must be more than 0 and at most 604800 seconds, not {sale_deadline:g}")
    use_connection_files(creds, tls_ca)
    supervisor = Supervisor(state_dir(state))
    if sale_deadline is not None:
        supervisor.remember(sale_deadline=sale_deadline)
    if nats_url:  # a wrong URL, credential or CA fails here in one line, before anything starts
        check_reachable(nats_urls(supervisor, nats_url))
    extra = parse_with(with_)
    counts = parse_replicas(replicas)
    known = {**BUILT_IN, **(supervisor.state.load_system().get("participants") or {}), **extra}
    unknown = sorted(set(counts) - set(known))
    if unknown:
        raise UsageError(f"--replicas {unknown[0]}=...: no participant named {unknown[0]!r} (known: {', '.join(known)}; "
                         "add your own with --with MODULE:OBJECT)")
    with term.err.status("starting NATS and the participants…"):
        urls = supervisor.up(nats_url, participants={**BUILT_IN, **extra}, replicas=counts,
                             db_urls=parse_db_urls(db_url), cluster=cluster)
    running = [f"{p.name}" + (f"-{p.replica}" if p.replica > 1 else "") for p in supervisor.processes() if p.running]
    term.err.print(f"up: NATS {supervisor.describe_url(urls)}; running: {', '.join(running)}; state in {supervisor.state.root}")


def down(
    state: StateDirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the databases, the stream store and the logs.")] = False,
    remove: Annotated[list[str], typer.Option("--remove", help="Stop only this participant added with `up --with` and forget it (repeatable); the rest keeps running, its database stays.")] = [],
    *,
    term: Terminal,
) -> None:
    """Stop everything `sagactl up` started in this state directory.

    Example: sagactl down --purge
    """
    supervisor = Supervisor(state_dir(state))
    if remove:
        if purge:
            raise UsageError("--remove stops one participant and keeps every database; it cannot be combined with --purge")
        for name in remove:
            stopped = supervisor.remove(name)
            term.err.print(f"down: {name} removed" + (f" (stopped {', '.join(stopped)})" if stopped else " (it was not running)"))
        return
    stopped = supervisor.down(purge=purge)
    what = ", ".join(stopped) if stopped else "nothing was running"
    term.err.print(f"down: {what}" + ("; databases, stream store and logs deleted" if purge else ""))


def status(state: StateDirOption = None, nats_url: NatsUrlOption = None, json: JsonOption = False,
           watch: WatchOption = False, interval: IntervalOption = 1.0, creds: CredsOption = None, tls_ca: TlsCaOption = None,
           *, term: Terminal) -> None:
    """Show the NATS URL, each participant process, the stream and each consumer's backlog.

    Exit 0 when NATS answers and every participant process runs and says it is connected and
    consuming, 3 when NATS does not answer, 1 otherwise. Warns when the stream is over 80 % full
    (it then refuses new events). --watch redraws it in place.

    Example: sagactl status --json
    """
    from sagactl.views.status import render_status

    use_connection_files(creds, tls_ca)
    supervisor = Supervisor(state_dir(state))
    if watch:
        from sagactl.views import live

        return live.watch(lambda: _status_report(supervisor, nats_url), render_status, interval, json, term.out)
    report = _status_report(supervisor, nats_url)
    if json:
        print_json(report)
    else:
        term.out.print(render_status(report))
    if not report["nats_reachable"]:  # no answer at all is "unreachable" (3), not a "no" (1)
        raise typer.Exit(int(ExitCode.UNAVAILABLE))
    if not report["healthy"]:
        raise typer.Exit(int(ExitCode.FAILED))


def _status_report(supervisor: Supervisor, nats_url: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"state_dir": str(supervisor.state.root)}
    try:
        urls = nats_urls(supervisor, nats_url)
        report["nats_url"] = supervisor.describe_url(urls)
    except Unavailable:
        urls, report["nats_url"] = [], None
    report["sale_deadline"] = supervisor.state.load_system().get("sale_deadline")
    report["participants"] = [
        {"name": p.name, "replica": p.replica, "pid": p.pid, "running": p.running, "log": str(p.log_file)}
        for p in supervisor.processes()
    ]
    report.update(_servers_and_databases(supervisor))
    report["stream"], report["consumers"], report["dead_letters"], report["warnings"] = None, [], None, []
    report["nats_reachable"] = False
    pings: list[dict[str, Any]] = []
    if urls:
        running = [p for p in report["participants"] if p["running"]]
        try:
            result = run_async(_stream_report(urls, {(p["name"], p["replica"]) for p in running},
                                              sorted({p["name"] for p in running}), len(running)))
            pings = result.pop("pings")
            report.update(result)
            report["nats_reachable"] = True
        except Unavailable as exc:
            report["nats_error"] = str(exc)
    metrics_urls = report.pop("metrics_urls", {})  # from the discovery replies: None when metrics are off
    for p in report["participants"]:
        p["metrics_url"] = metrics_urls.get((p["name"], p["replica"]))
    _judge_processes(report["participants"], pings)
    stream = report["stream"]
    if stream and stream["max_bytes"] > 0 and stream["bytes"] > stream["warn_above"] * stream["max_bytes"]:
        report["warnings"].append(f"stream {stream['name']} is {100 * stream['bytes'] // stream['max_bytes']}% full "
                                  f"({stream['bytes']} of {stream['max_bytes']} bytes): when full it refuses new events")
    healthy = report["nats_reachable"] and bool(report["participants"]) and all(p["healthy"] for p in report["participants"])
    report["healthy"] = healthy
    return report


def _judge_processes(processes: list[dict[str, Any]], pings: list[dict[str, Any]]) -> None:
    """A running process is healthy only when its ping reply says connected and consuming."""
    from sagactl.system.health import healthy, why_unhealthy

    by_pid = {reply.get("pid"): reply for reply in pings}
    for process in processes:
        reply = by_pid.get(process["pid"]) if process["running"] else None
        process["connected"] = bool(reply and reply.get("connected") is True)
        process["consuming"] = bool(reply and reply.get("consuming") is True)
        process["healthy"] = process["running"] and healthy(reply)
        if process["running"] and not process["healthy"]:
            process["problem"] = why_unhealthy(reply)


def _servers_and_databases(supervisor: Supervisor) -> dict[str, Any]:
    """The embedded cluster's nodes (if any) and the database URLs given to `up` (redacted)."""
    from sagactl.system.cluster import EmbeddedCluster
    from sagactl.system.cluster import describe as describe_nodes
    from sagactl.system.connection import redact_db_url

    cluster = EmbeddedCluster(supervisor.state)
    databases = supervisor.state.load_system().get("db_urls") or {}
    return {"cluster": describe_nodes(cluster.nodes(), cluster) or None,
            "databases": {name: redact_db_url(url) for name, url in databases.items()}}


async def _stream_report(urls: list[str], replicas: set[tuple[str, int]], running: list[str], processes: int) -> dict[str, Any]:
    from nats.js.errors import NotFoundError

    from participants.contract import DEAD_LETTER_STREAM, STREAM
    from participants.runtime import broker
    from sagactl.system.connection import connect
    from sagactl.system.health import ping_replicas

    from sagactl.system.metrics import metrics_urls

    nc = await connect(urls, "sagactl-status")
    try:
        js = nc.jetstream()
        result: dict[str, Any] = {"stream": None, "consumers": [], "dead_letters": None,
                                  "metrics_urls": await metrics_urls(nc, replicas)}
        result["pings"] = await ping_replicas(nc, running, expected=processes) if running else []
        try:
            info = await js.stream_info(STREAM)
        except NotFoundError:
            return result
        result["stream"] = {"name": STREAM, "messages": info.state.messages, "bytes": info.state.bytes,
                            "first_seq": info.state.first_seq, "last_seq": info.state.last_seq,
                            "max_bytes": info.config.max_bytes if info.config.max_bytes is not None else -1,
                            "warn_above": broker.STREAM_FULL_WARNING,
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


def parse_replicas(specs: list[str]) -> dict[str, int]:
    """`inventory=3` -> {"inventory": 3}; a usage error for anything else."""
    result = {}
    for spec in specs:
        name, _, count = spec.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            raise UsageError(f"--replicas takes NAME=COUNT with COUNT >= 1, not {spec!r}")
        result[name] = int(count)
    return result
