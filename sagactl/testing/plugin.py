"""The pytest plugin: fixtures for testing a participant against a real nats-server.

Installed with sagactl (entry point `pytest11`), so in any project that has sagactl installed:

    def test_ships_a_finalized_sale(saga_harness):
        shipping = saga_harness.start("examples.shipping:participant")
        saga_harness.publish(saga_harness.event(FINALIZED_SALE, sale_id=7))
        [created] = saga_harness.wait_for("SHIPMENT_CREATED", sale_id=7)
        assert shipping.rows("shipments")[0]["sale_id"] == 7
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from sagactl.system.processes import nats_server_binary
from sagactl.testing.harness import SagaHarness
from sagactl.testing.nats import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream nats-server of this test's own (free loopback port, store in tmp_path), stopped by pid."""
    try:
        nats_server_binary()
    except Exception as exc:
        pytest.fail(f"nats-server is missing: {exc}", pytrace=False)
    server = NatsServer(tmp_path / "nats-server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL of this test's own nats-server."""
    return nats_server.url


@pytest.fixture
def saga_harness(nats_server: NatsServer, tmp_path: Path) -> Iterator[SagaHarness]:
    """Start participants, publish events, wait for what they emit, read their tables; all stopped at the end."""
    harness = SagaHarness(nats_server.url, tmp_path / "saga")
    try:
        yield harness
    finally:
        harness.close()
