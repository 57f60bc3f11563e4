"""The payment service's decisions without a database (balances in memory), for `sagactl bench --raw`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from participants.contract import (
    FAILED_PAYMENT,
    REASON_INSUFFICIENT_BALANCE,
    REASON_UNKNOWN_USER,
    VALIDATED_PAYMENT,
    Event,
    parse_money,
)
from participants.payment.handlers import PRODUCER


class PaymentSimulation:
    def __init__(self) -> None:
        self.balance: dict[int, Decimal] = {1: Decimal("100.00")}

    def handle(self, event: Event) -> Event:
        have = self.balance.get(event.user_id)
        if have is not None and have >= event.value:
            self.balance[event.user_id] = have - event.value
            return event.follow(VALIDATED_PAYMENT, PRODUCER)
        reason = REASON_UNKNOWN_USER if have is None else REASON_INSUFFICIENT_BALANCE
        return event.follow(FAILED_PAYMENT, PRODUCER, reason=reason)

    def request(self, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        if verb == "setup":
            users = body.get("users", {})
            self.balance.update({int(k): parse_money(v.get("balance")) for k, v in users.items()})
            return {"users": len(users)}, []
        return {"error": f"raw mode does not answer {verb}"}, []
