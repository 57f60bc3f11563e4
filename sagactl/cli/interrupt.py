"""Ending a following command cleanly: Ctrl-C or SIGTERM stop it as a normal end, exit 0."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Coroutine


async def until_interrupted(coroutine: Coroutine[Any, Any, Any]) -> bool:
    """Run `coroutine` until it ends or SIGINT/SIGTERM cancels it (its cleanup runs); True if interrupted."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
        except (RuntimeError, ValueError):  # not the main thread (an embedding program): no handler
            pass
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return interrupted
