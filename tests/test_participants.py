"""Each built-in participant alone against a real nats-server, through sagactl.testing.

The harness publishes the events a participant consumes, as its neighbours would, and waits for
the events it emits; crash points and redeliveries show the runtime's inbox and outbox at work.
"""

from __future__ import annotations

import ast
from pathlib import Path

from participants.contract import (
    CANCELED_SALE,
    CREATED_SALE,
    FAILED_PAYMENT,
    FINALIZED_SALE,
    ROLLBACK_INVENTORY,
    UPDATED_INVENTORY,
    VALIDATED_PAYMENT,
)
from sagactl.testing import AFTER_COMMIT, AFTER_PUBLISH, SagaHarness

ROOT = Path(__file__).resolve().parent.parent


def test_inventory_reserves_stock_and_refuses_what_it_lacks(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory")
    saga_harness.publish(saga_harness.event(CREATED_SALE, 1, quantity=3))
    saga_harness.publish(saga_harness.event(CREATED_SALE, 2, quantity=8))
    saga_harness.publish(saga_harness.event(CREATED_SALE, 3, product_id=9))
    [updated] = saga_harness.wait_for(UPDATED_INVENTORY, sale_id=1)
    assert updated.producer == "inventory" and updated.quantity == 3
    [short] = saga_harness.wait_for(ROLLBACK_INVENTORY, sale_id=2)
    [unknown] = saga_harness.wait_for(ROLLBACK_INVENTORY, sale_id=3)
    assert (short.reason, unknown.reason) == ("out of stock", "unknown product")
    assert inventory.rows("inventories") == [{"id": 1, "product_id": 1, "quantity": 7}]


def test_inventory_compensates_a_failed_payment(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory")
    saga_harness.publish(saga_harness.event(CREATED_SALE, 1, quantity=4))
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=1)
    saga_harness.publish(saga_harness.event(FAILED_PAYMENT, 1, quantity=4, reason="insufficient balance"))
    [rollback] = saga_harness.wait_for(ROLLBACK_INVENTORY, sale_id=1)
    assert rollback.reason == "insufficient balance"
    assert inventory.rows("inventories")[0]["quantity"] == 10


def test_payment_charges_or_refuses(saga_harness: SagaHarness) -> None:
    payment = saga_harness.start("payment")
    saga_harness.publish(saga_harness.event(UPDATED_INVENTORY, 1, value="30.00"))
    saga_harness.publish(saga_harness.event(UPDATED_INVENTORY, 2, value="70.01"))
    saga_harness.publish(saga_harness.event(UPDATED_INVENTORY, 3, user_id=5))
    saga_harness.wait_for(VALIDATED_PAYMENT, sale_id=1)
    assert saga_harness.wait_for(FAILED_PAYMENT, sale_id=2)[0].reason == "insufficient balance"
    assert saga_harness.wait_for(FAILED_PAYMENT, sale_id=3)[0].reason == "unknown user"
    tables = payment.tables()
    assert tables["users"] == [{"id": 1, "name": "userTest", "balance": "70.00"}]
    assert [(p["sale_id"], p["value"], p["state"]) for p in tables["payments"]] == [
        (1, "30.00", "CHARGED"), (2, "70.01", "REFUSED"), (3, "20.00", "REFUSED")]


def test_sale_opens_and_closes_sales(saga_harness: SagaHarness) -> None:
    sale = saga_harness.start("sale")
    first, second = saga_harness.submit(quantity=1), saga_harness.submit(quantity=2)
    assert [e.sale_id for e in saga_harness.wait_for(CREATED_SALE, count=2)] == [first, second]
    saga_harness.publish(saga_harness.event(VALIDATED_PAYMENT, first, quantity=1))
    saga_harness.publish(saga_harness.event(ROLLBACK_INVENTORY, second, reason="out of stock"))
    saga_harness.wait_for(FINALIZED_SALE, sale_id=first)
    assert saga_harness.wait_for(CANCELED_SALE, sale_id=second)[0].reason == "out of stock"
    assert [(r["id"], r["status"], r["reason"]) for r in sale.rows("sales")] == [
        (first, "FINALIZED", None), (second, "CANCELED", "out of stock")]


def test_a_copy_under_a_new_message_id_has_no_second_effect(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory")
    created = saga_harness.event(CREATED_SALE, 1, quantity=2)
    saga_harness.publish(created)
    assert saga_harness.publish(created).duplicate  # same Nats-Msg-Id: the stream drops it
    saga_harness.publish_again(created)  # new Nats-Msg-Id: stored, so the inbox must absorb it
    inventory.wait_logged("duplicate", event_id=created.event_id)
    # The relay publishes the first copy's answer after its commit: it may come after the copy.
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=1)
    assert len(saga_harness.events(CREATED_SALE)) == 2
    assert len(saga_harness.events(UPDATED_INVENTORY)) == 1
    assert inventory.rows("inventories")[0]["quantity"] == 8


def test_crash_after_commit_publishes_once_and_applies_once(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory", crash_point=AFTER_COMMIT)
    created = saga_harness.event(CREATED_SALE, 1, quantity=2)
    saga_harness.publish(created)
    inventory.wait_crash()  # stock debited and UPDATED_INVENTORY in the outbox, nothing published or acked
    assert saga_harness.events(UPDATED_INVENTORY) == []
    inventory.restart()
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=1)  # the outbox relay publishes it at start
    inventory.wait_logged("duplicate", event_id=created.event_id)  # the unacked event comes back
    assert len(saga_harness.events(UPDATED_INVENTORY)) == 1
    assert inventory.rows("inventories")[0]["quantity"] == 8


def test_a_crash_point_with_a_count_lets_the_first_passes_through(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory", crash_point=f"{AFTER_COMMIT}:2")
    saga_harness.publish(saga_harness.event(CREATED_SALE, 1, quantity=1))
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=1)  # the first commit: passed through
    assert inventory.running
    saga_harness.publish(saga_harness.event(CREATED_SALE, 2, quantity=1))
    inventory.wait_crash()  # the second commit: killed there, its answer not published
    assert [e.sale_id for e in saga_harness.events(UPDATED_INVENTORY)] == [1]
    inventory.restart()
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=2)  # committed before the kill: the relay publishes it
    assert inventory.rows("inventories")[0]["quantity"] == 8


def test_a_sale_killed_after_committing_a_submit_publishes_it_once_back(saga_harness: SagaHarness) -> None:
    sale = saga_harness.start("sale", crash_point=AFTER_COMMIT)
    try:  # the process replies, then dies before handing CREATED_SALE to its relay
        saga_harness.request("sale", "submit", {"product_id": 1, "user_id": 1, "value": "20.00", "quantity": 2}, timeout=3)
    except Exception:
        pass  # the reply may die with the process; the sale is committed either way
    sale.wait_crash()
    assert saga_harness.events(CREATED_SALE) == []  # committed, in the outbox, not published
    sale.restart()
    [created] = saga_harness.wait_for(CREATED_SALE, sale_id=1)  # the relay publishes it at start
    assert (created.product_id, created.quantity) == (1, 2)
    assert [(row["id"], row["status"]) for row in sale.rows("sales")] == [(1, "PENDING")]
    assert len(saga_harness.events(CREATED_SALE)) == 1


def test_crash_after_publish_leaves_one_copy_on_the_stream(saga_harness: SagaHarness) -> None:
    payment = saga_harness.start("payment", crash_point=AFTER_PUBLISH)
    saga_harness.publish(saga_harness.event(UPDATED_INVENTORY, 1, value="20.00"))
    payment.wait_crash()  # published, but the outbox row is not marked sent
    payment.restart()
    payment.wait_logged("duplicate", sale_id=1)  # the redelivered UPDATED_INVENTORY
    # The relay republished the same event id; the stream's duplicate window kept one copy.
    assert len(saga_harness.wait_for(VALIDATED_PAYMENT, sale_id=1)) == 1
    assert payment.tables()["users"][0]["balance"] == "80.00"


def test_a_handler_that_keeps_failing_is_dead_lettered(saga_harness: SagaHarness) -> None:
    inventory = saga_harness.start("inventory", env={"SAGACTL_MAX_DELIVER": "2"})
    # Stock to credit back for a sale inventory never reserved: refused, at its first delivery.
    saga_harness.publish(saga_harness.event(FAILED_PAYMENT, 1, product_id=42))
    [letter] = saga_harness.wait_for_dead_letter()
    assert letter.participant == "inventory" and "never saw CREATED_SALE for sale 1" in letter.error
    inventory.wait_logged("dead_letter")
    saga_harness.publish(saga_harness.event(CREATED_SALE, 2))  # the consumer was not blocked
    saga_harness.wait_for(UPDATED_INVENTORY, sale_id=2)


def test_built_ins_use_only_the_public_api() -> None:
    """sale, inventory and payment are written against participants.runtime and the contract only."""
    public = {"participants.runtime", "participants.contract"}
    for name in ("sale", "inventory", "payment"):
        for path in (ROOT / "participants" / name).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("participants"):
                    own = node.module == f"participants.{name}" or node.module.startswith(f"participants.{name}.")
                    assert own or node.module in public, f"{path.name} imports {node.module}"
