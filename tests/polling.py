"""Waiting in tests: poll a condition until it holds or a deadline passes; never sleep to synchronise.

`wait_for` for plain code, `eventually` for async code; both return the condition's first truthy
value and fail with what was awaited (and the last error the condition raised, if any).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

DEADLINE_S = 60.0  # generous: the machine running the suite may be busy


def _timed_out(what: str, timeout: float, last_error: BaseException | None) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


def wait_for(condition: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE_S, every: float = 0.05,
             retry_on: tuple[type[BaseException], ...] = ()) -> Any:
    """Call `condition` until it returns something truthy; errors of the `retry_on` types (a
    system still restarting, say) count as "not yet"; any other error fails at once."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        time.sleep(every)


async def eventually(condition: Callable[[], Awaitable[Any]], what: str = "condition", timeout: float = DEADLINE_S,
                     every: float = 0.1, retry_on: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """Await `condition()` until it returns something truthy. Every error counts as "not yet" by
    default (the fault tests poll a system they are killing); narrow `retry_on` where one is a bug."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = await condition()
            if value:
                return value
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        await asyncio.sleep(every)
