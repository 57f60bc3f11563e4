"""The JetStream wire protocol the hot path speaks (participants/runtime/jetstream.py).

These tests pin what that module relies on in nats-py: if the client changes how it presents a
status message, or its version moves from the pinned one, they fail here, loudly, first.
"""

from __future__ import annotations

import asyncio
import importlib.metadata

import nats
import pytest
from polling import eventually

from participants.contract import STREAM
from participants.runtime import broker
from participants.runtime.jetstream import (
    NATS_PY_VERSION,
    PubAcks,
    PullConsumer,
    ack_command,
    delivery_info,
    event_command,
    nak_body,
    send_all,
    status_of,
)


def test_nats_py_is_the_pinned_version() -> None:
    installed = importlib.metadata.version("nats-py")
    assert installed == NATS_PY_VERSION, (
        f"nats-py {installed} is installed; participants/runtime/jetstream.py was checked against "
        f"{NATS_PY_VERSION}: rerun tests/test_jetstream_wire.py, then update NATS_PY_VERSION and the pin"
    )


def test_delivery_info_reads_both_ack_subject_forms() -> None:
    assert delivery_info("$JS.ACK.SAGA.inventory.3.120.77.1700000000000000000.5") == (120, 3)
    assert delivery_info("$JS.ACK.hub.ACCHASH.SAGA.inventory.2.121.78.1700000000000000000.0.rand") == (121, 2)
    assert nak_body(0.4) == b'-NAK {"delay":400000000}'


async def _setup(url: str, durable: str, subject: str) -> nats.NATS:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await broker.ensure_streams(js)
    await broker.ensure_consumer(js, broker.consumer_config(durable, [subject], 5, 30))
    return nc


async def test_expired_pull_request_is_a_408_status_with_pending_count(nats_url: str) -> None:
    nc = await _setup(nats_url, "probe", "saga.probe.status")
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.probe", b'{"batch": 7, "expires": 200000000}', reply=inbox)
        msg = await sub.next_msg(timeout=5)
        assert status_of(msg) == "408", f"nats-py presented the status as headers={msg.headers!r} data={msg.data!r}"
        assert msg.headers.get("Nats-Pending-Messages") == "7"
    finally:
        await nc.close()


@pytest.mark.parametrize("batch", [1, 64])
async def test_pull_consumer_delivers_everything_and_keeps_credit(nats_url: str, batch: int) -> None:
    nc = await _setup(nats_url, f"probe{batch}", f"saga.probe.b{batch}")
    try:
        puller = PullConsumer(nc, STREAM, f"probe{batch}", batch, expires_s=0.5)
        await puller.start()
        js = nc.jetstream()
        got: list[bytes] = []
        # Published in two waves, the second after the first pull requests expired.
        for wave in range(2):
            for i in range(150):
                await js.publish(f"saga.probe.b{batch}", f"{wave}-{i}".encode())

            async def wave_arrived(wave: int = wave) -> bool:
                for msg in await puller.next_batch(0.2):
                    assert status_of(msg) is None and delivery_info(msg.reply)[1] == 1
                    await nc.publish(msg.reply, b"+ACK")
                    got.append(msg.data)
                return len(got) >= 150 * (wave + 1)

            await eventually(wave_arrived, f"wave {wave + 1}'s messages", 20, every=0, retry_on=())
            await asyncio.sleep(1.2)
        assert len(set(got)) == 300
        await puller.stop()
    finally:
        await nc.close()


async def test_a_subscription_without_callback_queues_its_messages_for_draining(nats_url: str) -> None:
    """PullConsumer drains nats-py's `_pending_queue` itself (no task per message): messages
    arrive there, in order, counted in `_pending_size`, and nothing else takes them."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.subscribe("probe.drain", pending_msgs_limit=-1, pending_bytes_limit=-1)
        for n in range(5):
            await nc.publish("probe.drain", b"%d" % n)
        await nc.flush()

        async def queued() -> bool:
            return sub._pending_queue.qsize() == 5

        await eventually(queued, "five messages queued", 10)
        assert sub._pending_size == 5
        assert [sub._pending_queue.get_nowait().data for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        await nc.close()


async def test_commands_sent_at_once_arrive_as_nc_publish_sends_them(nats_url: str) -> None:
    """send_all writes on nats-py's own outgoing buffer (`_pending`, `_pending_data_size`,
    `_flush_pending`): what arrives must be what `nc.publish` would have sent."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.subscribe("probe.send.>")
        before = dict(nc.stats)
        await send_all(nc, [
            event_command("probe.send.event", "probe.reply.1", "id-1", b'{"a": 1}'),
            event_command("probe.send.traced", "probe.reply.2", "id-2", b"", traceparent="00-ab-cd-01"),
            ack_command("probe.send.ack"),
            ack_command("probe.send.nak", nak_body(2)),
        ], payload_bytes=8)
        got = [await sub.next_msg(timeout=5) for _ in range(4)]
        assert [(m.subject, m.reply, m.data, m.headers) for m in got] == [
            ("probe.send.event", "probe.reply.1", b'{"a": 1}', {"Nats-Msg-Id": "id-1"}),
            ("probe.send.traced", "probe.reply.2", b"", {"Nats-Msg-Id": "id-2", "traceparent": "00-ab-cd-01"}),
            ("probe.send.ack", "", b"+ACK", None),
            ("probe.send.nak", "", nak_body(2), None),
        ]
        assert nc.stats["out_msgs"] - before["out_msgs"] == 4
        assert nc._pending_data_size == 0 and not nc._pending
    finally:
        await nc.close()


async def test_commands_for_a_closed_client_are_refused(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await send_all(nc, [ack_command("probe.closed")])


async def test_puback_collector_reports_stored_duplicate_and_missing(nats_url: str) -> None:
    nc = await _setup(nats_url, "probe-pub", "saga.probe.pub")
    try:
        pubacks = PubAcks(nc)
        await pubacks.start()
        stored = await pubacks.publish_all(
            [("saga.probe.pub", b"a", "id-1"), ("saga.probe.pub", b"a", "id-1"), ("nowhere.at.all", b"b", "id-2")], timeout=5
        )
        # A copy with the same message id is acknowledged (as a duplicate, not stored twice);
        # a subject no stream listens to gets a 503 status: not stored.
        assert stored == [True, True, False]
        info = await nc.jetstream().stream_info(STREAM)
        assert info.state.messages == 1
    finally:
        await nc.close()
