"""A saga's trace as a Rich table (stacked below 100 columns) or a Mermaid sequence diagram (the SVG
picture is views/diagram.py)."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from participants.flow import consumer_of
from sagactl.streams.trace import Handling, SagaTrace, TraceStep
from sagactl.views.events import clock, style_of
from sagactl.views.tables import STATUS_STYLES

CLIENT = "sagactl"


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f} ms" if abs(ms) < 1000 else f"{ms / 1000:.2f} s"


WIDE = 100  # columns the table needs; narrower (80 when piped), each event is stacked on two lines


def render_trace(trace: SagaTrace, width: int = WIDE) -> RenderableType:
    reason = f" ({trace.reason})" if trace.reason else ""
    title = Text(f"sale {trace.sale_id}: ", style="bold")
    title.append(f"{trace.status}{reason}", style=STATUS_STYLES.get(trace.status, ""))
    sale = trace.sale
    separator = " · " if width >= WIDE else "\n"  # narrow: what was sold, then when, on lines of their own
    details = Text(f"product {sale['product_id']} · user {sale['user_id']} · quantity {sale['quantity']} · "
                   f"value {sale['value']}{separator}submitted {clock(trace.submitted_at)} · {len(trace.steps)} events",
                   style="dim")
    if width < WIDE:
        return Group(title, details, *_deadline(trace), *_stacked(trace), *_waiting(trace))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for column, justify in (("seq", "right"), ("event", "left"), ("producer", "left"), ("+submit", "right"),
                            ("+prev", "right"), ("handled by", "left"), ("note", "left")):
        # What identifies a step never wraps; who handled it and the notes take what width is left.
        table.add_column(column, justify=justify,  # type: ignore[arg-type]
                         no_wrap=column in ("seq", "event", "producer", "+submit", "+prev"))
    for step in trace.steps:
        table.add_row(
            str(step.event.seq),
            Text(step.event_type, style=style_of(step.event_type, step.body.get("reason"))),
            str(step.body.get("producer", "?")), duration(step.since_submit_ms), duration(step.since_previous_ms),
            _handled(step), _note(step),
        )
    return Group(title, details, *_deadline(trace), table, *_waiting(trace))


def _deadline(trace: SagaTrace) -> list[Text]:
    """The sale's deadline, and when it fired (the compensations after it undo the sale)."""
    if not trace.deadline_at:
        return []
    fired = trace.deadline_fired
    if fired is None:
        return [Text(f"deadline {trace.deadline_at}: not fired", style="dim")]
    return [Text(f"deadline {trace.deadline_at}: fired at +{duration(fired.since_submit_ms)} (seq {fired.event.seq}); "
                 "the compensations after it undo the sale", style="magenta")]


def _waiting(trace: SagaTrace) -> list[Text]:
    if trace.waiting_for is None:
        return []
    waiting = trace.waiting_for
    return [Text(f"waiting for {' or '.join(waiting.emits)} from {waiting.actor} "
                 f"(its reaction to {waiting.after})", style="yellow")]


def _stacked(trace: SagaTrace) -> list[Text]:
    """Each event on a line of fixed fields, then who handled it and its notes, whole, below it."""
    lines = [Text(f"{'seq':>4}  {'event':<19} {'producer':<10} {'+submit':>9} {'+prev':>9}", style="bold")]
    for step in trace.steps:
        line = Text(f"{step.event.seq:>4}  ")
        line.append(f"{step.event_type:<19}", style=style_of(step.event_type, step.body.get("reason")))
        line.append(f" {str(step.body.get('producer', '?')):<10} {duration(step.since_submit_ms):>9} "
                    f"{duration(step.since_previous_ms):>9}")
        lines.append(line)
        parts = [Text("handled by ", style="dim").append(_handled(step))] if consumer_of(step.event_type) else []
        if _note(step).plain:
            parts.append(_note(step))
        if parts:
            lines.append(Text("      ").append(Text(" · ", style="dim").join(parts)))
    return lines


def _handled(step: TraceStep) -> Text:
    if not step.handled_by:
        return Text("—" if consumer_of(step.event_type) is None else "(no log here)", style="dim")
    parts = []
    for participant in dict.fromkeys(h.participant for h in step.handled_by):
        mine = [h for h in step.handled_by if h.participant == participant]
        parts.append(f"{participant} {_summary(mine)}".strip())
    return Text("; ".join(parts))


def _summary(handlings: list[Handling]) -> str:
    words = []
    done = next((h for h in handlings if h.what == "handled"), None)
    if done is not None and done.ms is not None:
        words.append(duration(done.ms))
    failed = sum(1 for h in handlings if h.what == "failed")
    if failed:
        words.append(f"failed ×{failed}")
    duplicates = sum(1 for h in handlings if h.what == "duplicate")
    if duplicates:
        words.append(f"duplicate ×{duplicates} ignored")
    if any(h.what == "dead_letter" for h in handlings):
        words.append("dead-lettered")
    return ", ".join(words)


def _note(step: TraceStep) -> Text:
    notes: list[tuple[str, str]] = []
    if step.copy_of is not None:
        notes.append((f"copy of seq {step.copy_of}, no second effect", "yellow"))
    if step.kind == "compensation":
        notes.append(("compensation", "magenta"))
    if step.body.get("reason"):
        notes.append((str(step.body["reason"]), "yellow"))
    if step.redeliveries:
        notes.append((f"redelivered {step.redeliveries}×", "yellow"))
    return Text(", ").join(Text(text, style=style) for text, style in notes)


def mermaid(trace: SagaTrace) -> str:
    """A Mermaid sequence diagram of the events this saga actually had."""
    actors: list[str] = []
    arrows: list[str] = []

    def actor(name: str) -> str:
        if name not in actors:
            actors.append(name)
        return name

    arrows.append(f"    {CLIENT}->>{actor('sale')}: submit (request)")
    for step in trace.steps:
        producer = actor(str(step.body.get("producer", "?")))
        label = f"{step.event_type} (seq {step.event.seq}, +{duration(step.since_submit_ms)})"
        if step.body.get("reason"):
            label += f": {step.body['reason']}"
        if step.copy_of is not None:
            label += f", copy of seq {step.copy_of}"
        target = consumer_of(step.event_type)
        if target is None and step.kind == "terminal":
            target = CLIENT
        if target is None:
            arrows.append(f"    Note over {producer}: {label}")
        else:
            arrows.append(f"    {producer}-){actor(target) if target != CLIENT else CLIENT}: {label}")
        if step.kind == "compensation":
            arrows.append(f"    Note over {producer}: compensation")
    if trace.waiting_for is not None:
        waiting = trace.waiting_for
        arrows.append(f"    Note over {actor(waiting.actor)}: waiting for {' or '.join(waiting.emits)}")
    reason = f": {trace.reason}" if trace.reason else ""
    last = actors[-1] if actors else "sale"
    lines = ["sequenceDiagram", f"    participant {CLIENT}"]
    lines += [f"    participant {name}" for name in actors]
    lines += arrows
    lines.append(f"    Note over {CLIENT},{last}: sale {trace.sale_id} {trace.status}{reason}")
    return "\n".join(lines) + "\n"
