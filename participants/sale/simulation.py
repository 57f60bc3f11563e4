"""The sale service without a database (sales in memory), for `sagactl bench --raw`: rules.py's decisions."""

from __future__ import annotations

from typing import Any

from participants.contract import CREATED_SALE, Event, Sale, new_event, parse_sale
from participants.sale import rules


class MemorySales:
    """rules.Sales in a dictionary."""

    def __init__(self) -> None:
        self.sales: dict[int, rules.Known] = {}
        self.next_id = 1

    def close(self, sale_id: int, sale: Sale, status: str, reason: str | None) -> bool:
        known = self.sales.get(sale_id)
        if known is None or known.status != rules.PENDING or known.sale != sale:
            return False
        self.sales[sale_id] = rules.Known(sale, status)
        return True

    def known(self, sale_id: int) -> rules.Known | None:
        return self.sales.get(sale_id)

    def close_unknown(self, sale_id: int, sale: Sale, reason: str) -> bool:
        if sale_id in self.sales:
            return False
        self.sales[sale_id] = rules.Known(sale, rules.CANCELED)
        self.next_id = max(self.next_id, sale_id + 1)
        return True


    def due(self, now: float, limit: int) -> list[tuple[int, Sale]]:
        return []  # raw mode keeps no deadlines


class SaleSimulation:
    def __init__(self) -> None:
        self.memory = MemorySales()

    def handle(self, event: Event) -> Event | None:
        return rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        items = body.get("sales") if verb == "submit_many" else [body] if verb == "submit" else None
        if not isinstance(items, list):
            return {"error": f"raw mode does not answer {verb}"}, []
        events = []
        for item in items:
            sale = parse_sale(item.get("product_id"), item.get("user_id"), item.get("value"), item.get("quantity"))
            sale_id, self.memory.next_id = self.memory.next_id, self.memory.next_id + 1
            self.memory.sales[sale_id] = rules.Known(sale, rules.PENDING)
            events.append(new_event(CREATED_SALE, sale_id, sale, rules.PRODUCER))
        replies = [{"sale_id": e.sale_id, "status": "PENDING"} for e in events]
        return ({"sales": replies} if verb == "submit_many" else replies[0]), events
