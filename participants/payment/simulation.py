"""The payment service without a database (balances in memory), for `sagactl bench --raw`: rules.py's decisions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from participants.contract import Event, parse_money
from participants.payment import rules


class MemoryLedger:
    """rules.Ledger in dictionaries."""

    def __init__(self) -> None:
        self.balance: dict[int, Decimal] = {1: Decimal("100.00")}
        self.charges: dict[int, rules.Charge] = {}

    def open(self, sale_id: int, user_id: int, value: Decimal, state: str) -> bool:
        if sale_id in self.charges:
            return False
        self.charges[sale_id] = rules.Charge(user_id, value, state)
        return True

    def charge_of(self, sale_id: int) -> rules.Charge | None:
        return self.charges.get(sale_id)

    def set_state(self, sale_id: int, state: str) -> None:
        known = self.charges[sale_id]
        self.charges[sale_id] = rules.Charge(known.user_id, known.value, state)

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
        return rules.decide(self.memory, event)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            users = body.get("users", {})
            self.memory.balance.update({int(k): parse_money(v.get("balance")) for k, v in users.items()})
            return {"users": len(users)}, []
        return {"error": f"raw mode does not answer {verb}"}, []
