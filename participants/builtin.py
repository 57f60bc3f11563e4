"""The three built-in participants as the runtime runs them: each one's tables, handlers and requests.

Their code lives in participants/<name>/ (models.py, rules.py, handlers.py); `sagactl bench
--raw` runs the same rules without a database (participants/raw.py). A participant of your own
is declared the same way (docs/participants.md).
"""

from __future__ import annotations

from participants import raw
from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
)
from participants.inventory import handlers as stock
from participants.inventory import models as stock_tables
from participants.payment import handlers as money
from participants.payment import models as money_tables
from participants.runtime import Participant
from participants.sale import handlers as sales
from participants.sale import models as sale_tables
from participants.sale import rules as sale_rules

# Takes sales, and finalizes or cancels them as the saga's events arrive.
sale = Participant(
    name="sale",
    tables=[sale_tables.SaleRow],
    handlers={VALIDATED_PAYMENT: sales.on_answer, ROLLBACK_INVENTORY: sales.on_answer},
    requests={"submit": sales.submit, "submit_many": sales.submit_many, "get": sales.get},
    private_tables=[sale_tables.SubmitKey],
    simulate=raw.SaleSimulation,
    periodic=(sale_rules.EXPIRE_EVERY_S, sales.expire),
)

# Reserves stock for a sale and gives it back when payment fails or the sale is canceled.
inventory = Participant(
    name="inventory",
    tables=[stock_tables.Inventory, stock_tables.Reservation],
    handlers={CREATED_SALE: stock.on_event, FAILED_PAYMENT: stock.on_event, CANCELED_SALE: stock.on_event},
    seed=stock_tables.seed_rows,
    requests={"setup": stock.setup, "baseline": stock.baseline},
    private_tables=[stock_tables.StockBaseline],
    simulate=raw.InventorySimulation,
)

# Charges the user for a sale whose stock is reserved, refunds a canceled one.
payment = Participant(
    name="payment",
    tables=[money_tables.User, money_tables.Payment],
    handlers={UPDATED_INVENTORY: money.on_event, CANCELED_SALE: money.on_event},
    seed=money_tables.seed_rows,
    requests={"setup": money.setup, "baseline": money.baseline},
    private_tables=[money_tables.BalanceBaseline],
    simulate=raw.PaymentSimulation,
)
