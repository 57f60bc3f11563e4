"""A sale's end is learned in one place, the client's terminal watcher, by the CLI, scenarios and bench alike."""

from __future__ import annotations

import asyncio
import time

import orjson
from nats.aio.msg import Msg

from participants.contract import CANCELED_SALE, FINALIZED_SALE, REASON_OUT_OF_STOCK, control_subject, subject_for
from sagactl.client import RECHECK_TIMEOUT_S, SagaClient, SaleOutcome, outcome_of
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


def test_a_recheck_gives_up_soon_when_the_sale_service_does_not_answer(nats_url: str) -> None:
    """A scenario's wait rechecks its open sales every second: with the sale service stalled
    (its subscription still there, no answer) that must cost one lookup timeout, not one per sale."""

    async def scenario() -> None:
        client = await SagaClient.connect([nats_url])
        stalled = await SagaClient.connect([nats_url], name="stalled-sale")
        try:
            async def never_answer(msg: Msg) -> None:
                return

            await stalled.nc.subscribe(control_subject("sale", "get"), cb=never_answer)
            await stalled.nc.flush()
            began = time.monotonic()
            await client.recheck(range(1, 101))
            took = time.monotonic() - began
            assert took < 2 * RECHECK_TIMEOUT_S, f"a recheck of 100 sales took {took:.1f}s"
            assert client.outcome(1) is None
        finally:
            await stalled.close()
            await client.close()

    asyncio.run(scenario())
