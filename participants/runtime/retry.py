"""What a failed event becomes: retried later, or parked as poison in the dead-letter stream.

A database that is locked, full or unreachable says nothing about the event: the event is naked
with a delay and retried for as long as that lasts (JetStream keeps it, nothing is dropped, and
the dead-letter list does not fill with events that only need a replay). Any other failure is
the event's own, a handler that keeps raising for it: on its `max_deliver`-th delivery it is
dead-lettered, so it blocks nothing behind it.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.exc import DBAPIError, OperationalError

from participants.contract import Refused
from participants.runtime.participant import TransientError

# SQLite primary result codes that describe the database's condition, not the statement:
# BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL. ("no such column" is also an OperationalError
# in SQLite, but a handler bug: it must end in the dead-letter list, not retry for ever.)
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 10, 13, 14, 15})


def is_transient(exc: BaseException) -> bool:
    """A failure of the database rather than of the event: SQLAlchemy's wrapped errors and the
    driver's own (the runtime's lean statements run on the driver cursor)."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        driver_error: BaseException = exc.orig or exc
    else:
        driver_error = exc
    code = getattr(driver_error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in TRANSIENT_SQLITE_CODES
    # Other drivers: PEP 249's OperationalError means the server or the connection failed.
    return isinstance(exc, OperationalError) or any(k.__name__ == "OperationalError" for k in type(driver_error).__mro__)


def failure_action(exc: BaseException, deliveries: int, max_deliver: int) -> Literal["retry", "dead"]:
    """Retry a transient failure always, a poison one until its last allowed delivery; a refusal
    (the event contradicts the participant's rows, so no retry can change the answer) never."""
    if isinstance(exc, Refused):
        return "dead"
    if is_transient(exc) or deliveries < max_deliver:
        return "retry"
    return "dead"
