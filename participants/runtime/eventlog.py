"""The participant's structured log: one JSON object per line on stderr.

The supervisor points stderr at `<state dir>/logs/<participant>.log`, so one file holds both
these lines and anything Python itself prints when a process dies.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson


class EventLog:
    def __init__(self, participant: str, replica: int = 1, stream: TextIO | None = None) -> None:
        self._participant = participant
        self._replica = replica
        self._stream = stream or sys.stderr

    def write(self, what: str, *, flush: bool = True, **fields: Any) -> None:
        """One line; `flush=False` for the per-event lines of a batch (the daemon flushes once per batch)."""
        record = {"ts": time.time(), "participant": self._participant, "replica": self._replica, "what": what}
        record.update(fields)
        self._stream.write(orjson.dumps(record, default=str).decode() + "\n")
        if flush:
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()
