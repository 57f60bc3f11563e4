"""What every command shares: the consoles, the common options, and the one error mapping."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Callable, Coroutine, TypeVar

import typer
from rich.console import Console

from sagactl.errors import ExitCode, SagactlError, Unavailable, UsageError
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

T = TypeVar("T")

# Data goes to stdout; messages, progress and errors to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="SAGACTL_STATE_DIR", help="Where pids, logs, databases and the NATS store live [default: ./.sagactl].", show_default=False),
]
NatsUrlOption = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="NATS_URL", help="Use this NATS server (or comma-separated cluster) instead of the embedded one."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
CredsOption = Annotated[
    Path | None,
    typer.Option("--creds", envvar="SAGACTL_NATS_CREDS", help="NATS .creds file (user JWT and seed) for a secured server."),
]
TlsCaOption = Annotated[
    Path | None,
    typer.Option("--tls-ca", envvar="SAGACTL_TLS_CA", help="CA certificate file to verify the NATS server's TLS certificate."),
]
WatchOption = Annotated[bool, typer.Option("--watch", help="Redraw in place until Ctrl-C, changed rows highlighted (with --json: one line per change).")]
IntervalOption = Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.")]


# Ids are SQLite/PostgreSQL BIGINTs: a larger number is bad input, not an overflow in a database.
MAX_ID = 2**63 - 1
URL_SCHEMES = ("nats", "tls", "ws", "wss")


def state_dir(path: Path | None) -> StateDir:
    state = StateDir.at(path)
    if state.root.exists() and not state.root.is_dir():
        raise UsageError(f"state dir {state.root} is a file, not a directory (choose one with --state-dir DIR)")
    return state


def integer(raw: str | int, option: str, minimum: int = 1, maximum: int = MAX_ID) -> int:
    """An integer option checked here, in sagactl's words (`--product-id: expected 1 to ...`)."""
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise UsageError(f"{option}: {raw!r} is not an integer") from None
    if not minimum <= number <= maximum:
        bound = f">= {minimum}" if number < minimum else f"<= {maximum}"
        raise UsageError(f"{option}: expected an integer {bound}, got {number}")
    return number


def positive_seconds(value: float, option: str) -> float:
    if not value > 0:
        raise UsageError(f"{option}: expected a number of seconds above 0, got {value:g}")
    return value


def nats_urls(supervisor: Supervisor, given: str | None) -> list[str]:
    """The servers a command talks to: `--nats-url` checked for form, else this state dir's, if running.

    A state dir stopped with `sagactl down` still remembers its embedded server's URL; connecting to
    it would only say "connection refused", so say what is wrong and what to do instead.
    """
    if given:
        for url in (u.strip() for u in given.split(",") if u.strip()):
            check_nats_url(url)
        return supervisor.nats_urls(given)
    system = supervisor.state.load_system()
    urls = supervisor.nats_urls(None)
    if system.get("embedded") is not False and not _embedded_running(supervisor, system):
        raise Unavailable(f"nothing is running in {supervisor.state.root} (stopped): run `sagactl up` "
                          "(or pass --nats-url)")
    return urls


def check_nats_url(url: str) -> None:
    parsed = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme not in URL_SCHEMES or not parsed.hostname or port == -1 or port == 0:
        raise UsageError(f"--nats-url: {redact(url)!r} is not a NATS URL (expected e.g. nats://127.0.0.1:4222)")


def _embedded_running(supervisor: Supervisor, system: dict[str, Any]) -> bool:
    if system.get("cluster"):
        from sagactl.system.cluster import EmbeddedCluster

        cluster = EmbeddedCluster(supervisor.state)
        return any(cluster.node_pid(node) is not None for node in cluster.nodes())
    return supervisor.embedded_pid() is not None


def redact(url: str) -> str:
    from participants.runtime.broker import redact as redact_url

    return redact_url(url)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    """The one error style: `sagactl: error: what went wrong (what to do)` on stderr."""
    err.print(f"[bold red]sagactl: error:[/] {message}", markup=True, highlight=False)


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> typer.Exit:
    print_error(message)
    return typer.Exit(int(code))


def handle_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Turn sagactl's errors into one line on stderr and the exit code they carry."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except SagactlError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except OSError as exc:
            if exc.filename is None:  # not a file: a connection, a process
                raise fail(f"internal error: {type(exc).__name__}: {exc} (rerun with SAGACTL_TRACEBACK=1)", ExitCode.INTERNAL) from None
            # An unusable path (read-only, a file where a directory goes, /proc): the user's to fix.
            raise fail(f"cannot use {exc.filename}: {exc.strerror or exc} (choose another --state-dir DIR, or fix "
                       "its permissions)", ExitCode.USAGE) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("SAGACTL_TRACEBACK"):
                raise
            raise fail(f"internal error: {type(exc).__name__}: {exc} (rerun with SAGACTL_TRACEBACK=1)", ExitCode.INTERNAL) from None

    return wrapper
