"""The participant runtime: the public API a participant is written against.

Everything a participant author needs is importable from here (the event type constants, such
as FINALIZED_SALE, live in `participants.contract`, the one definition of the event contract):

    from participants.contract import FINALIZED_SALE
    from participants.runtime import Event, Participant, register_event_type

    participant = Participant(name="shipping", tables=[Shipment], handlers={FINALIZED_SALE: on_finalized})

Its own Prometheus metrics: `from participants.runtime import metrics`, then
`metrics.counter(name, help)` (also `gauge`, `histogram`), served beside the runtime's.

Run it with `sagactl participant run MODULE:OBJECT` or `python -m participants.runtime MODULE:OBJECT`;
docs/participants.md is the tutorial.

The names are imported on first use, so a process that only needs one small module of the
runtime (the CLI reading `broker.redact`, say) does not pay for SQLModel and the daemon.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ContractError": "participants.contract",
    "Event": "participants.contract",
    "new_event": "participants.contract",
    "register_event_type": "participants.contract",
    "run": "participants.runtime.daemon",
    "Money": "participants.runtime.database",
    "Participant": "participants.runtime.participant",
    "Handler": "participants.runtime.participant",
    "HandlerResult": "participants.runtime.participant",
    "RequestHandler": "participants.runtime.participant",
    "TransientError": "participants.runtime.participant",
    "Settings": "participants.runtime.settings",
    "Simulation": "participants.runtime.participant",
    "Statement": "participants.runtime.sql",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'participants.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
