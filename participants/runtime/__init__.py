"""The participant runtime: the public API a participant is written against.

    from participants.runtime import Participant, run
"""

from participants.runtime.daemon import run
from participants.runtime.database import Money
from participants.runtime.participant import Handler, Participant, TransientError

__all__ = ["Money", "Participant", "Handler", "TransientError", "run"]
