"""The payment service: charges the user for a sale whose stock is reserved."""

from participants.contract import UPDATED_INVENTORY
from participants.payment.handlers import on_updated_inventory
from participants.payment.models import Payment, User, seed_rows
from participants.runtime import Participant

participant = Participant(
    name="payment",
    tables=[User, Payment],
    handlers={UPDATED_INVENTORY: on_updated_inventory},
    seed=seed_rows,
)
