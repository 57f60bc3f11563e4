"""One line per saga event, coloured by what it means for the saga."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

from participants.contract import CANCELED_SALE, FINALIZED_SALE
from participants.flow import SALE_CANCEL_REASONS, outcome_kind

# By outcome: the success path, a failure, a compensation; terminal events by their verdict.
KIND_STYLES = {"success": "cyan", "failure": "red", "compensation": "magenta", "terminal": "bold"}
TERMINAL_STYLES = {FINALIZED_SALE: "bold green", CANCELED_SALE: "bold red"}


def style_of(event_type: str, reason: str | None = None) -> str:
    return TERMINAL_STYLES.get(event_type) or KIND_STYLES[outcome_kind(event_type, reason)]


def clock(when: datetime) -> str:
    """Local wall-clock time with milliseconds."""
    return when.astimezone().strftime("%H:%M:%S.%f")[:-3]


def event_line(body: dict[str, Any], when: datetime | None = None, seq: int | None = None, subject: str | None = None) -> Text:
    """`time #seq sale N TYPE producer qty= value= reason=`; a body that is not an event shows raw."""
    line = Text()
    line.append(f"{clock(when or datetime.now().astimezone())} ", style="dim")
    if seq is not None:
        line.append(f"#{seq:<5} ", style="dim")
    if "type" not in body or "sale_id" not in body:
        line.append(f"{subject or '?'} (not a saga event) ", style="bold red")
        line.append(str(body.get("raw", body)))
        return line
    event_type = str(body["type"])
    reason = body.get("reason")
    line.append(f"sale {body['sale_id']:<5} ", style="bold")
    line.append(f"{event_type:<19}", style=style_of(event_type, reason))
    line.append(f" {str(body.get('producer', '?')):<10}", style="dim")
    line.append(f" qty={body.get('quantity')} value={body.get('value')}")
    if reason:
        line.append(f" reason={reason}", style="yellow")
    if outcome_kind(event_type, reason) == "compensation":
        line.append("  (compensation)", style="magenta")
    elif event_type == CANCELED_SALE and reason in SALE_CANCEL_REASONS:
        line.append("  (compensations follow)", style="magenta")
    if body.get("deadline_at"):
        line.append(f" deadline={body['deadline_at']}", style="yellow")
    return line
