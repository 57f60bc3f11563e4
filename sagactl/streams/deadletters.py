"""The dead-letter list: events a participant gave up on, kept with why, to inspect, replay or purge.

A participant parks an event in the `SAGA_DLQ` stream (see `Settler.dead_letter` in
participants/runtime/settle.py) with headers naming the original subject, the participant, the
error, the number of deliveries and the event's sequence in `SAGA`. Replaying publishes the
original body on the replay subject of the participant that gave up (`saga.replay.<participant>`),
which only that participant consumes; its rows keyed by sale (a reservation, a payment, a sale's
status) make a replay harmless after any delay, even one that had been applied meanwhile.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from participants.contract import (
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    STREAM,
    SUBJECT_ROOT,
    replay_subject,
)
from sagactl.errors import SagactlError, UsageError
from sagactl.streams.histories import read_stream

PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DeadLetter:
    seq: int  # in SAGA_DLQ
    time: datetime
    participant: str
    subject: str  # where the event was published, and where a replay publishes it again
    error: str
    deliveries: int
    stream_seq: int  # the event's sequence in SAGA
    data: bytes

    @property
    def body(self) -> dict[str, Any] | None:
        try:
            body = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    @property
    def event_type(self) -> str:
        body = self.body
        return str(body.get("type")) if body else "(malformed)"

    @property
    def sale_id(self) -> Any:
        body = self.body
        return body.get("sale_id") if body else None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "time": self.time.isoformat(), "participant": self.participant,
            "subject": self.subject, "type": self.event_type, "sale_id": self.sale_id, "error": self.error,
            "deliveries": self.deliveries, "stream_seq": self.stream_seq,
            "data": self.data.decode("utf-8", "replace"),
        }


def _letter(msg: Msg) -> DeadLetter:
    headers = msg.headers or {}
    meta = msg.metadata
    return DeadLetter(
        seq=meta.sequence.stream,
        time=meta.timestamp,
        participant=headers.get("Sagactl-Participant", msg.subject.rsplit(".", 1)[-1]),
        subject=headers.get("Sagactl-Subject", ""),
        error=headers.get("Sagactl-Error", ""),
        deliveries=_int(headers.get("Sagactl-Deliveries")),
        stream_seq=_int(headers.get("Sagactl-Stream-Seq")),
        data=bytes(msg.data),
    )


def _int(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


async def list_dead_letters(js: JetStreamContext) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    await read_stream(js, DEAD_LETTER_STREAM, f"{DEAD_LETTER_SUBJECT_ROOT}.>", lambda msg: letters.append(_letter(msg)))
    return letters


async def _select(js: JetStreamContext, seqs: list[int] | None) -> list[DeadLetter]:
    """The dead letters named by sequence (all of them for None); every named one must exist."""
    letters = await list_dead_letters(js)
    if seqs is None:
        return letters
    known = {letter.seq: letter for letter in letters}
    missing = [seq for seq in seqs if seq not in known]
    if missing:
        raise UsageError(f"no dead letter with sequence {', '.join(map(str, missing))} (see `sagactl deadletters list`)")
    return [known[seq] for seq in dict.fromkeys(seqs)]


async def replay(js: JetStreamContext, seqs: list[int] | None) -> list[DeadLetter]:
    """Publish each dead letter's body to the participant that gave up on it, then remove it from the list.

    Publish first, delete after: a crash in between replays it twice, which the participant's rows
    keyed by sale absorb. A new Nats-Msg-Id, so the stream's duplicate window does not drop the
    copy of a recent event.
    """
    letters = await _select(js, seqs)
    for letter in letters:
        if not letter.subject.startswith(f"{SUBJECT_ROOT}."):
            raise SagactlError(f"dead letter {letter.seq} has no saga subject to replay to ({letter.subject!r})")
    for letter in letters:
        data = letter.data
        if not data and letter.stream_seq:  # parked by reference (too large to copy): the body is in SAGA
            data = (await js.get_msg(STREAM, letter.stream_seq)).data or b""
        await js.publish(replay_subject(letter.participant), data, timeout=PUBLISH_TIMEOUT_S,
                         headers={"Nats-Msg-Id": f"replay-{letter.seq}-{uuid.uuid4().hex}"})
        await js.delete_msg(DEAD_LETTER_STREAM, letter.seq)
    return letters


async def purge(js: JetStreamContext, seqs: list[int] | None) -> list[DeadLetter]:
    """Drop dead letters for good (all of them for None)."""
    letters = await _select(js, seqs)
    if seqs is None:
        if letters:  # up to the last one listed: a letter parked meanwhile stays
            await js.purge_stream(DEAD_LETTER_STREAM, seq=letters[-1].seq + 1)
        return letters
    for letter in letters:
        await js.delete_msg(DEAD_LETTER_STREAM, letter.seq)
    return letters
