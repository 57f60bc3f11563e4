"""One line per saga event, coloured by what it means for the saga."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

from participants.contract import CANCELED_SALE, FAILED_PAYMENT, FINALIZED_SALE, ROLLBACK_INVENTORY

# success path, failure, compensation, terminal
STYLES = {
    FINALIZED_SALE: "bold green",
    CANCELED_SALE: "bold red",
    FAILED_PAYMENT: "red",
    ROLLBACK_INVENTORY: "magenta",
}
COMPENSATING = "compensation"


def kind_of(body: dict[str, Any]) -> str:
    event_type = body.get("type")
    if event_type in (FINALIZED_SALE, CANCELED_SALE):
        return "terminal"
    if event_type == ROLLBACK_INVENTORY:
        return COMPENSATING if body.get("reason") in ("insufficient balance", "unknown user") else "failure"
    if event_type == FAILED_PAYMENT:
        return "failure"
    return "success"


def event_line(body: dict[str, Any], when: datetime | None = None, seq: int | None = None) -> Text:
    stamp = (when or datetime.now()).strftime("%H:%M:%S.%f")[:-3]
    event_type = str(body.get("type", "?"))
    line = Text()
    line.append(f"{stamp} ", style="dim")
    if seq is not None:
        line.append(f"#{seq:<5} ", style="dim")
    line.append(f"sale {body.get('sale_id', '?'):<5} ", style="bold")
    line.append(f"{event_type:<19}", style=STYLES.get(event_type, "cyan"))
    line.append(f" {str(body.get('producer', '?')):<10}", style="dim")
    line.append(f" qty={body.get('quantity')} value={body.get('value')}")
    if body.get("reason"):
        line.append(f" reason={body['reason']}", style="yellow")
    if kind_of(body) == COMPENSATING:
        line.append("  (compensation)", style="magenta")
    return line
