"""How a participant process is configured: environment variables, read once at start.

The supervisor (`sagactl up`) sets these; a participant started by hand on another machine
sets them itself (see docs/deploy.md). A malformed value stops the process before it touches
its database, with one line naming the variable (`ConfigError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from participants.runtime.crashpoints import CrashPoints

T = TypeVar("T")
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# The environment variable of each setting, for whoever starts a participant process (`to_env`:
# the supervisor, tests); `from_env` reads the same names (tests/test_settings_env.py holds them
# together). The database's carries the participant's name: `db_url_env`.
ENV_NAMES = {
    "nats_urls": "NATS_URL",
    "state_dir": "SAGACTL_STATE_DIR",
    "replica": "SAGACTL_REPLICA",
    "replicas": "SAGACTL_REPLICAS",
    "batch_size": "SAGACTL_BATCH_SIZE",
    "max_deliver": "SAGACTL_MAX_DELIVER",
    "ack_wait_s": "SAGACTL_ACK_WAIT",
    "crash_point": "SAGACTL_CRASH_POINT",
    "sqlite_synchronous": "SAGACTL_SQLITE_SYNCHRONOUS",
    "sqlite_busy_timeout_s": "SAGACTL_SQLITE_BUSY_TIMEOUT",
    "stream_replicas": "SAGACTL_STREAM_REPLICAS",
    "stream_max_age_s": "SAGACTL_STREAM_MAX_AGE",
    "stream_max_bytes": "SAGACTL_STREAM_MAX_BYTES",
    "stream_duplicate_window_s": "SAGACTL_STREAM_DUPLICATE_WINDOW",
    "outbox_keep_s": "SAGACTL_OUTBOX_KEEP",
    "raw": "SAGACTL_RAW",
}


def db_url_env(participant: str) -> str:
    return f"SAGACTL_DB_URL_{participant.upper()}"


def to_env(participant: str = "", **settings: Any) -> dict[str, str]:
    """The environment that gives a participant process these settings, by Settings field name
    (`db_url` needs the participant's name): `to_env(ack_wait_s=2.5)` == {"SAGACTL_ACK_WAIT": "2.5"}."""
    env = {}
    for name, value in settings.items():
        variable = db_url_env(participant) if name == "db_url" else ENV_NAMES[name]
        if isinstance(value, bool):
            value = "1" if value else ""
        elif isinstance(value, list):
            value = ",".join(value)
        env[variable] = "" if value is None else str(value)
    return env


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the environment variable."""


@dataclass(frozen=True)
class Settings:
    nats_urls: list[str]
    db_url: str
    state_dir: Path
    replica: int = 1
    replicas: int = 1  # how many processes of this participant share its durable consumer
    batch_size: int = 256
    # Deliveries of an event whose handler keeps failing before it is dead-lettered. A database
    # that is locked or unreachable is not the event's fault: those failures retry without limit.
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    # "point" or "point:N": kill this process with SIGKILL the Nth time the point is reached.
    crash_point: str | None = None
    sqlite_synchronous: str = "NORMAL"
    # How long a transaction waits for another writer's lock before the batch is naked and
    # retried: it blocks the event loop (pings, PubAcks, SIGTERM) meanwhile, so it is short.
    sqlite_busy_timeout_s: float = 1.0
    stream_replicas: int = 1
    # Bounds of the SAGA stream when this process creates it (0 / -1: unlimited); see docs/performance.md.
    stream_max_age_s: float = 0.0
    stream_max_bytes: int = 1 << 30
    # The SAGA stream's duplicate window when this process creates it (tests shorten it).
    stream_duplicate_window_s: float = 120.0
    # Sent outbox rows are kept this long for inspection, then pruned.
    outbox_keep_s: float = 60.0
    # Skip all database work (inbox, handlers, outbox): `sagactl bench --raw`, the messaging limit.
    raw: bool = False

    @classmethod
    def from_env(cls, participant: str) -> "Settings":
        state_dir = Path(os.environ.get("SAGACTL_STATE_DIR", ".sagactl")).resolve()
        default_db = f"sqlite:///{state_dir / (participant + '.db')}"
        urls = [u.strip() for u in os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",") if u.strip()]
        if not urls:
            raise ConfigError("NATS_URL is empty")
        crash_point = os.environ.get("SAGACTL_CRASH_POINT") or None
        try:
            CrashPoints(crash_point)
        except ValueError as exc:
            raise ConfigError(f"SAGACTL_CRASH_POINT: {exc}") from None
        synchronous = os.environ.get("SAGACTL_SQLITE_SYNCHRONOUS", "NORMAL").upper()
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"SAGACTL_SQLITE_SYNCHRONOUS must be one of {', '.join(SQLITE_SYNCHRONOUS)}, not {synchronous!r}")
        return cls(
            nats_urls=urls,
            db_url=os.environ.get(f"SAGACTL_DB_URL_{participant.upper()}", default_db),
            state_dir=state_dir,
            replica=_env("SAGACTL_REPLICA", 1, int, 1),
            replicas=_env("SAGACTL_REPLICAS", 1, int, 1),
            batch_size=_env("SAGACTL_BATCH_SIZE", 256, int, 1),
            max_deliver=_env("SAGACTL_MAX_DELIVER", 5, int, 1),
            ack_wait_s=_env("SAGACTL_ACK_WAIT", 30.0, float, 0.1),
            crash_point=crash_point,
            sqlite_synchronous=synchronous,
            sqlite_busy_timeout_s=_env("SAGACTL_SQLITE_BUSY_TIMEOUT", 1.0, float, 0.0),
            stream_replicas=_env("SAGACTL_STREAM_REPLICAS", 1, int, 1),
            stream_max_age_s=_env("SAGACTL_STREAM_MAX_AGE", 0.0, float, 0.0),
            stream_max_bytes=_env("SAGACTL_STREAM_MAX_BYTES", 1 << 30, int, -1),
            stream_duplicate_window_s=_env("SAGACTL_STREAM_DUPLICATE_WINDOW", 120.0, float, 0.1),
            outbox_keep_s=_env("SAGACTL_OUTBOX_KEEP", 60.0, float, 0.0),
            raw=os.environ.get("SAGACTL_RAW", "") not in ("", "0"),
        )


def _env(name: str, default: T, kind: Callable[[str], T], minimum: float) -> T:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, not {raw!r}") from None
    if value < minimum or value != value:  # value != value: NaN
        raise ConfigError(f"{name} must be >= {minimum:g}, not {raw!r}")
    return value
