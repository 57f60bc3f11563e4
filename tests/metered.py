"""A participant of a user's, for tests/test_metrics.py: one metric of its own beside the runtime's.

A FINALIZED_SALE with quantity 99 makes its handler raise: retried, then dead-lettered.
"""

from __future__ import annotations

from sqlmodel import Field, Session, SQLModel

from participants.contract import FINALIZED_SALE
from participants.runtime import Event, Participant, metrics

FINALIZED_SEEN = metrics.counter("metered_finalized_total", "Finalized sales this participant recorded.")
POISON_QUANTITY = 99


class Seen(SQLModel, table=True):
    __tablename__ = "metered_seen"
    sale_id: int = Field(primary_key=True)


def on_finalized(event: Event, session: Session) -> None:
    if event.quantity == POISON_QUANTITY:
        raise ValueError("quantity 99 is poison here")
    session.add(Seen(sale_id=event.sale_id))
    FINALIZED_SEEN.inc()


participant = Participant(name="metered", tables=[Seen], handlers={FINALIZED_SALE: on_finalized})
