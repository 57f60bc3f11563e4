"""A saga's trace as an SVG sequence diagram (`sagactl trace --svg`), drawn from its real events.

One lifeline per participant (and one for sagactl, which submitted the sale), one arrow per event
in stream order from its producer to the participant that reacts to it, labelled with the event
type, the time since the submit and how long its handling took. Failures and the sale's
cancellation are red, compensations magenta, the finalization green; a redelivery or a copy is
marked on its arrow. Plain SVG, no script and no font files: it renders on GitHub as it is.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from participants.contract import FAILURE_TYPES, FINALIZED_SALE
from participants.flow import consumer_of
from sagactl.streams.trace import SagaTrace, TraceStep

CLIENT = "sagactl"
LANE = 210  # px between lifelines
ROW = 66  # px per arrow
TOP = 92  # below the title and the participant boxes
MARGIN = 110
COLOURS = {"success": "#1f5fa8", "failure": "#c62828", "compensation": "#a02c8c", "finalized": "#2e7d32",
           "client": "#555555"}
FONT = "font-family=\"ui-monospace,SFMono-Regular,Menlo,Consolas,monospace\""


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f} ms" if abs(ms) < 1000 else f"{ms / 1000:.2f} s"


def colour_of(step: TraceStep) -> str:
    if step.kind == "compensation":
        return COLOURS["compensation"]
    if step.event_type == FINALIZED_SALE:
        return COLOURS["finalized"]
    if step.event_type in FAILURE_TYPES or step.kind == "failure":
        return COLOURS["failure"]
    return COLOURS["success"]


def lifelines(trace: SagaTrace) -> list[str]:
    """sagactl, then every participant in the order it first produced or received an event."""
    names = [CLIENT, "sale"]
    for step in trace.steps:
        for name in (str(step.body.get("producer", "?")), consumer_of(step.event_type)):
            if name and name not in names:
                names.append(name)
    return names


def sequence_svg(trace: SagaTrace) -> str:
    names = lifelines(trace)
    x = {name: MARGIN + i * LANE for i, name in enumerate(names)}
    rows = len(trace.steps) + 1 + (trace.waiting_for is not None)
    height = TOP + rows * ROW + 70
    width = 2 * MARGIN + LANE * (len(names) - 1)
    reason = f" ({trace.reason})" if trace.reason else ""
    status_colour = COLOURS["finalized"] if trace.status == "FINALIZED" else \
        COLOURS["failure"] if trace.status == "CANCELED" else "#a06800"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'{FONT} font-size="13">',
        f"<title>sagactl trace {trace.sale_id}: {escape(trace.status + reason)}</title>",
        '<defs>' + "".join(
            f'<marker id="head-{key}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for key, colour in COLOURS.items()) + '</defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="16" y="24" font-size="15" font-weight="bold">sale {trace.sale_id}: '
        f'<tspan fill="{status_colour}">{escape(trace.status + reason)}</tspan></text>',
    ]
    bottom = height - 40
    for name, cx in x.items():
        parts.append(f'<line x1="{cx}" y1="{TOP - 24}" x2="{cx}" y2="{bottom}" stroke="#b0b0b0" stroke-dasharray="4 4"/>')
        parts.append(f'<rect x="{cx - 62}" y="{TOP - 58}" width="124" height="34" rx="6" fill="#f3f5f8" stroke="#8a94a3"/>')
        parts.append(f'<text x="{cx}" y="{TOP - 36}" text-anchor="middle" font-weight="bold">{escape(name)}</text>')
    y = TOP + ROW // 2
    parts += _arrow(x[CLIENT], x["sale"], y, "client", "submit", ("request/reply", ""))
    for step in trace.steps:
        y += ROW
        producer = str(step.body.get("producer", "?"))
        target = consumer_of(step.event_type) or (CLIENT if step.kind == "terminal" else None)
        key = next(k for k, c in COLOURS.items() if c == colour_of(step))
        parts += _arrow(x[producer], x[target] if target else None, y, key, step.event_type, _detail(step))
    if trace.waiting_for is not None:
        y += ROW
        waiting = trace.waiting_for
        parts.append(f'<text x="{x.get(waiting.actor, MARGIN)}" y="{y}" text-anchor="middle" fill="#a06800">'
                     f'waiting for {escape(" or ".join(waiting.emits))}</text>')
    parts.append(f'<text x="16" y="{height - 14}" fill="#666666" font-size="11">'
                 f'{len(trace.steps)} events from the SAGA stream, in order; times since the submit</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _detail(step: TraceStep) -> tuple[str, str]:
    """Two lines under an arrow: where and when; then why (reason, compensation, redelivery)."""
    when = [f"seq {step.event.seq}", f"+{duration(step.since_submit_ms)}"]
    handled = next((h for h in step.handled_by if h.what == "handled" and h.ms is not None), None)
    if handled is not None:
        when.append(f"handled in {duration(handled.ms)}")
    why = []
    if step.kind == "compensation":
        why.append("compensation")
    if step.body.get("reason"):
        why.append(str(step.body["reason"]))
    if step.redeliveries:
        why.append(f"↻ redelivered {step.redeliveries}×")
    if step.copy_of is not None:
        why.append(f"copy of seq {step.copy_of}")
    return " · ".join(when), " · ".join(why)


def _arrow(x1: int, x2: int | None, y: int, key: str, label: str, detail: tuple[str, str]) -> list[str]:
    colour = COLOURS[key]
    when, why = (escape(text) for text in detail)
    if x2 is None:  # no one reacts to it: a note on the producer's lifeline
        return [f'<rect x="{x1 - 95}" y="{y - 30}" width="190" height="52" rx="4" fill="#fff8e1" stroke="{colour}"/>',
                f'<text x="{x1}" y="{y - 13}" text-anchor="middle" fill="{colour}" font-weight="bold">{escape(label)}</text>',
                f'<text x="{x1}" y="{y + 3}" text-anchor="middle" fill="#444444" font-size="11">{when}</text>',
                f'<text x="{x1}" y="{y + 17}" text-anchor="middle" fill="{colour}" font-size="11">{why}</text>']
    middle = (x1 + x2) / 2
    dash = ' stroke-dasharray="6 3"' if key == "compensation" else ""
    return [f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="2"{dash} '
            f'marker-end="url(#head-{key})"/>',
            f'<text x="{middle}" y="{y - 8}" text-anchor="middle" fill="{colour}" font-weight="bold">{escape(label)}</text>',
            f'<text x="{middle}" y="{y + 16}" text-anchor="middle" fill="#444444" font-size="11">{when}</text>',
            f'<text x="{middle}" y="{y + 30}" text-anchor="middle" fill="{colour}" font-size="11">{why}</text>']


def save_sequence_svg(trace: SagaTrace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sequence_svg(trace))
