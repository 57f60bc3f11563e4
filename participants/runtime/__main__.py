"""`python -m participants.runtime MODULE:OBJECT` runs any participant declared with the API."""

from __future__ import annotations

import sys

from participants.runtime.daemon import run
from participants.runtime.loader import load_participant


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m participants.runtime MODULE:OBJECT\n")
        raise SystemExit(2)
    try:
        participant = load_participant(sys.argv[1])
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    run(participant)


if __name__ == "__main__":
    main()
