"""The sale service: takes sales, and finalizes or cancels them as the saga's events arrive."""

from participants.contract import ROLLBACK_INVENTORY, VALIDATED_PAYMENT
from participants.runtime import Participant
from participants.sale.handlers import get, on_rollback_inventory, on_validated_payment, submit
from participants.sale.models import SaleRow, SubmitKey

participant = Participant(
    name="sale",
    tables=[SaleRow],
    handlers={VALIDATED_PAYMENT: on_validated_payment, ROLLBACK_INVENTORY: on_rollback_inventory},
    requests={"submit": submit, "get": get},
    private_tables=[SubmitKey],
)
