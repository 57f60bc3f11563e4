"""The built-in participants without their databases, for `sagactl bench --raw`.

Each keeps its state in dictionaries and decides with its own rules.py, so raw mode runs the
same decisions as the real participants and measures only the messaging around them. It lives
here, not in the participants' folders: those hold only what a participant needs to run for
real (models, rules, handlers), which is what a user copies to write one of their own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from participants.contract import (
    CREATED_SALE,
    Event,
    Sale,
    new_event,
    parse_money,
    parse_sale,
)
from participants.inventory import rules as inventory_rules
from participants.payment import rules as payment_rules
from participants.sale import rules as sale_rules


class MemorySales:
    """sale_rules.Sales in a dictionary."""

    def __init__(self) -> None:
        self.sales: dict[int, sale_rules.Known] = {}
        self.next_id = 1

    def close(self, sale_id: int, sale: Sale, status: str, reason: str | None) -> bool:
        known = self.sales.get(sale_id)
        if known is None or known.status != sale_rules.PENDING or known.sale != sale:
            return False
        self.sales[sale_id] = sale_rules.Known(sale, status)
        return True

    def known(self, sale_id: int) -> sale_rules.Known | None:
        return self.sales.get(sale_id)

    def close_unknown(self, sale_id: int, sale: Sale, reason: str) -> bool:
        if sale_id in self.sales:
            return False
        self.sales[sale_id] = sale_rules.Known(sale, sale_rules.CANCELED)
        self.next_id = max(self.next_id, sale_id + 1)
        return True

    def due(self, now: float, limit: int) -> list[tuple[int, Sale]]:
        return []  # raw mode keeps no deadlines


class SaleSimulation:
    def __init__(self) -> None:
        self.memory = MemorySales()

    def handle(self, event: Event) -> Event | None:
        return sale_rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        items = body.get("sales") if verb == "submit_many" else [body] if verb == "submit" else None
        if not isinstance(items, list):
            return {"error": f"raw mode does not answer {verb}"}, []
        events = []
        for item in items:
            sale = parse_sale(item.get("product_id"), item.get("user_id"), item.get("value"), item.get("quantity"))
            sale_id, self.memory.next_id = self.memory.next_id, self.memory.next_id + 1
            self.memory.sales[sale_id] = sale_rules.Known(sale, sale_rules.PENDING)
            events.append(new_event(CREATED_SALE, sale_id, sale, sale_rules.PRODUCER))
        replies = [{"sale_id": e.sale_id, "status": "PENDING"} for e in events]
        return ({"sales": replies} if verb == "submit_many" else replies[0]), events


class MemoryStock:
    """inventory_rules.Stock in dictionaries."""

    def __init__(self) -> None:
        self.stock: dict[int, int] = {1: 10}
        self.held: dict[int, inventory_rules.Reservation] = {}

    def open(self, sale_id: int, product_id: int, quantity: int, state: str) -> bool:
        if sale_id in self.held:
            return False
        self.held[sale_id] = inventory_rules.Reservation(product_id, quantity, state)
        return True

    def reservation(self, sale_id: int) -> inventory_rules.Reservation | None:
        return self.held.get(sale_id)

    def set_state(self, sale_id: int, state: str) -> None:
        known = self.held[sale_id]
        self.held[sale_id] = inventory_rules.Reservation(known.product_id, known.quantity, state)

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
        return inventory_rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            self.memory.stock.update({int(k): int(v) for k, v in body.get("products", {}).items()})
            return {"products": len(body.get("products", {}))}, []
        return {"error": f"raw mode does not answer {verb}"}, []


class MemoryLedger:
    """payment_rules.Ledger in dictionaries."""

    def __init__(self) -> None:
        self.balance: dict[int, Decimal] = {1: Decimal("100.00")}
        self.charges: dict[int, payment_rules.Charge] = {}

    def open(self, sale_id: int, user_id: int, value: Decimal, state: str) -> bool:
        if sale_id in self.charges:
            return False
        self.charges[sale_id] = payment_rules.Charge(user_id, value, state)
        return True

    def charge_of(self, sale_id: int) -> payment_rules.Charge | None:
        return self.charges.get(sale_id)

    def set_state(self, sale_id: int, state: str) -> None:
        known = self.charges[sale_id]
        self.charges[sale_id] = payment_rules.Charge(known.user_id, known.value, state)

    def debit(self, user_id: int, value: Decimal) -> bool:
        have = self.balance.get(user_id)
        if have is None or have < value:
            return False
        self.balance[user_id] = have - value
        return True

    def credit(self, user_id: int, value: Decimal) -> None:
        self.balance[user_id] = self.balance.get(user_id, Decimal(0)) + value

    def has_user(self, user_id: int) -> bool:
        return user_id in self.balance


class PaymentSimulation:
    def __init__(self) -> None:
        self.memory = MemoryLedger()

    def handle(self, event: Event) -> Event | None:
        return payment_rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            users = body.get("users", {})
            self.memory.balance.update({int(k): parse_money(v.get("balance")) for k, v in users.items()})
            return {"users": len(users)}, []
        return {"error": f"raw mode does not answer {verb}"}, []
