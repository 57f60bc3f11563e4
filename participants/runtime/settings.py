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
    replicas: int = 1  # how many processes of this participant share its durable consumer
    batch_size: int = 256
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    # "point" or "point:N": kill this process with SIGKILL the Nth time the point is reached.
    crash_point: str | None = None
    sqlite_synchronous: str = "NORMAL"
    stream_replicas: int = 1
    # Bounds of the SAGA stream when this process creates it (0 / -1: unlimited); see docs/performance.md.
    stream_max_age_s: float = 0.0
    stream_max_bytes: int = 1 << 30
    # Sent outbox rows are kept this long for inspection, then pruned.
    outbox_keep_s: float = 60.0
    # Skip all database work (inbox, handlers, outbox): `sagactl bench --raw`, the messaging limit.
    raw: bool = False

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
            replicas=int(os.environ.get("SAGACTL_REPLICAS", "1")),
            batch_size=int(os.environ.get("SAGACTL_BATCH_SIZE", "256")),
            max_deliver=int(os.environ.get("SAGACTL_MAX_DELIVER", "5")),
            ack_wait_s=float(os.environ.get("SAGACTL_ACK_WAIT", "30")),
            crash_point=os.environ.get("SAGACTL_CRASH_POINT") or None,
            sqlite_synchronous=os.environ.get("SAGACTL_SQLITE_SYNCHRONOUS", "NORMAL"),
            stream_replicas=int(os.environ.get("SAGACTL_STREAM_REPLICAS", "1")),
            stream_max_age_s=float(os.environ.get("SAGACTL_STREAM_MAX_AGE", "0")),
            stream_max_bytes=int(os.environ.get("SAGACTL_STREAM_MAX_BYTES", str(1 << 30))),
            outbox_keep_s=float(os.environ.get("SAGACTL_OUTBOX_KEEP", "60")),
            raw=os.environ.get("SAGACTL_RAW", "") not in ("", "0"),
        )
