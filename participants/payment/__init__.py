"""The payment service: charges the user for a sale whose stock is reserved, refunds a canceled one."""

from participants.contract import CANCELED_SALE, UPDATED_INVENTORY
from participants.payment.handlers import baseline, on_event, setup
from participants.payment.models import BalanceBaseline, Payment, User, seed_rows
from participants.payment.simulation import PaymentSimulation
from participants.runtime import Participant

participant = Participant(
    name="payment",
    tables=[User, Payment],
    handlers={UPDATED_INVENTORY: on_event, CANCELED_SALE: on_event},
    seed=seed_rows,
    requests={"setup": setup, "baseline": baseline},
    private_tables=[BalanceBaseline],
    simulate=PaymentSimulation,
)
