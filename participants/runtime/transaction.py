"""One handled event = one local transaction: inbox check, handler, inbox row, outbox rows.

This is the heart of "nothing lost, nothing doubled": the consumed event id and the emitted
events commit together with the handler's changes, or not at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from participants.contract import Event
from participants.runtime.database import InboxEntry, OutboxEntry, utc_datetime
from participants.runtime.participant import Participant, RequestHandler


class Applied(enum.Enum):
    DONE = "done"
    DUPLICATE = "duplicate"  # already in the inbox: a redelivery or a republished copy
    RACED = "raced"  # another replica committed the same event first; retry to see it as duplicate


@dataclass
class Outcome:
    applied: Applied
    emitted: list[Event] = field(default_factory=list)


def record_outbox(session: Session, events: Sequence[Event]) -> None:
    now = utc_datetime()
    for emitted in events:
        session.add(
            OutboxEntry(event_id=emitted.event_id, subject=emitted.subject, payload=emitted.to_bytes(), created_at=now)
        )


def apply_event(engine: Engine, participant: Participant, event: Event) -> Outcome:
    """Apply one consumed event exactly once; handler errors propagate with nothing committed."""
    with Session(engine) as session:
        if session.get(InboxEntry, event.event_id) is not None:
            session.rollback()
            return Outcome(Applied.DUPLICATE)
        emitted = participant.handle(event, session)
        session.add(
            InboxEntry(event_id=event.event_id, event_type=event.type, sale_id=event.sale_id, handled_at=utc_datetime())
        )
        record_outbox(session, emitted)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if session.get(InboxEntry, event.event_id) is not None:
                return Outcome(Applied.RACED)
            # Not a race on the inbox but the handler's own rows breaking a constraint: a failure
            # like any other (retried, then dead-lettered), never an endless silent retry.
            raise
    return Outcome(Applied.DONE, emitted)


def apply_request(engine: Engine, handler: RequestHandler, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    """Run a control request (such as the sale service's submit) in one transaction with its events."""
    with Session(engine) as session:
        reply, emitted = handler(body, session)
        record_outbox(session, emitted)
        session.commit()
    return reply, list(emitted)
