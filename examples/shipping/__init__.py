"""Shipping: a fourth participant. On every finalized sale it creates one shipment row in its own
database and announces it with a SHIPMENT_CREATED event on a subject of its own.

It joins a running system with `sagactl up --with examples.shipping:participant`; sale, inventory
and payment are not changed, restarted or reconfigured. Its durable consumer starts at the
beginning of the stream (`replay_history=True`, the default), so sales finalized before it joined
get their shipment too: every FINALIZED sale in the stream's history has exactly one shipment.
"""

from __future__ import annotations

from sqlmodel import Field, Session, SQLModel

from participants.contract import FINALIZED_SALE
from participants.runtime import Event, Participant, register_event_type

SHIPMENT_CREATED = "SHIPMENT_CREATED"
register_event_type(SHIPMENT_CREATED, "saga.shipping.created")


class Shipment(SQLModel, table=True):
    __tablename__ = "shipments"
    id: int | None = Field(default=None, primary_key=True)
    sale_id: int = Field(unique=True)  # one shipment per sale, whatever is redelivered
    product_id: int
    user_id: int
    quantity: int
    status: str = "READY"


def on_finalized_sale(event: Event, session: Session) -> Event:
    shipment = Shipment(sale_id=event.sale_id, product_id=event.product_id, user_id=event.user_id,
                        quantity=event.quantity)
    session.add(shipment)
    session.flush()  # assigns the id the event carries
    return event.follow(SHIPMENT_CREATED, "shipping", shipment_id=shipment.id)


participant = Participant(
    name="shipping",
    tables=[Shipment],
    handlers={FINALIZED_SALE: on_finalized_sale},
)
