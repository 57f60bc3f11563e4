"""The participant runtime: the public API a participant is written against.

Everything a participant author needs is importable from here (the event type constants, such
as FINALIZED_SALE, live in `participants.contract`, the one definition of the event contract):

    from participants.contract import FINALIZED_SALE
    from participants.runtime import Event, Participant, register_event_type

    participant = Participant(name="shipping", tables=[Shipment], handlers={FINALIZED_SALE: on_finalized})

Run it with `sagactl participant run MODULE:OBJECT` or `python -m participants.runtime MODULE:OBJECT`;
docs/participants.md is the tutorial.
"""

from participants.contract import ContractError, Event, new_event, register_event_type
from participants.runtime.daemon import run
from participants.runtime.database import Money
from participants.runtime.participant import Handler, HandlerResult, Participant, RequestHandler, TransientError
from participants.runtime.settings import Settings

__all__ = [
    "ContractError",
    "Event",
    "Handler",
    "HandlerResult",
    "Money",
    "Participant",
    "RequestHandler",
    "Settings",
    "TransientError",
    "new_event",
    "register_event_type",
    "run",
]
