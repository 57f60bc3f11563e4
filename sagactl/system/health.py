"""Is a participant process healthy? Only when it says so itself: connected and consuming.

A pid that is alive says nothing about a process whose NATS connection is gone or whose
consumer no longer serves it. Every replica answers its participant's ping subject (no queue
group) with `connected` and `consuming` (participants/runtime/control.py); `sagactl status`
and `sagactl check` ask all of them at once and call healthy only those that answered so.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Iterable

import orjson

from participants.contract import control_subject

if TYPE_CHECKING:  # `sagactl status` with nothing running imports no NATS client
    from nats.aio.client import Client

PING_WAIT_S = 1.5
QUIET_S = 0.2  # a loopback or LAN reply takes milliseconds


async def ping_replicas(nc: Client, participants: Iterable[str], expected: int | None = None,
                        wait_s: float = PING_WAIT_S) -> list[dict[str, Any]]:
    """Every ping reply of these participants' processes within `wait_s`: sooner once `expected`
    answered or, not knowing how many run, once replies stop coming for QUIET_S."""
    replies: list[dict[str, Any]] = []
    enough = asyncio.Event()
    arrived = asyncio.Event()

    async def on_reply(msg: Any) -> None:
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict) and "participant" in body:
            replies.append(body)
            arrived.set()
            if expected is not None and len(replies) >= expected:
                enough.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        for name in participants:
            await nc.publish(control_subject(name, "ping"), b"{}", reply=inbox)
        await nc.flush()
        deadline = asyncio.get_running_loop().time() + wait_s
        while not enough.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), min(left, QUIET_S) if replies and expected is None else left)
            except asyncio.TimeoutError:
                if replies and expected is None:
                    break
    finally:
        await sub.unsubscribe()
    return replies


def healthy(reply: dict[str, Any] | None) -> bool:
    """A ping reply that says connected and consuming (an older process that does not say: no)."""
    return bool(reply) and reply.get("connected") is True and reply.get("consuming") is True  # type: ignore[union-attr]


def why_unhealthy(reply: dict[str, Any] | None) -> str:
    if not reply:
        return "did not answer its ping"
    if reply.get("connected") is not True:
        return "not connected to NATS"
    return "connected but not consuming"
