"""A participant stopped with SIGTERM gives back the events it had pulled but not handled."""

from __future__ import annotations

import asyncio

import orjson

from participants.contract import parse_sale
from sagactl.client import SagaClient
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

# Far longer than the test's deadline: an event the stopped process kept without an ack or a
# NAK would only come back after this, and the sales behind it would miss the deadline.
ACK_WAIT_S = "300"


async def _submit_and_finish(supervisor: Supervisor, urls: list[str], sales: int) -> None:
    client = await SagaClient.connect(urls)
    try:
        await client.request("inventory", "setup", {"products": {"1": 10_000}})
        await client.request("payment", "setup", {"users": {"1": {"balance": "100000.00"}}})
        await client.watch_terminal()
        ids = await client.submit_many([parse_sale(1, 1, "1.00", 1)] * sales, timeout=30)
        await client.wait_terminal(ids[0], 60)  # inventory is working through its buffer now
        await asyncio.to_thread(supervisor.stop_participant, "inventory")  # SIGTERM: a graceful stop
        await asyncio.to_thread(supervisor.up, None, None, None, {"inventory": {"SAGACTL_ACK_WAIT": ACK_WAIT_S}})
        # Bounded far below the 300 s ack wait: only events given back at the stop can be here in time.
        outcomes = await asyncio.gather(*(client.wait_terminal(i, 60) for i in ids))
        assert {o.status for o in outcomes} == {"FINALIZED"}
    finally:
        await client.close()
    records = [orjson.loads(line) for line in supervisor.state.log_file("inventory").read_bytes().splitlines()
               if line.startswith(b"{")]
    assert [r["what"] for r in records].count("stopped") == 1  # the first process stopped cleanly
    created = [r for r in records if r["what"] == "handled" and r["type"] == "CREATED_SALE"]
    # Pulled by the first process, not handled when it stopped, given back (a NAK), and delivered
    # again to the second: there were events in its buffer at SIGTERM, and none was handled twice.
    given_back = [r for r in created if r["deliveries"] >= 2]
    assert given_back, "no event was delivered twice: nothing was buffered at SIGTERM"
    assert sorted(r["sale_id"] for r in created) == sorted(ids)


def test_sigterm_gives_back_pulled_events(state: StateDir) -> None:
    supervisor = Supervisor(state)
    # Slow handling in small batches: many events wait in the process's buffer when it is told
    # to stop, and it can still stop within the supervisor's grace period.
    slow = {"SAGACTL_FAULT_DELAY_MS": "10", "SAGACTL_BATCH_SIZE": "32", "SAGACTL_ACK_WAIT": ACK_WAIT_S}
    try:
        urls = supervisor.up(None, extra_env={"inventory": slow})
        asyncio.run(_submit_and_finish(supervisor, urls, sales=1000))
    finally:
        supervisor.down()
