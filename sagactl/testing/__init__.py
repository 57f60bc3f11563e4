"""Test your own participant against a real nats-server and a temporary database.

With sagactl installed, pytest gets the fixtures `nats_server`, `nats_url` and `saga_harness`
(plugin `sagactl.testing.plugin`). Outside pytest, use the classes directly:

    server = NatsServer(tmp_dir / "nats"); server.start()
    harness = SagaHarness(server.url, tmp_dir / "saga")
    ...
    harness.close(); server.stop()

docs/participants.md shows a full test.
"""

from participants.runtime.crashpoints import (
    AFTER_COMMIT,
    AFTER_PUBLISH,
    CRASH_POINTS,
    MID_BATCH,
)
from sagactl.testing.harness import (
    ObservedDeadLetter,
    ObservedEvent,
    RunningParticipant,
    SagaHarness,
    WaitTimeout,
)
from sagactl.testing.nats import NatsServer

__all__ = [
    "AFTER_COMMIT",
    "AFTER_PUBLISH",
    "CRASH_POINTS",
    "MID_BATCH",
    "ObservedDeadLetter",
    "NatsServer",
    "ObservedEvent",
    "RunningParticipant",
    "SagaHarness",
    "WaitTimeout",
]
