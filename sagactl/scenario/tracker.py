"""What a scenario sees of the saga: events as they happen, and how its sales ended.

A sale's end comes from the client's terminal watcher (`SagaClient.watch_terminal`); while a step
waits, the sales still open are looked up at the sale service every second too, since a cluster
node that dies may take terminal events with it without this client ever disconnecting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from nats.aio.msg import Msg

from participants.contract import STATUS_PENDING, STREAM_SUBJECTS, decode_body
from sagactl.client import SagaClient

POLL_S = 1.0


class SaleTracker:
    def __init__(self, client: SagaClient, on_event: Callable[[dict[str, Any], str], None]) -> None:
        self.client = client
        self.on_event = on_event
        self.events_seen = 0
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self.client.watch_terminal(lambda outcome: self._changed.set())
        await self.client.nc.subscribe(STREAM_SUBJECTS[0], cb=self._deliver)
        await self.client.nc.flush()

    async def _deliver(self, msg: Msg) -> None:
        self.events_seen += 1
        self.on_event(decode_body(msg.data) or {"raw": msg.data.decode(errors="replace")}, msg.subject)

    def status(self, sale_id: int) -> tuple[str, str | None]:
        """(status, reason) as known here: PENDING until the sale's end is known."""
        outcome = self.client.outcome(sale_id)
        return (STATUS_PENDING, None) if outcome is None else (outcome.status, outcome.reason)

    async def wait(self, sale_ids: list[int], status: str | None, timeout_s: float) -> bool:
        """True when every sale reached `status` (or any terminal status); False on timeout or as
        soon as a sale ends with another status (a terminal status never changes)."""
        deadline = time.monotonic() + timeout_s
        last_poll = time.monotonic()
        last_look = False
        while True:
            self._changed.clear()
            ended = [self.client.outcome(i) for i in sale_ids]
            if status and any(o is not None and o.status != status for o in ended):
                return False
            if all(o is not None for o in ended):
                return True
            now = time.monotonic()
            if now >= deadline:
                if last_look:
                    return False
                last_look = True  # one more look at the sale service before giving up
                await self.client.recheck(sale_ids)
            elif now - last_poll >= POLL_S:
                last_poll = now
                await self.client.recheck(sale_ids)
            else:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(deadline - now, POLL_S))
                except asyncio.TimeoutError:
                    pass
