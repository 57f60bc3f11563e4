"""The participant's environment variables have one list of names: what `to_env` writes, `from_env` reads."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from participants.runtime.settings import ENV_NAMES, Settings, to_env

CHANGED = {
    "nats_urls": ["nats://127.0.0.1:1", "nats://127.0.0.1:2"], "replica": 3, "replicas": 4, "batch_size": 17,
    "max_deliver": 9, "ack_wait_s": 2.5, "crash_point": "after_commit:2", "sqlite_synchronous": "FULL",
    "sqlite_busy_timeout_s": 1.5, "stream_replicas": 3, "stream_max_age_s": 60.0, "stream_max_bytes": 12345,
    "stream_duplicate_window_s": 9.5, "outbox_keep_s": 7.0, "raw": True,
}


def test_every_setting_has_a_variable() -> None:
    assert set(ENV_NAMES) | {"db_url"} == {f.name for f in fields(Settings)}


def test_what_to_env_writes_from_env_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ENV_NAMES.values():
        monkeypatch.delenv(variable, raising=False)
    env = to_env("shipping", db_url="sqlite:///elsewhere.db", state_dir=tmp_path, **CHANGED)
    assert env["SAGACTL_DB_URL_SHIPPING"] == "sqlite:///elsewhere.db" and env["NATS_URL"] == "nats://127.0.0.1:1,nats://127.0.0.1:2"
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = Settings.from_env("shipping")
    assert settings == Settings(db_url="sqlite:///elsewhere.db", state_dir=tmp_path.resolve(), **CHANGED)  # type: ignore[arg-type]
    for variable, value in to_env(raw=False, crash_point=None).items():
        monkeypatch.setenv(variable, value)
    assert not Settings.from_env("shipping").raw and Settings.from_env("shipping").crash_point is None
