"""Participants named by the user: `MODULE:OBJECT` references and the one import rule for them.

`up --with`, `participant run`, a scenario's `module:`/`start:` and the test harness all import
a participant the way its own process (started with `python -m` in the current directory) will.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from participants.runtime.loader import BUILT_IN, load_participant
from sagactl.errors import UsageError

if TYPE_CHECKING:
    from participants.runtime.participant import Participant


def current_directory_first() -> None:
    """The one import rule for `up --with`, `participant run` and a scenario's `module:`/`start:`.

    As `python -m` does (and the participant processes, started with `python -m` here, will):
    the current directory first, before an installed package of the same name.
    """
    cwd = os.getcwd()
    if sys.path[:1] != [cwd] and sys.path[:1] != [""]:
        sys.path.insert(0, cwd)


def load(reference: str) -> Participant:
    """Import a participant by `MODULE:OBJECT` from the current directory, as its process will.

    The participant processes run `python -m` in the current directory; the `sagactl` script
    does not have it on its path, so add it (as uvicorn does for `app:app`).
    """
    current_directory_first()
    try:
        return load_participant(reference)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_with(references: list[str]) -> dict[str, str]:
    """`--with examples.shipping:participant` -> {"shipping": "examples.shipping:participant"}.

    The module is imported here, so a typo is a usage error before anything starts.
    """
    result: dict[str, str] = {}
    for reference in references:
        name = load(reference).name
        if name in BUILT_IN and reference not in (name, BUILT_IN[name]):
            raise UsageError(f"--with {reference}: the name {name!r} belongs to a built-in participant")
        if name in result and result[name] != reference:
            raise UsageError(f"--with {reference}: {result[name]} is also named {name!r}")
        result[name] = BUILT_IN.get(reference, reference)
    return result
