"""The sale service: takes sales, and finalizes or cancels them as the saga's events arrive."""

from participants.contract import ROLLBACK_INVENTORY, VALIDATED_PAYMENT
from participants.runtime import Participant
from participants.sale import rules
from participants.sale.handlers import expire, get, on_answer, submit, submit_many
from participants.sale.models import SaleRow, SubmitKey
from participants.sale.simulation import SaleSimulation

participant = Participant(
    name="sale",
    tables=[SaleRow],
    handlers={VALIDATED_PAYMENT: on_answer, ROLLBACK_INVENTORY: on_answer},
    requests={"submit": submit, "submit_many": submit_many, "get": get},
    private_tables=[SubmitKey],
    simulate=SaleSimulation,
    periodic=(rules.EXPIRE_EVERY_S, expire),
)
