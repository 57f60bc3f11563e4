"""The participant runtime: the public API a participant is written against.

    from participants.runtime import Participant, run

The names are imported on first use, so a process that only needs one small module of the
runtime (the CLI reading `broker.redact`, say) does not pay for SQLModel and the daemon.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run": "participants.runtime.daemon",
    "Money": "participants.runtime.database",
    "Participant": "participants.runtime.participant",
    "Handler": "participants.runtime.participant",
    "TransientError": "participants.runtime.participant",
}

__all__ = ["Money", "Participant", "Handler", "TransientError", "run"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'participants.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
