"""The inventory service without a database (stock in memory), for `sagactl bench --raw`: rules.py's decisions."""

from __future__ import annotations

from typing import Any

from participants.contract import Event
from participants.inventory import rules


class MemoryStock:
    """rules.Stock in dictionaries."""

    def __init__(self) -> None:
        self.stock: dict[int, int] = {1: 10}
        self.held: dict[int, rules.Reservation] = {}

    def open(self, sale_id: int, product_id: int, quantity: int, state: str) -> bool:
        if sale_id in self.held:
            return False
        self.held[sale_id] = rules.Reservation(product_id, quantity, state)
        return True

    def reservation(self, sale_id: int) -> rules.Reservation | None:
        return self.held.get(sale_id)

    def set_state(self, sale_id: int, state: str) -> None:
        known = self.held[sale_id]
        self.held[sale_id] = rules.Reservation(known.product_id, known.quantity, state)

    def take(self, product_id: int, quantity: int) -> bool:
        have = self.stock.get(product_id)
        if have is None or have < quantity:
            return False
        self.stock[product_id] = have - quantity
        return True

    def give(self, product_id: int, quantity: int) -> None:
        self.stock[product_id] = self.stock.get(product_id, 0) + quantity

    def has_product(self, product_id: int) -> bool:
        return product_id in self.stock


class InventorySimulation:
    def __init__(self) -> None:
        self.memory = MemoryStock()

    def handle(self, event: Event) -> Event | None:
        return rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            self.memory.stock.update({int(k): int(v) for k, v in body.get("products", {}).items()})
            return {"products": len(body.get("products", {}))}, []
        return {"error": f"raw mode does not answer {verb}"}, []
