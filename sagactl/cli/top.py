"""`sagactl top`: the running system on one live screen, like htop for sagas."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from sagactl.cli.common import NatsUrlOption, StateDirOption, Terminal, handle_errors, run_async, state_dir
from sagactl.errors import Unavailable, UsageError

UP, DOWN = ("\x1b[A", "k"), ("\x1b[B", "j")
OPEN, BACK, QUIT = ("\r", "\n", "t"), ("\x1b",), ("q", "Q")
CATCH_UP_S = 5.0  # --once: how long to wait for the backfill to arrive


def register(app: typer.Typer) -> None:
    app.command()(handle_errors(top))


def top(
    state: StateDirOption = None,
    nats_url: NatsUrlOption = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between samples.")] = 1.0,
    stuck_after: Annotated[float, typer.Option("--stuck-after", help="A pending saga with no event for this many seconds is stuck.")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit (no full screen, no keys).")] = False,
    *,
    term: Terminal,
) -> None:
    """A live full-screen view: sagas/s, events/s, in flight, p50/p99, every participant replica,
    the latest sagas and the stuck ones. Keys: ↑/↓ (or k/j) select a saga, enter its trace, esc
    back, q (or Ctrl-C) quit. It survives a NATS restart (it says so and goes on).

    Example: sagactl top --interval 2
    """
    if interval <= 0:
        raise UsageError(f"--interval must be > 0, not {interval:g}")
    supervisor = _supervisor(state)
    urls = supervisor.nats_urls(nats_url)
    run_async(_run(urls, supervisor.expected_participants(), interval, stuck_after, once, term.out))


def _supervisor(state: Any) -> Any:
    from sagactl.system.supervisor import Supervisor

    return Supervisor(state_dir(state))


async def _run(urls: list[str], expected: list[str], interval: float, stuck_after: float, once: bool, out: Console) -> None:
    from participants.runtime import broker
    from sagactl.system.top import TopCollector

    try:
        nc = await broker.connect(urls, "sagactl-top", reconnect_forever=True)
    except broker.BrokerUnavailable as exc:
        raise Unavailable(str(exc)) from None
    collector = TopCollector(nc, expected, stuck_after)
    follow = asyncio.create_task(collector.follow())
    try:
        if once:
            await _once(collector, interval, out)
        else:
            await _screen(collector, interval)
    finally:
        follow.cancel()
        try:
            await collector.close()
        except Exception:
            pass
        if not nc.is_closed:
            await nc.close()


async def _once(collector: Any, interval: float, out: Console) -> None:
    from sagactl.views.top import render_top

    await collector.sample()
    await asyncio.sleep(interval)  # a second sample, for the CPU figures (a rate)
    await collector.sample()
    deadline = time.monotonic() + CATCH_UP_S  # the backfill: until the reader reached the stream's end
    while time.monotonic() < deadline and not collector.caught_up():
        await asyncio.sleep(0.05)
    out.print(render_top(collector.view(), selected=-1, interval=interval))


async def _screen(collector: Any, interval: float) -> None:
    from rich.live import Live

    from sagactl.views.top import render_top, render_trace_panel

    loop = asyncio.get_running_loop()
    stop, keys = asyncio.Event(), asyncio.Queue[str]()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    terminal = _Keys(loop, keys)
    selected, tracing = 0, None
    try:
        with Live(console=Console(), screen=True, auto_refresh=False, redirect_stdout=False) as live:
            sampled = 0.0
            while not stop.is_set():
                if time.monotonic() - sampled >= interval:
                    await collector.sample()
                    sampled = time.monotonic()
                view = collector.view()
                selected = min(selected, max(len(view.latest) - 1, 0))
                live.update(render_trace_panel(tracing) if tracing else render_top(view, selected, interval), refresh=True)
                key = await _next_key(keys, stop, max(interval - (time.monotonic() - sampled), 0.05))
                if key in QUIT:
                    break
                if key in UP:
                    selected = max(selected - 1, 0)
                elif key in DOWN:
                    selected += 1
                elif key in OPEN and view.latest:
                    tracing = view.latest[selected]
                elif key in BACK:
                    tracing = None
    finally:
        terminal.restore()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _next_key(keys: "asyncio.Queue[str]", stop: asyncio.Event, timeout: float) -> str | None:
    """The next key pressed within `timeout` seconds, None when none was (or `stop` was set)."""
    getter = asyncio.ensure_future(keys.get())
    stopped = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait({getter, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return getter.result() if getter in done else None


class _Keys:
    """Keys from the terminal, unbuffered and not echoed (cbreak), until `restore`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keys: "asyncio.Queue[str]") -> None:
        self.loop, self.keys, self.fd, self.saved = loop, keys, None, None
        if not sys.stdin.isatty():
            return
        import termios
        import tty

        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)  # Ctrl-C still raises SIGINT: the handler above stops the screen
        loop.add_reader(self.fd, self._read)

    def _read(self) -> None:
        data = os.read(self.fd, 64).decode(errors="ignore")  # type: ignore[arg-type]
        while data:
            key = data[:3] if data.startswith("\x1b[") else data[0]
            self.keys.put_nowait(key)
            data = data[len(key):]

    def restore(self) -> None:
        if self.fd is None:
            return
        import termios

        self.loop.remove_reader(self.fd)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        self.fd = None
