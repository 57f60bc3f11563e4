"""The inventory service: reserves stock for a sale and gives it back when payment fails or the sale is canceled."""

from participants.contract import CANCELED_SALE, CREATED_SALE, FAILED_PAYMENT
from participants.inventory.handlers import baseline, on_event, setup
from participants.inventory.models import Inventory, Reservation, StockBaseline, seed_rows
from participants.inventory.simulation import InventorySimulation
from participants.runtime import Participant

participant = Participant(
    name="inventory",
    tables=[Inventory, Reservation],
    handlers={CREATED_SALE: on_event, FAILED_PAYMENT: on_event, CANCELED_SALE: on_event},
    seed=seed_rows,
    requests={"setup": setup, "baseline": baseline},
    private_tables=[StockBaseline],
    simulate=InventorySimulation,
)
