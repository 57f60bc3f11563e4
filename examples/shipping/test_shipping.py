"""The shipping participant's tests, written as a user would with sagactl's pytest fixtures.

`saga_harness` (from the sagactl.testing plugin) gives each test its own nats-server and
database; participants run as real processes, exactly as `sagactl up --with` runs them.
"""

from __future__ import annotations

from examples.shipping import SHIPMENT_CREATED
from participants.contract import FINALIZED_SALE
from sagactl.testing import AFTER_COMMIT, SagaHarness

REFERENCE = "examples.shipping:participant"


def test_a_finalized_sale_gets_one_shipment(saga_harness: SagaHarness) -> None:
    shipping = saga_harness.start(REFERENCE)
    finalized = saga_harness.event(FINALIZED_SALE, sale_id=7, product_id=3, user_id=2, quantity=4)
    saga_harness.publish(finalized)
    [created] = saga_harness.wait_for(SHIPMENT_CREATED, sale_id=7)
    assert created.producer == "shipping" and created.model_extra == {"shipment_id": 1}
    assert shipping.rows("shipments") == [
        {"id": 1, "sale_id": 7, "product_id": 3, "user_id": 2, "quantity": 4, "status": "READY"}]

    saga_harness.publish_again(finalized)  # a redelivered copy under a new message id
    shipping.wait_logged("duplicate", event_id=finalized.event_id)
    assert len(shipping.rows("shipments")) == 1
    assert len(saga_harness.events(SHIPMENT_CREATED)) == 1


def test_a_crash_between_commit_and_publish_loses_no_shipment_event(saga_harness: SagaHarness) -> None:
    shipping = saga_harness.start(REFERENCE, crash_point=AFTER_COMMIT)
    saga_harness.publish(saga_harness.event(FINALIZED_SALE, sale_id=1))
    shipping.wait_crash()
    shipping.restart()
    saga_harness.wait_for(SHIPMENT_CREATED, sale_id=1)
    shipping.wait_logged("duplicate", sale_id=1)  # FINALIZED_SALE came back after the crash
    assert len(saga_harness.events(SHIPMENT_CREATED)) == 1
    assert [row["sale_id"] for row in shipping.rows("shipments")] == [1]


def test_joining_a_live_saga_ships_every_finalized_sale_and_changes_nothing_else(saga_harness: SagaHarness) -> None:
    three = [saga_harness.start(name) for name in ("sale", "inventory", "payment")]
    before_join = [saga_harness.submit(quantity=2, value="10.00") for _ in range(2)]
    refused = saga_harness.submit(quantity=50)  # out of stock: canceled, never shipped
    saga_harness.wait_for(FINALIZED_SALE, count=2)
    saga_harness.wait_for("CANCELED_SALE", sale_id=refused)
    tables_before = [p.tables() for p in three]
    pids = [p.pid for p in three]

    shipping = saga_harness.start(REFERENCE)  # joins while the three run
    saga_harness.wait_for(SHIPMENT_CREATED, count=2)  # sales finalized before it joined are shipped too
    assert [p.tables() for p in three] == tables_before  # joining changed nothing in their databases

    after_join = [saga_harness.submit(quantity=1, value="5.00") for _ in range(2)]
    saga_harness.wait_for(SHIPMENT_CREATED, count=4)
    finalized = [e.sale_id for e in saga_harness.events(FINALIZED_SALE)]
    assert sorted(finalized) == sorted(before_join + after_join)
    assert sorted(row["sale_id"] for row in shipping.rows("shipments")) == sorted(finalized)
    assert [p.pid for p in three] == pids and all(p.running for p in three)
    assert three[1].rows("inventories")[0]["quantity"] == 10 - 2 * 2 - 2 * 1
    assert three[2].rows("users")[0]["balance"] == "70.00"
