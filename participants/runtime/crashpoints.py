"""Named crash points: places where tests kill a participant on purpose.

A timing-based kill rarely lands between a commit and a publish; a crash point does, every time.
`SAGACTL_CRASH_POINT=after_commit:3` kills the process with SIGKILL the third time it has
committed a handler's transaction and not yet published the events it decided.
"""

from __future__ import annotations

import os
import signal

AFTER_COMMIT = "after_commit"  # database committed, events not yet published, event not acked
AFTER_PUBLISH = "after_publish"  # events published, outbox not yet marked sent, event not acked
MID_BATCH = "mid_batch"  # one event of a fetched batch committed, the rest not yet handled
CRASH_POINTS = (AFTER_COMMIT, AFTER_PUBLISH, MID_BATCH)


class CrashPoints:
    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, count = spec.partition(":")
            if point not in CRASH_POINTS:
                raise ValueError(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}")
            if count and (not count.isdigit() or int(count) < 1):
                raise ValueError(f"the count after {point}: must be an integer >= 1, not {count!r}")
            self.point = point
            self.remaining = int(count or "1")

    def reach(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
