"""The state directory: where `sagactl up` keeps the server store, databases, pids and logs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(".sagactl")


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def at(cls, path: Path | str | None) -> "StateDir":
        return cls(Path(path or os.environ.get("SAGACTL_STATE_DIR") or DEFAULT_STATE_DIR).resolve())

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def store_dir(self) -> Path:
        return self.nats_dir / "store"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def system_file(self) -> Path:
        return self.root / "system.json"

    def nats_pid_file(self, node: int = 1) -> Path:
        return self.run_dir / f"nats-{node}.pid"

    def nats_log_file(self, node: int = 1) -> Path:
        return self.logs_dir / f"nats-{node}.log"

    def pid_file(self, participant: str, replica: int = 1) -> Path:
        return self.run_dir / f"{participant}-{replica}.pid"

    def log_file(self, participant: str, replica: int = 1) -> Path:
        suffix = "" if replica == 1 else f"-{replica}"
        return self.logs_dir / f"{participant}{suffix}.log"

    def db_url(self, participant: str) -> str:
        return f"sqlite:///{self.root / (participant + '.db')}"

    def db_files(self) -> list[Path]:
        return sorted(p for pattern in ("*.db", "*.db-wal", "*.db-shm") for p in self.root.glob(pattern))

    def make(self) -> None:
        for folder in (self.root, self.store_dir, self.logs_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def load_system(self) -> dict[str, Any]:
        try:
            return json.loads(self.system_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def save_system(self, system: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.system_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(system, indent=2))
        tmp.chmod(0o600)  # it may hold a NATS or database URL with a password
        tmp.replace(self.system_file)
