"""What every command shares: the consoles, the common options, and the one error mapping."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Coroutine, TypeVar

import typer
from rich.console import Console

from sagactl.errors import ExitCode, SagactlError
from sagactl.system.statedir import StateDir

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


def state_dir(path: Path | None) -> StateDir:
    return StateDir.at(path)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> typer.Exit:
    err.print(f"[bold red]sagactl: error:[/] {message}", markup=True, highlight=False)
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
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("SAGACTL_TRACEBACK"):
                raise
            raise fail(f"internal error: {type(exc).__name__}: {exc} (rerun with SAGACTL_TRACEBACK=1)", ExitCode.INTERNAL) from None

    return wrapper
