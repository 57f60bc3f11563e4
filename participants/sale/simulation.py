"""The sale service's decisions without a database, for `sagactl bench --raw`."""

from __future__ import annotations

from typing import Any

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FINALIZED_SALE,
    ROLLBACK_INVENTORY,
    Event,
    new_event,
    parse_sale,
)
from participants.sale.handlers import PRODUCER


class SaleSimulation:
    def __init__(self) -> None:
        self.next_id = 1

    def handle(self, event: Event) -> Event:
        if event.type == ROLLBACK_INVENTORY:
            return event.follow(CANCELED_SALE, PRODUCER, reason=event.reason)
        return event.follow(FINALIZED_SALE, PRODUCER)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        items = body.get("sales") if verb == "submit_many" else [body] if verb == "submit" else None
        if not isinstance(items, list):
            return {"error": f"raw mode does not answer {verb}"}, []
        events = []
        for item in items:
            sale = parse_sale(item.get("product_id"), item.get("user_id"), item.get("value"), item.get("quantity"))
            events.append(new_event(CREATED_SALE, self.next_id, sale, PRODUCER))
            self.next_id += 1
        replies = [{"sale_id": e.sale_id, "status": "PENDING"} for e in events]
        return ({"sales": replies} if verb == "submit_many" else replies[0]), events
