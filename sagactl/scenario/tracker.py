"""What a scenario sees of the saga: events as they happen, sale outcomes, the stream's history.

Outcomes come from the terminal events (instant) and, every second while a step waits, from the
sale service's table: a plain subscription misses what was published while NATS was down.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import orjson
from nats.aio.msg import Msg

from participants.contract import CANCELED_SALE, FINALIZED_SALE, STREAM_SUBJECTS
from sagactl.client import SagaClient
from sagactl.errors import SagactlError
from sagactl.streams.reader import StreamReader

POLL_S = 1.0

Outcome = tuple[str, str | None]  # status, reason


def event_body(data: bytes) -> dict[str, Any]:
    """The body as published; `{"raw": text}` for one that is not a JSON object."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    return body if isinstance(body, dict) else {"raw": data.decode(errors="replace")}


class SaleTracker:
    def __init__(self, client: SagaClient, on_event: Callable[[dict[str, Any], str], None]) -> None:
        self.client = client
        self.on_event = on_event
        self.outcomes: dict[int, Outcome] = {}
        self.events_seen = 0
        self._changed = asyncio.Event()
        self._last_poll = 0.0

    async def start(self) -> None:
        await self.client.nc.subscribe(STREAM_SUBJECTS[0], cb=self._deliver)
        await self.client.nc.flush()
        self._last_poll = time.monotonic()

    async def _deliver(self, msg: Msg) -> None:
        body = event_body(msg.data)
        self.events_seen += 1
        self.on_event(body, msg.subject)
        if body.get("type") in (FINALIZED_SALE, CANCELED_SALE) and isinstance(body.get("sale_id"), int):
            status = "FINALIZED" if body["type"] == FINALIZED_SALE else "CANCELED"
            self.outcomes[body["sale_id"]] = (status, body.get("reason"))
            self._changed.set()

    async def refresh(self) -> None:
        """Read every sale's status from the sale service (catches events we could not see)."""
        self._last_poll = time.monotonic()
        try:
            tables = (await self.client.state(["sale"], timeout=2.0))["sale"]
        except SagactlError:
            return
        for row in (tables or {}).get("sales", []):
            if row.get("status") in ("FINALIZED", "CANCELED"):
                self.outcomes[int(row["id"])] = (row["status"], row.get("reason"))

    async def wait(self, sale_ids: list[int], status: str | None, timeout_s: float) -> bool:
        """True when every sale reached `status` (or any terminal status); False on timeout or as
        soon as a sale ends with another status (a terminal status never changes)."""
        deadline = time.monotonic() + timeout_s
        last_look = False
        while True:
            self._changed.clear()
            ended = [self.outcomes.get(i) for i in sale_ids]
            if status and any(o is not None and o[0] != status for o in ended):
                return False
            if all(o is not None for o in ended):
                return True
            now = time.monotonic()
            if now >= deadline:
                if last_look:
                    return False
                last_look = True  # one more look at the sale table before giving up
                await self.refresh()
            elif now - self._last_poll >= POLL_S:
                await self.refresh()
            else:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(deadline - now, POLL_S))
                except asyncio.TimeoutError:
                    pass


async def read_history(urls: list[str]) -> list[dict[str, Any]]:
    """Every event on the SAGA stream, in order (a reader of its own that acks nothing)."""
    reader = await StreamReader.open(urls, name="sagactl-run")
    try:
        await reader.bounds()
        return [event.body or {"raw": event.data.decode(errors="replace")} async for event in reader.read(follow=False)]
    finally:
        await reader.close()
