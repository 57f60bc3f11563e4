"""Injected faults: make a participant fail or slow down on purpose, to test what survives.

Scenario files (and tests) set these environment variables on a participant process:

- `SAGACTL_FAULT_FAIL_RATE=0.2`: about this fraction of consumed events fail with a
  `TransientError` the first time this process handles them (the runtime naks them with a
  backoff delay and the redelivery succeeds). Which events fail is decided from the event id,
  so a redelivery to the same process is not failed again and the fraction holds.
- `SAGACTL_FAULT_DELAY_MS=30`: every consumed event takes this much longer to handle, as if
  the database were slow (the process is busy meanwhile, like a real slow handler).

Crashing at a named point is `SAGACTL_CRASH_POINT` (crashpoints.py). The daemon wraps its
participant's handlers with `with_faults` when it starts, so the faults strike inside the
runtime's transaction, before the handler; with none of these set the participant is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from dataclasses import dataclass, field

from sqlmodel import Session

from participants.contract import Event
from participants.runtime.participant import Handler, HandlerResult, Participant, TransientError

FAIL_RATE_ENV = "SAGACTL_FAULT_FAIL_RATE"
DELAY_MS_ENV = "SAGACTL_FAULT_DELAY_MS"


@dataclass
class Faults:
    fail_rate: float = 0.0
    delay_ms: float = 0.0
    _failed: set[str] = field(default_factory=set)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Faults":
        env = os.environ if environ is None else environ
        fail_rate = float(env.get(FAIL_RATE_ENV) or 0)
        delay_ms = float(env.get(DELAY_MS_ENV) or 0)
        if not 0 <= fail_rate <= 1:
            raise ValueError(f"{FAIL_RATE_ENV} must be between 0 and 1, not {fail_rate}")
        if delay_ms < 0:
            raise ValueError(f"{DELAY_MS_ENV} must not be negative, not {delay_ms}")
        return cls(fail_rate, delay_ms)

    @property
    def active(self) -> bool:
        return self.fail_rate > 0 or self.delay_ms > 0

    def chosen(self, event_id: str) -> bool:
        """Whether this event is one of the fraction that fails (stable for a given id)."""
        digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.fail_rate

    def before_handling(self, event_id: str) -> None:
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        if self.fail_rate and event_id not in self._failed and self.chosen(event_id):
            self._failed.add(event_id)
            raise TransientError(f"injected transient failure ({FAIL_RATE_ENV}={self.fail_rate:g})")


@functools.cache
def process_faults() -> Faults:
    """This process's faults, read from the environment once."""
    return Faults.from_env()


def with_faults(participant: Participant, faults: Faults | None = None) -> Participant:
    """The participant with this process's faults striking before each handler (itself if none)."""
    faults = process_faults() if faults is None else faults
    if not faults.active:
        return participant

    def injected(handler: Handler) -> Handler:
        def handle(event: Event, session: Session) -> HandlerResult:
            faults.before_handling(event.event_id)
            return handler(event, session)

        return handle

    return dataclasses.replace(participant, handlers={t: injected(h) for t, h in participant.handlers.items()})
