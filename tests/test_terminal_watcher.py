"""A sale's end is learned in one place, the client's terminal watcher, by the CLI, scenarios and bench alike."""

from __future__ import annotations

import asyncio
import time

import orjson

from participants.contract import CANCELED_SALE, FINALIZED_SALE, REASON_OUT_OF_STOCK, subject_for
from sagactl.client import SagaClient, SaleOutcome, outcome_of
from sagactl.scenario.tracker import SaleTracker


def test_outcome_comes_from_the_event_type_alone() -> None:
    assert outcome_of({"type": FINALIZED_SALE, "sale_id": 3}) == SaleOutcome(3, "FINALIZED")
    assert outcome_of({"type": CANCELED_SALE, "sale_id": 4, "reason": "x"}) == SaleOutcome(4, "CANCELED", "x")
    assert outcome_of({"type": "UPDATED_INVENTORY", "sale_id": 3}) is None
    assert outcome_of({"type": FINALIZED_SALE, "sale_id": "3"}) is None
    assert outcome_of(None) is None


def test_each_sale_ends_once_for_every_listener(nats_url: str) -> None:
    async def scenario() -> None:
        client = await SagaClient.connect([nats_url])
        publisher = await SagaClient.connect([nats_url], name="publisher")
        seen: list[SaleOutcome] = []
        tracker = SaleTracker(client, lambda body, subject: None)
        try:
            await client.watch_terminal(seen.append)
            await tracker.start()  # the tracker listens on the same watcher, not a subscription of its own

            async def publish(event_type: str, sale_id: int, reason: str | None = None) -> None:
                body = {"type": event_type, "sale_id": sale_id, **({"reason": reason} if reason else {})}
                await publisher.nc.publish(subject_for(event_type), orjson.dumps(body))

            await publish(FINALIZED_SALE, 7)
            await publish(FINALIZED_SALE, 7)  # a copy (a relay publishing again after a lost PubAck)
            await publish(CANCELED_SALE, 8, REASON_OUT_OF_STOCK)
            await publisher.nc.publish(subject_for(FINALIZED_SALE), b"not json")
            await publish(FINALIZED_SALE, 99)  # the last one: once it is known, all before it were read
            await publisher.nc.flush()
            deadline = time.monotonic() + 10
            while client.outcome(99) is None or client.outcome(8) is None:
                assert time.monotonic() < deadline, f"outcomes not seen: {seen}"
                await asyncio.sleep(0.01)

            assert sorted((o.sale_id, o.status, o.reason) for o in seen) == [
                (7, "FINALIZED", None), (8, "CANCELED", REASON_OUT_OF_STOCK), (99, "FINALIZED", None)]
            assert await tracker.wait([7, 8], None, timeout_s=5)
            assert not await tracker.wait([7, 8], "FINALIZED", timeout_s=5)  # 8 was canceled: no need to wait
            assert tracker.status(8) == ("CANCELED", REASON_OUT_OF_STOCK)
            assert tracker.status(12) == ("PENDING", None)
        finally:
            await publisher.close()
            await client.close()

    asyncio.run(scenario())
