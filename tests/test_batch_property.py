"""Property: whatever the deliveries, crashes and failed publishes, every event takes effect exactly once.

Hypothesis draws a run of a participant (inventory) against a real SQLite database: batches of
deliveries with redeliveries and duplicates inside a batch, copies of an event under a new
message id and republished under the same one, crashes at every crash point (`mid_batch`: the
batch's transaction dies; `after_commit`: committed, nothing published or acked;
`after_publish`: published, nothing marked or acked), a COMMIT whose success the process never
heard of, publishes that fail, sweeps by another replica, restarts. The database work is the
runtime's own (`apply_batch`, `apply_event`, `recovery.claim_unsent`, `mark_sent`, `prune`);
what a process keeps in memory (the relay's queue, the acks it owes, the ids to mark sent) is
modelled here and lost at each crash, and the stream is modelled as what JetStream guarantees:
one message per `Nats-Msg-Id`, a consumer that redelivers everything not acked. Then the run
is drained without faults and the state must be: every sale debited once, one inbox row per
event, one decided event per sale in the stream, every outbox row marked sent.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from participants.contract import CREATED_SALE, Event, new_event, parse_event, parse_sale
from participants.builtin import inventory
from participants.runtime import recovery
from participants.runtime.database import create_schema, make_engine, seed_once, utc_datetime
from participants.runtime.retention import Retention, prune
from participants.runtime.transaction import Applied, Message, apply_batch, apply_event, mark_sent, transaction

CRASH_POINTS = (None, "mid_batch", "after_commit")  # after_publish: see publish()


class Crash(Exception):
    """The process dies here: everything it kept in memory is gone."""


@dataclass
class Stream:
    """JetStream as the participant relies on it: one message per id; unacked ones come back."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (msg id, body); seq = index + 1
    ids: set[str] = field(default_factory=set)
    unacked: set[int] = field(default_factory=set)  # the consumer's: input events only
    published: list[Event] = field(default_factory=list)  # what the participant decided

    def store(self, msg_id: str, body: bytes, consumed: bool) -> None:
        if msg_id in self.ids:
            return  # the duplicate window drops it
        self.ids.add(msg_id)
        self.messages.append((msg_id, body))
        if consumed:
            self.unacked.add(len(self.messages))
        else:
            self.published.append(parse_event(body))


@dataclass
class Process:
    """What one incarnation of the participant keeps in memory."""

    owner: str
    queue: list[tuple[list[Message], list[int]]] = field(default_factory=list)  # (messages, seqs to ack)
    to_mark: list[str] = field(default_factory=list)


def created(sale_id: int) -> Event:
    return new_event(CREATED_SALE, sale_id, parse_sale(1, 1, "1.00", 1), "sale")


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_event_takes_effect_exactly_once(data: st.DataObject) -> None:
    sales = data.draw(st.integers(1, 6), label="sales")
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'inventory.db'}")
        create_schema(engine, inventory.all_tables)
        seed_once(engine, inventory.seed())
        stream = Stream()
        inputs = [created(n) for n in range(1, sales + 1)]
        for event in inputs:
            stream.store(event.event_id, event.to_bytes(), consumed=True)
        incarnation = 0
        process = Process(f"1:{incarnation}")

        def restart() -> Process:
            nonlocal incarnation
            incarnation += 1
            fresh = Process(f"1:{incarnation}")
            sweep(fresh, also_from="1:")  # what the relay does when it starts
            return fresh

        def sweep(who: Process, also_from: str | None = None) -> None:
            claimed = recovery.claim_unsent(engine, who.owner, grace_s=0.0, also_from=also_from)
            held = {m[2] for messages, _ in who.queue for m in messages}
            rows = [r for r in claimed if r.event_id not in held]
            stored = [r.event_id for r in rows if r.event_id in stream.ids]  # the stream lookup
            if stored:
                with transaction(engine) as connection:
                    mark_sent(connection, stored, utc_datetime())
            rest = [(r.subject, r.payload, r.event_id) for r in rows if r.event_id not in stream.ids]
            if rest:
                who.queue.append((rest, []))

        for _ in range(data.draw(st.integers(1, 25), label="steps")):
            action = data.draw(st.sampled_from(["deliver", "deliver", "publish", "copy", "again", "sweep", "restart"]))
            try:
                if action == "deliver" and stream.unacked:
                    pending = sorted(stream.unacked)
                    chosen = data.draw(st.lists(st.sampled_from(pending), min_size=1, max_size=6), label="batch")
                    crash = data.draw(st.sampled_from(CRASH_POINTS), label="crash")
                    lost_commit = data.draw(st.booleans(), label="commit unheard of")
                    deliver(engine, stream, process, chosen, crash, lost_commit)
                elif action == "publish" and process.queue:
                    failing = data.draw(st.lists(st.booleans(), min_size=len(process.queue), max_size=len(process.queue)))
                    crash = data.draw(st.booleans(), label="crash after publish")
                    publish(engine, stream, process, failing, crash)
                elif action == "copy":  # the same body under a new message id: stored, delivered, a duplicate
                    event = data.draw(st.sampled_from(inputs))
                    stream.store(f"copy-{len(stream.messages)}", event.to_bytes(), consumed=True)
                elif action == "again":  # the same id again: dropped by the stream
                    event = data.draw(st.sampled_from(inputs))
                    stream.store(event.event_id, event.to_bytes(), consumed=True)
                elif action == "sweep":  # another replica's sweep, then it dies
                    other = Process(f"2:{incarnation}")
                    sweep(other)
                    publish(engine, stream, other, [False] * len(other.queue), crash=False)
                elif action == "restart":
                    raise Crash()
            except Crash:
                process = restart()
        # Drain: no more faults, until nothing is owed.
        for _ in range(100):
            if not stream.unacked and not process.queue and unsent(engine) == 0:
                break
            if stream.unacked:
                deliver(engine, stream, process, sorted(stream.unacked), None, False)
            publish(engine, stream, process, [False] * len(process.queue), crash=False)
            with transaction(engine) as connection:
                mark_sent(connection, process.to_mark, utc_datetime())
            process.to_mark.clear()
            sweep(process)
        check(engine, stream, inputs)
        # Pruning below the ack floor (everything acked now) keeps what retention still wants.
        prune(engine, Retention(inbox_s=3600, outbox_sent_s=3600), ack_floor=len(stream.messages))
        check(engine, stream, inputs)
        engine.dispose()


def deliver(engine, stream: Stream, process: Process, seqs: list[int], crash: str | None, lost_commit: bool) -> None:  # type: ignore[no-untyped-def]
    """The daemon's batch path (and its one-by-one fallback) for the messages at `seqs`."""
    events = [parse_event(stream.messages[seq - 1][1]) for seq in seqs]

    def on_first() -> None:
        if crash == "mid_batch":
            raise Crash()

    sent, process.to_mark = process.to_mark, []
    result = apply_batch(engine, inventory, events, on_first, sent, seqs)
    if result is None:
        if crash == "mid_batch" and len(events) > 1:
            raise Crash()  # the batch's transaction died with the process
        process.to_mark.extend(sent)
        lost_commit = True  # a batch of one: on_first never ran; treat as a failed batch
    messages: list[Message] = []
    if result is not None and not lost_commit:
        messages = result.messages
    else:  # the batch failed, or its COMMIT succeeded unheard of: apply one by one
        for event, seq in zip(events, seqs):
            outcome = apply_event(engine, inventory, event, seq)
            assert outcome.applied in (Applied.DONE, Applied.DUPLICATE)
            messages.extend((e.subject, e.to_bytes(), e.event_id) for e in outcome.emitted)
    if crash == "after_commit":
        raise Crash()
    process.queue.append((messages, list(seqs)))


def publish(engine, stream: Stream, process: Process, failing: list[bool], crash: bool) -> None:  # type: ignore[no-untyped-def]
    """One relay round: failed groups stay queued; stored ones are acked and their rows marked."""
    kept = []
    stored_groups = []
    for (messages, seqs), fails in zip(process.queue, failing):
        if fails:
            kept.append((messages, seqs))
            continue
        for subject, payload, msg_id in messages:
            stream.store(msg_id, payload, consumed=False)
        stored_groups.append((messages, seqs))
    if crash and stored_groups:
        raise Crash()  # after_publish: stored, neither acked nor marked
    process.queue = kept
    for messages, seqs in stored_groups:
        stream.unacked.difference_update(seqs)
        process.to_mark.extend(m[2] for m in messages)
    with transaction(engine) as connection:
        mark_sent(connection, process.to_mark, utc_datetime())
    process.to_mark.clear()


def unsent(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        return connection.execute(text("SELECT count(*) FROM saga_outbox WHERE sent_at IS NULL")).scalar()


def check(engine, stream: Stream, inputs: list[Event]) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        stock = connection.execute(text("SELECT quantity FROM inventories WHERE product_id = 1")).scalar()
        inbox = [row[0] for row in connection.execute(text("SELECT event_id FROM saga_inbox"))]
        unsent_rows = connection.execute(text("SELECT count(*) FROM saga_outbox WHERE sent_at IS NULL")).scalar()
    assert stock == 10 - len(inputs), "a sale debited twice or never"
    assert sorted(inbox) == sorted(e.event_id for e in inputs), "an event applied twice or never"
    decided = sorted(e.sale_id for e in stream.published)
    assert decided == [e.sale_id for e in inputs], "a sale's answer published twice (new ids) or never"
    assert all(e.type == "UPDATED_INVENTORY" for e in stream.published)
    assert unsent_rows == 0
