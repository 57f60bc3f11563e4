"""Find a participant by its `MODULE:OBJECT` reference."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from participants.runtime.participant import Participant

BUILT_IN = {
    "sale": "participants.builtin:sale",
    "inventory": "participants.builtin:inventory",
    "payment": "participants.builtin:payment",
}


def load_participant(reference: str) -> Participant:
    """Import `MODULE:OBJECT` (or a built-in name) and return the Participant it names."""
    from participants.runtime.participant import Participant

    reference = BUILT_IN.get(reference, reference)
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} is not of the form MODULE:OBJECT")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name}: {exc}") from None
    participant = getattr(module, attribute, None)
    if not isinstance(participant, Participant):
        raise ValueError(f"{reference} is not a participants.runtime.Participant")
    return participant
