"""The inventory service's decisions without a database (stock in memory), for `sagactl bench --raw`."""

from __future__ import annotations

from typing import Any

from participants.contract import (
    CREATED_SALE,
    REASON_OUT_OF_STOCK,
    REASON_UNKNOWN_PRODUCT,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    Event,
)
from participants.inventory.handlers import PRODUCER


class InventorySimulation:
    def __init__(self) -> None:
        self.stock: dict[int, int] = {1: 10}

    def handle(self, event: Event) -> Event:
        if event.type != CREATED_SALE:  # FAILED_PAYMENT: give the stock back
            self.stock[event.product_id] = self.stock.get(event.product_id, 0) + event.quantity
            return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=event.reason)
        have = self.stock.get(event.product_id)
        if have is not None and have >= event.quantity:
            self.stock[event.product_id] = have - event.quantity
            return event.follow(UPDATED_INVENTORY, PRODUCER)
        reason = REASON_UNKNOWN_PRODUCT if have is None else REASON_OUT_OF_STOCK
        return event.follow(ROLLBACK_INVENTORY, PRODUCER, reason=reason)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            self.stock.update({int(k): int(v) for k, v in body.get("products", {}).items()})
            return {"products": len(body.get("products", {}))}, []
        return {"error": f"raw mode does not answer {verb}"}, []
