"""Soak: sagas with mixed outcomes while participants and the NATS server are killed at random.

CI runs a short version (2,000 sagas, 8 faults). The long one (see docs/reliability.md):

    SAGACTL_SOAK_SAGAS=20000 SAGACTL_SOAK_FAULTS=60 .venv/bin/pytest -q -m soak -s --timeout 0

SAGACTL_SOAK_SEED replays a run's random choices (the seed is printed with -s).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from participants.contract import Sale, parse_sale
from sagactl.client import SagaClient
from sagactl.errors import SagactlError
from sagactl.snapshot import read_rows
from sagactl.system.supervisor import Supervisor
from tests.driving import checked, connect, eventually, quiesce, record

SAGAS = int(os.environ.get("SAGACTL_SOAK_SAGAS", "2000"))
FAULTS = int(os.environ.get("SAGACTL_SOAK_FAULTS", "8"))
MEAN_GAP_S = 1.0  # between two faults; submissions are paced to span all of them
SEED = int(os.environ.get("SAGACTL_SOAK_SEED", str(random.randrange(1 << 30))))
IN_FLIGHT = 16
PARTICIPANTS = ("sale", "inventory", "payment")


def random_sale(rng: random.Random) -> Sale:
    """Mostly sales that succeed; some out of stock, refused, for unknown products or users."""
    product = rng.choices([1, 2, 3, 99], weights=[70, 15, 10, 5])[0]
    user = rng.choices([1, 2, 98], weights=[80, 15, 5])[0]
    return parse_sale(product, user, f"{rng.randint(100, 2000) / 100:.2f}", rng.randint(1, 3))


async def submit_with_retries(client: SagaClient, sale: Sale, request_id: str) -> None:
    """Submit until the sale service answers. A submit whose reply was lost may have created its
    sale: the retry carries the same request id, so it returns that sale instead of a second one."""
    for _ in range(600):
        try:
            await client.submit(sale, request_id)
            return
        except SagactlError:
            await asyncio.sleep(0.1)
    raise AssertionError("the sale service never came back")


def chaos(system: Supervisor, rng: random.Random, faults: Counter[str]) -> None:
    """In a thread: FAULTS times, SIGKILL a participant or the NATS server, then restart it.
    Each kind is hit at least once."""
    victims = [*PARTICIPANTS, "nats"] + rng.choices([*PARTICIPANTS, "nats"], k=max(FAULTS - 4, 0))
    rng.shuffle(victims)
    for victim in victims[:FAULTS]:
        time.sleep(rng.uniform(0.5, 1.5) * MEAN_GAP_S)
        if victim == "nats":
            system.stop_nats(kill=True)
            time.sleep(rng.uniform(0.1, 1.0))
            system.start_nats()
        else:
            system.stop_participant(victim, kill=True)
            time.sleep(rng.uniform(0.0, 0.5))
            system.up(None)
        faults[victim] += 1


@pytest.mark.soak
async def test_soak_with_random_kills_of_participants_and_nats(fast_system: Supervisor) -> None:
    print(f"\nsoak: {SAGAS} sagas, seed {SEED}")
    rng = random.Random(SEED)
    client = await connect(fast_system)
    try:
        await client.request("inventory", "setup", {"products": {"1": SAGAS, "2": 60, "3": 10}})
        await client.request("payment", "setup", {"users": {"1": {"balance": f"{SAGAS * 15}.00"}, "2": {"balance": "300.00"}}})
        faults: Counter[str] = Counter()
        started = time.monotonic()
        chaos_thread = asyncio.create_task(asyncio.to_thread(chaos, fast_system, random.Random(SEED + 1), faults))
        slots = asyncio.Semaphore(IN_FLIGHT)
        spread = FAULTS * MEAN_GAP_S  # submit at a steady rate while the faults happen

        async def one(index: int, sale: Sale) -> None:
            await asyncio.sleep(max(0.0, started + spread * index / SAGAS - time.monotonic()))
            async with slots:
                await submit_with_retries(client, sale, f"soak-{SEED}-{index}")

        await asyncio.gather(*(one(i, random_sale(rng)) for i in range(SAGAS)))
        await chaos_thread
        fast_system.up(None)  # whatever the last fault left down
        submitted = time.monotonic() - started

        async def all_terminal() -> list[dict[str, Any]] | None:
            rows = await read_rows(client, "sale", "sales")
            return rows if rows and all(r["status"] != "PENDING" for r in rows) else None

        rows = await eventually(all_terminal, "every sale to reach a terminal state", timeout=120)
        await quiesce(client, timeout=120)
        report = await checked(client)
        outcomes = Counter((r["status"], r["reason"]) for r in rows)
        print(f"soak: {len(rows)} sagas in {submitted:.1f}s, faults {dict(faults)}, outcomes {dict(outcomes)}, "
              f"check {report.seconds:.2f}s")
        assert len(rows) == SAGAS  # retried submits created no second sale
        assert {reason for (_, reason) in outcomes} >= {None, "out of stock", "insufficient balance", "unknown product", "unknown user"}
        assert sum(faults.values()) == FAULTS
        record(f"soak: {FAULTS} random SIGKILLs ({dict(sorted(faults.items()))})", len(rows),
               {r["id"]: r for r in rows}, report, seed=SEED, seconds=round(submitted, 1), check_seconds=round(report.seconds, 2))
    finally:
        await client.close()
