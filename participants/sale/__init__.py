"""The sale service: takes sales, and finalizes or cancels them as the saga's events arrive."""

from participants.contract import ROLLBACK_INVENTORY, VALIDATED_PAYMENT
from participants.runtime import Participant
from participants.sale.handlers import (
    get,
    on_rollback_inventory,
    on_validated_payment,
    submit,
    submit_many,
)
from participants.sale.models import SaleRow, SubmitKey
from participants.sale.simulation import SaleSimulation

participant = Participant(
    name="sale",
    tables=[SaleRow],
    handlers={VALIDATED_PAYMENT: on_validated_payment, ROLLBACK_INVENTORY: on_rollback_inventory},
    requests={"submit": submit, "submit_many": submit_many, "get": get},
    private_tables=[SubmitKey],
    simulate=SaleSimulation,
)
