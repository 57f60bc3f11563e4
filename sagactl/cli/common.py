"""What every command shares: its terminal, the common options, and the one error mapping."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Callable, Coroutine, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sagactl.errors import ExitCode, SagactlError, Unavailable, UsageError
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

T = TypeVar("T")


@dataclass(frozen=True)
class Terminal:
    """The two consoles of one command: data on `out` (stdout); messages, progress and errors on `err` (stderr).

    `handle_errors` makes one per invocation and hands it to the command: no module holds a console
    of its own, and a command prints only where it is told to.
    """

    out: Console
    err: Console

    @classmethod
    def standard(cls) -> Terminal:
        return cls(out=Console(highlight=False, soft_wrap=True),
                   err=Console(stderr=True, highlight=False, soft_wrap=True))

    def print_error(self, message: str) -> None:
        """The one error style: `sagactl: error: what went wrong (what to do)` on stderr."""
        # Escaped: a message is plain text, and "[postgres]" or "[OPTIONS]" in it is no markup.
        self.err.print(f"[bold red]sagactl: error:[/] {escape(message)}", markup=True, highlight=False)

    def fail(self, message: str, code: ExitCode = ExitCode.FAILED) -> typer.Exit:
        self.print_error(message)
        return typer.Exit(int(code))


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


def handle_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Run a command with a fresh `Terminal` (its keyword-only `term`), sagactl's errors made one line
    on that terminal's stderr and the exit code they carry.

    Typer builds the options from the signature: the wrapper shows the command's own without `term`,
    so `--help` and parsing never see it.
    """
    signature = inspect.signature(function, eval_str=True)  # evaluated: Typer reads the Annotated options from it
    term_parameter = signature.parameters.get("term")
    if term_parameter is None or term_parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"{function.__qualname__}: a command takes its Terminal as a keyword-only parameter `term`")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        term = Terminal.standard()
        try:
            return function(*args, **kwargs, term=term)
        except SagactlError as exc:
            raise term.fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except OSError as exc:
            if exc.filename is None:  # not a file: a connection, a process
                raise term.fail(f"internal error: {type(exc).__name__}: {exc} (rerun with SAGACTL_TRACEBACK=1)", ExitCode.INTERNAL) from None
            # An unusable path (read-only, a file where a directory goes, /proc): the user's to fix.
            raise term.fail(f"cannot use {exc.filename}: {exc.strerror or exc} (choose another --state-dir DIR, or fix "
                            "its permissions)", ExitCode.USAGE) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("SAGACTL_TRACEBACK"):
                raise
            raise term.fail(f"internal error: {type(exc).__name__}: {exc} (rerun with SAGACTL_TRACEBACK=1)", ExitCode.INTERNAL) from None

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "term"])
    return wrapper
