"""How a participant process is configured: environment variables, read once at start.

The supervisor (`sagactl up`) sets these; a participant started by hand on another machine
sets them itself (see docs/deploy.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    nats_urls: list[str]
    db_url: str
    state_dir: Path
    replica: int = 1
    batch_size: int = 64
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    # "point" or "point:N": kill this process with SIGKILL the Nth time the point is reached.
    crash_point: str | None = None
    sqlite_synchronous: str = "NORMAL"
    stream_replicas: int = 1

    @classmethod
    def from_env(cls, participant: str) -> "Settings":
        state_dir = Path(os.environ.get("SAGACTL_STATE_DIR", ".sagactl")).resolve()
        default_db = f"sqlite:///{state_dir / (participant + '.db')}"
        urls = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
        return cls(
            nats_urls=[u.strip() for u in urls.split(",") if u.strip()],
            db_url=os.environ.get(f"SAGACTL_DB_URL_{participant.upper()}", default_db),
            state_dir=state_dir,
            replica=int(os.environ.get("SAGACTL_REPLICA", "1")),
            batch_size=int(os.environ.get("SAGACTL_BATCH_SIZE", "64")),
            max_deliver=int(os.environ.get("SAGACTL_MAX_DELIVER", "5")),
            ack_wait_s=float(os.environ.get("SAGACTL_ACK_WAIT", "30")),
            crash_point=os.environ.get("SAGACTL_CRASH_POINT") or None,
            sqlite_synchronous=os.environ.get("SAGACTL_SQLITE_SYNCHRONOUS", "NORMAL"),
            stream_replicas=int(os.environ.get("SAGACTL_STREAM_REPLICAS", "1")),
        )
