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
        # The per-event lines of a batch wait here as bytes and go out in one write at flush():
        # a text write per line was 2-5 % of a participant under load.
        self._pending: list[bytes] = []

    def write(self, what: str, *, flush: bool = True, **fields: Any) -> None:
        """One line; `flush=False` for the per-event lines of a batch (the daemon flushes once per batch)."""
        record = {"ts": time.time(), "participant": self._participant, "replica": self._replica, "what": what}
        record.update(fields)
        self._pending.append(orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE))
        if flush:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = b"".join(self._pending), []
            buffer = getattr(self._stream, "buffer", None)
            if buffer is not None:
                self._stream.flush()  # anything printed as text before goes first
                buffer.write(lines)
                buffer.flush()
                return
            self._stream.write(lines.decode())
        self._stream.flush()
