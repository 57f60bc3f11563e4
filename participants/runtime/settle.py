"""Settling consumed events: ack what was applied, retry what failed, park poison as a dead letter.

A database that is locked, full or unreachable says nothing about the event: the event is naked
with a delay and retried for as long as that lasts (JetStream keeps it, nothing is dropped, and
the dead-letter list does not fill with events that only need a replay). Any other failure is
the event's own, a handler that keeps raising for it: on its `max_deliver`-th delivery it is
dead-lettered, so it blocks nothing behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.exc import DBAPIError, OperationalError

from participants.contract import DEAD_LETTER_SUBJECT_ROOT, Refused
from participants.runtime import broker, jetstream
from participants.runtime.eventlog import EventLog
from participants.runtime.participant import TransientError

MAX_RETRY_DELAY_S = 5.0
# The header of a dead letter whose body stayed in the SAGA stream (at Sagactl-Stream-Seq).
BY_REFERENCE = "Sagactl-By-Reference"
# SQLite primary result codes that describe the database's condition, not the statement:
# BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL. ("no such column" is also an
# OperationalError in SQLite, but a handler bug: it must end in the dead-letter list.)
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 8, 10, 13, 14, 15})
# Room for the dead letter's headers (`NATS/1.0`, names and values) within the server's max_payload.
DEAD_LETTER_HEADROOM = 2048


@dataclass(frozen=True)
class Verdict:
    """What to tell JetStream about one consumed message."""

    action: Literal["ack", "retry", "dead"]
    error: str = ""


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


def database_failed(exc: BaseException) -> bool:
    """The participant's own database failed (not a handler asking for a retry): the whole
    batch is naked and the connection reopened."""
    return is_transient(exc) and not isinstance(exc, TransientError)


def failure_action(exc: BaseException, deliveries: int, max_deliver: int) -> Literal["retry", "dead"]:
    """Retry a transient failure always, a poison one until its last allowed delivery; a refusal
    (the event contradicts the participant's rows, so no retry can change the answer) never."""
    if isinstance(exc, Refused):
        return "dead"
    if is_transient(exc) or deliveries < max_deliver:
        return "retry"
    return "dead"


def retry_delay(deliveries: int) -> float:
    """Backoff for a failed event: 0.2 s, 0.4 s, 0.8 s ... capped at 5 s."""
    return min(0.2 * 2 ** max(deliveries - 1, 0), MAX_RETRY_DELAY_S)


class Settler:
    """Sends the acks, naks and terms of one participant process, and its dead letters."""

    def __init__(self, name: str, nc: Client, js: JetStreamContext, log: EventLog) -> None:
        self.name = name
        self.nc = nc
        self.js = js
        self.log = log

    async def ack(self, replies: list[str]) -> None:
        try:
            await jetstream.send_all(self.nc, [jetstream.ack_command(reply) for reply in replies])
        except Exception as exc:  # a lost ack means a redelivery, which the inbox absorbs
            self.log.write("settle_failed", action="ack", error=broker.describe(exc))

    async def settle(self, msg: Msg, verdict: Verdict) -> None:
        try:
            if verdict.action == "retry":
                _, deliveries = jetstream.delivery_info(msg.reply)
                await jetstream.send_all(self.nc, [jetstream.ack_command(msg.reply, jetstream.nak_body(retry_delay(deliveries)))])
            else:
                await self.dead_letter(msg, verdict.error)
                await jetstream.send_all(self.nc, [jetstream.ack_command(msg.reply, jetstream.TERM)])
        except Exception as exc:  # a lost nak or term means a redelivery after ack_wait
            self.log.write("settle_failed", action=verdict.action, error=broker.describe(exc))

    async def dead_letter(self, msg: Msg, error: str) -> None:
        """Park an event that cannot be applied, with why, so it blocks nothing and is not lost.

        An event too large to copy with these headers (the server closes a connection that
        publishes over its max_payload, and nats-py then gives up on it for good) is parked by
        reference: its stream sequence and size, the body left in the SAGA stream.
        """
        meta = msg.metadata
        headers = {
            "Sagactl-Error": error[:1000],
            "Sagactl-Subject": msg.subject,
            "Sagactl-Participant": self.name,
            "Sagactl-Stream-Seq": str(meta.sequence.stream),
            "Sagactl-Deliveries": str(meta.num_delivered),
            "Sagactl-Size": str(len(msg.data)),
            "Nats-Msg-Id": f"dlq-{self.name}-{meta.sequence.stream}",
        }
        body = msg.data
        if len(body) + DEAD_LETTER_HEADROOM > self.nc.max_payload:
            headers[BY_REFERENCE] = "too large to copy"
            body = b""
        await self.js.publish(f"{DEAD_LETTER_SUBJECT_ROOT}.{self.name}", body, headers=headers)
        self.log.write("dead_letter", stream_seq=meta.sequence.stream, error=error, size=len(msg.data),
                       by_reference=not body)
