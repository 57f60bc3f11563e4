"""Injected faults (participants/runtime/faults.py): the fraction, once per event, delays, the call site."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Iterator

import pytest

from participants.contract import CREATED_SALE, Sale, new_event
from participants.runtime import faults
from participants.runtime.participant import Participant, TransientError


@pytest.fixture
def clean_faults() -> Iterator[None]:
    faults.process_faults.cache_clear()
    yield
    faults.process_faults.cache_clear()


def test_about_the_given_fraction_of_events_fails_once_each() -> None:
    injected = faults.Faults(fail_rate=0.2)
    ids = [uuid.uuid4().hex for _ in range(3000)]
    failed = []
    for event_id in ids:
        try:
            injected.before_handling(event_id)
        except TransientError:
            failed.append(event_id)
    assert 0.16 < len(failed) / len(ids) < 0.24
    for event_id in failed:  # the redelivery of a failed event goes through
        injected.before_handling(event_id)


def test_the_choice_is_stable_for_an_event_id() -> None:
    first, second = faults.Faults(fail_rate=0.5), faults.Faults(fail_rate=0.5)
    ids = [uuid.uuid4().hex for _ in range(200)]
    assert [first.chosen(i) for i in ids] == [second.chosen(i) for i in ids]


def test_a_delay_slows_every_event() -> None:
    injected = faults.Faults(delay_ms=30)
    started = time.perf_counter()
    injected.before_handling("a")
    injected.before_handling("b")
    assert time.perf_counter() - started >= 0.06


@pytest.mark.parametrize(("env", "message"), [({faults.FAIL_RATE_ENV: "1.5"}, "between 0 and 1"),
                                              ({faults.DELAY_MS_ENV: "-1"}, "negative")])
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        faults.Faults.from_env(env)


def test_no_settings_no_faults() -> None:
    assert not faults.Faults.from_env({}).active


def test_the_runtime_injects_before_the_handler(monkeypatch: pytest.MonkeyPatch, clean_faults: None) -> None:
    monkeypatch.setenv(faults.FAIL_RATE_ENV, "1")
    handled = []
    participant = Participant("probe", tables=[], handlers={CREATED_SALE: lambda event, session: handled.append(event)})
    event = new_event(CREATED_SALE, 1, Sale(product_id=1, user_id=1, value=Decimal("1.00"), quantity=1), "sale")
    participant.handle(event, None)  # type: ignore[arg-type]
    assert handled == [event]  # the public API injects nothing
    injected = faults.with_faults(participant)
    with pytest.raises(TransientError):
        injected.handle(event, None)  # type: ignore[arg-type]
    assert handled == [event]
    injected.handle(event, None)  # type: ignore[arg-type]
    assert handled == [event, event]
    assert faults.with_faults(participant, faults.Faults()) is participant  # no faults: unchanged
