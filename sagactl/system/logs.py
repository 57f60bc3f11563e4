"""The participants' structured logs in the state directory (`logs/<name>[-<replica>].log`).

Each line a participant writes is one JSON object (participants/runtime/eventlog.py); anything
else in the file (a Python traceback of a process that died) is kept as raw text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from participants.runtime.loader import BUILT_IN
from sagactl.errors import UsageError
from sagactl.system.statedir import StateDir

FOLLOW_POLL_S = 0.2
_LOG_NAME = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*?)(?:-(?P<replica>\d+))?\.log$")


@dataclass(frozen=True)
class LogLine:
    """One line of a participant's log: its JSON record, or raw text when it is not one."""

    file: str
    record: dict[str, Any] | None
    raw: str

    @property
    def ts(self) -> float | None:
        value = self.record.get("ts") if self.record else None
        return value if isinstance(value, (int, float)) else None


def parse_line(file: str, raw: str) -> LogLine:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    return LogLine(file, record if isinstance(record, dict) else None, raw)


def services(state: StateDir) -> set[str]:
    """Participants this state dir knows: the built-in three, those `up` started, those with a log."""
    names = set(BUILT_IN) | set(state.load_system().get("participants") or {})
    for path in state.logs_dir.glob("*.log"):
        match = _LOG_NAME.match(path.name)
        if match and match["name"] != "nats":
            names.add(match["name"])
    return names


def log_files(state: StateDir, service: str) -> list[Path]:
    """The log files of every replica of a participant; a usage error for an unknown one."""
    known = services(state)
    if service not in known:
        raise UsageError(f"unknown participant {service!r} (known: {', '.join(sorted(known))})")
    found = []
    for path in sorted(state.logs_dir.glob(f"{service}*.log")):
        match = _LOG_NAME.match(path.name)
        if match and match["name"] == service:
            found.append(path)
    return found


def read_lines(files: Iterable[Path]) -> tuple[list[LogLine], dict[Path, int]]:
    """Every complete line of the files, replicas merged by time, and where each file was read up to.

    A raw line (no timestamp) sorts with the record before it in its own file.
    """
    keyed: list[tuple[float, LogLine]] = []
    offsets: dict[Path, int] = {}
    for path in files:
        content = path.read_bytes()
        complete = content[: content.rfind(b"\n") + 1]  # a line still being written waits for follow
        offsets[path] = len(complete)
        previous = 0.0
        for raw in complete.decode(errors="replace").splitlines():
            if raw.strip():
                line = parse_line(path.name, raw)
                previous = line.ts if line.ts is not None else previous
                keyed.append((previous, line))
    keyed.sort(key=lambda pair: pair[0])  # stable: each file keeps its own order on equal times
    return [line for _, line in keyed], offsets


def follow(files: Callable[[], list[Path]], emit: Callable[[LogLine], None], offsets: dict[Path, int]) -> None:
    """Emit lines appended to the files after `offsets` (new replicas' files too) until interrupted."""
    offsets = dict(offsets)
    while True:
        for path in files():
            with open(path, "rb") as handle:
                handle.seek(offsets.get(path, 0))
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            if not complete:
                continue
            offsets[path] = offsets.get(path, 0) + len(complete)
            for raw in complete.decode(errors="replace").splitlines():
                if raw.strip():
                    emit(parse_line(path.name, raw))
        time.sleep(FOLLOW_POLL_S)


def records_about(state: StateDir, event_ids: set[str], stream_seqs: set[int]) -> Iterator[dict[str, Any]]:
    """The records of every participant's log about these events (handled, duplicate, failed, dead letter)."""
    for path in sorted(state.logs_dir.glob("*.log")):
        match = _LOG_NAME.match(path.name)
        if not match or match["name"] == "nats":
            continue
        with open(path, "rb") as handle:
            for raw in handle:
                if b'"event_id"' not in raw and b'"stream_seq"' not in raw:
                    continue
                line = parse_line(path.name, raw.decode(errors="replace"))
                record = line.record
                if record and (record.get("event_id") in event_ids or record.get("stream_seq") in stream_seqs):
                    yield record
