"""A participant's structured log line, readable: time, who, what it did, with which event."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.text import Text

from sagactl.system.logs import LogLine
from sagactl.views.events import clock, style_of

WHAT_STYLES = {"handled": "green", "duplicate": "yellow", "failed": "bold red", "dead_letter": "bold red",
               "fatal": "bold red", "ready": "cyan", "stopped": "cyan", "nats": "magenta"}
# Fields shown in their own place in a line, not again as key=value.
PLACED = {"ts", "participant", "replica", "what", "type", "sale_id", "event_id", "emitted", "reason", "deliveries", "ms"}


def log_line(line: LogLine) -> Text:
    record = line.record
    if record is None:
        return Text(f"{line.file}: {line.raw}", style="dim")
    text = Text()
    ts = line.ts
    if ts is not None:
        text.append(clock(datetime.fromtimestamp(ts, timezone.utc)) + " ", style="dim")
    who = str(record.get("participant", "?"))
    replica = record.get("replica")
    if replica not in (None, 1):
        who += f"-{replica}"
    what = str(record.get("what", "?"))
    text.append(f"{who:<10} ", style="bold")
    text.append(f"{what:<10}", style=WHAT_STYLES.get(what, ""))
    if "type" in record:
        text.append(f" {record['type']}", style=style_of(str(record["type"]), record.get("reason")))
    if "sale_id" in record:
        text.append(f" sale {record['sale_id']}")
    if record.get("emitted"):
        text.append(" → " + ", ".join(str(e) for e in record["emitted"]))
    if record.get("reason"):
        text.append(f" ({record['reason']})", style="yellow")
    if isinstance(record.get("deliveries"), int) and record["deliveries"] > 1:
        text.append(f" delivery {record['deliveries']}", style="yellow")
    if record.get("ms") is not None:
        text.append(f" {float(record['ms']):.1f} ms", style="dim")
    rest = {k: v for k, v in record.items() if k not in PLACED}
    if rest:
        text.append(" " + " ".join(f"{k}={_short(v)}" for k, v in rest.items()), style="dim")
    if "event_id" in record:  # ids start with their time (the same for a second): the random end tells them apart
        text.append(f" [id …{str(record['event_id'])[-8:]}]", style="dim")
    return text


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."
