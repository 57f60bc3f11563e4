"""The inventory service: reserves stock for a sale and gives it back when payment fails."""

from participants.contract import CREATED_SALE, FAILED_PAYMENT
from participants.inventory.handlers import (
    baseline,
    on_created_sale,
    on_failed_payment,
    setup,
)
from participants.inventory.models import Inventory, StockBaseline, seed_rows
from participants.inventory.simulation import InventorySimulation
from participants.runtime import Participant

participant = Participant(
    name="inventory",
    tables=[Inventory],
    handlers={CREATED_SALE: on_created_sale, FAILED_PAYMENT: on_failed_payment},
    seed=seed_rows,
    requests={"setup": setup, "baseline": baseline},
    private_tables=[StockBaseline],
    simulate=InventorySimulation,
)
