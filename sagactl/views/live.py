"""Live views (`state --watch`, `status --watch`): a view redrawn in place, changed lines highlighted.

A view is rendered by the same function that prints it once; its output is captured on the
console the command hands in and compared line by line with the previous frame, so a table row
that changed (or is new) is highlighted without the table code knowing about refreshes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any, Callable, TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.text import Text

from sagactl.errors import SagactlError, UsageError

T = TypeVar("T")

HIGHLIGHT = "bold on grey30"


def highlight_changes(previous: list[str], current: list[str]) -> list[Text]:
    """The current frame's lines (ANSI text) with those not in the previous frame highlighted.

    Lines are compared by their plain text, as a multiset: a row that only moved is not a change.
    The first frame (no previous) highlights nothing.
    """
    seen = Counter(Text.from_ansi(line).plain for line in previous)
    result = []
    for line in current:
        text = Text.from_ansi(line)
        if previous and seen[text.plain] == 0 and text.plain.strip():
            text.stylize(HIGHLIGHT)
        else:
            seen[text.plain] -= 1
        result.append(text)
    return result


Draw = Callable[[T], RenderableType]


def watch(fetch: Callable[[], T], draw: Draw[T], interval: float, as_json: bool, out: Console) -> None:
    """Fetch and draw on `out` every `interval` seconds until Ctrl-C; JSON: one line per change."""
    if interval <= 0:
        raise UsageError(f"--interval must be > 0, not {interval:g}")
    try:
        if as_json:
            _watch_json(fetch, interval)
        elif out.is_terminal:
            _watch_live(fetch, draw, interval, out)
        else:
            _watch_frames(fetch, draw, interval, out)
    except KeyboardInterrupt:
        return


def _frame(fetch: Callable[[], T], draw: Draw[T], out: Console) -> list[str]:
    with out.capture() as capture:
        try:
            out.print(draw(fetch()))
        except SagactlError as exc:  # NATS restarting, a participant gone: say so and keep watching
            out.print(f"[bold red]{exc}[/]")
    return capture.get().splitlines()


def _watch_live(fetch: Callable[[], T], draw: Draw[T], interval: float, out: Console) -> None:
    previous: list[str] = []
    # Frames are captured on `out`; the live display needs a console of its own, or its render
    # hook would put the display itself into every capture.
    screen = Console(highlight=False)
    with Live(console=screen, auto_refresh=False) as live:
        while True:
            lines = _frame(fetch, draw, out)
            stamp = Text(f"{datetime.now():%H:%M:%S} · every {interval:g}s · Ctrl-C to stop", style="dim")
            live.update(Group(*highlight_changes(previous, lines), stamp), refresh=True)
            previous = lines
            time.sleep(interval)


def _watch_frames(fetch: Callable[[], T], draw: Draw[T], interval: float, out: Console) -> None:
    """Not a terminal (piped, logged): print a whole frame each time it changed."""
    previous: list[str] = []
    while True:
        lines = _frame(fetch, draw, out)
        if lines != previous:
            out.print(Rule(f"{datetime.now():%H:%M:%S}"))
            out.print("\n".join(lines), markup=False, highlight=False)
            previous = lines
        time.sleep(interval)


def _watch_json(fetch: Callable[[], Any], interval: float) -> None:
    previous: Any = None
    while True:
        try:
            data = fetch()
        except SagactlError as exc:
            data = {"error": str(exc)}
        if data != previous:
            sys.stdout.write(json.dumps(data, default=str) + "\n")
            sys.stdout.flush()
            previous = data
        time.sleep(interval)
