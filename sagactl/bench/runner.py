"""`sagactl bench` end to end: a system, its setup, the load, the figures, the checks."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from participants.contract import STREAM
from participants.runtime.settings import to_env
from sagactl.bench.load import (
    BALANCE,
    BROKE_USER,
    EMPTY_PRODUCT,
    PRODUCT,
    STOCK,
    USER,
    Generator,
    LoadPlan,
    LoadResult,
)
from sagactl.bench.procs import ProcessUsage, UsageMeter
from sagactl.client import SagaClient
from sagactl.system.processes import nats_config_file
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

DURABILITY_DEFAULT = (
    "default durability: JetStream writes reach the OS at once and are fsynced every 2 minutes, "
    "SQLite runs WAL with synchronous=NORMAL: a crash of any process loses nothing, "
    "a power loss may lose the last moments"
)
DURABILITY_FSYNC = (
    "--fsync: JetStream sync_interval always and SQLite synchronous=FULL: "
    "every acknowledged write survives a power loss"
)


@dataclass(frozen=True)
class BenchConfig:
    plan: LoadPlan
    reuse: bool = False  # the running system of state_dir instead of a fresh private one
    raw: bool = False  # participants skip their database work: the messaging limit
    fsync: bool = False
    state_dir: StateDir | None = None
    nats_url: str | None = None
    timeout_s: float = 300.0


@dataclass
class BenchReport:
    config: BenchConfig
    load: LoadResult
    events: int
    processes: list[ProcessUsage]
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def checks_passed(self) -> bool:
        return bool(self.checks.get("passed"))

    def percentile_ms(self, percentile: float) -> float:
        return self.load.histogram.get_value_at_percentile(percentile) / 1000

    def as_json(self) -> dict[str, Any]:
        plan, load = self.config.plan, self.load
        return {
            "sagas": plan.sagas,
            "concurrency": plan.concurrency,
            "rate": plan.rate,
            "fault_rate": plan.fault_rate,
            "raw": self.config.raw,
            "fsync": self.config.fsync,
            "reuse": self.config.reuse,
            "seconds": round(load.seconds, 3),
            "sagas_per_s": round(load.submitted / load.seconds, 1),
            "events": self.events,
            "events_per_s": round(self.events / load.seconds, 1),
            "finalized": load.finalized,
            "canceled": load.canceled,
            "p50_ms": round(self.percentile_ms(50), 3),
            "p90_ms": round(self.percentile_ms(90), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "max_ms": round(load.histogram.get_max_value() / 1000, 3),
            "processes": [p.as_json() for p in self.processes],
            # CPU of every measured process per saga: less sensitive to a busy machine than sagas/s.
            "cpu_us_per_saga": round(sum(p.cpu_s for p in self.processes) * 1e6 / max(load.submitted, 1), 1),
            "checks_passed": self.checks_passed,
            "checks": self.checks,
            "durability": DURABILITY_FSYNC if self.config.fsync else DURABILITY_DEFAULT,
            "load_average": _load_average(),
        }


def run_bench(config: BenchConfig, on_progress: Callable[[int, int], None] = lambda done, total: None) -> BenchReport:
    """Start (or reuse) a system, drive the load, measure, check, and stop what was started."""
    if config.reuse:
        assert config.state_dir is not None
        supervisor = Supervisor(config.state_dir)
        return asyncio.run(_measure(config, supervisor, supervisor.nats_urls(config.nats_url), on_progress))
    state = StateDir.at(tempfile.mkdtemp(prefix="sagactl-bench-"))
    supervisor = Supervisor(state)
    saved = os.environ.get("SAGACTL_NATS_CONFIG")
    # SIGTERM (a CI timeout, a kill) must still stop the private system below, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if config.fsync:
            os.environ["SAGACTL_NATS_CONFIG"] = str(_fsync_nats_config(state))
        urls = supervisor.up(None, extra_env=_participant_env(config))
        return asyncio.run(_measure(config, supervisor, urls, on_progress))
    finally:
        if saved is None:
            os.environ.pop("SAGACTL_NATS_CONFIG", None)
        else:
            os.environ["SAGACTL_NATS_CONFIG"] = saved
        supervisor.down(purge=True)
        shutil.rmtree(state.root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _participant_env(config: BenchConfig) -> dict[str, dict[str, str]]:
    env: dict[str, str] = {}
    if config.raw:
        env.update(to_env(raw=True))
    if config.fsync:
        env.update(to_env(sqlite_synchronous="FULL"))
    return {name: dict(env) for name in ("sale", "inventory", "payment")}


def _fsync_nats_config(state: StateDir) -> Path:
    text = nats_config_file().read_text()
    path = state.root / "nats-fsync.conf"
    path.write_text(text.replace("jetstream {", "jetstream {\n  sync_interval: always", 1))
    return path


async def _measure(
    config: BenchConfig, supervisor: Supervisor, urls: list[str], on_progress: Callable[[int, int], None]
) -> BenchReport:
    client = await SagaClient.connect(urls, name="sagactl-bench")
    try:
        await client.request("inventory", "setup", {"products": {str(PRODUCT): STOCK, str(EMPTY_PRODUCT): 0}})
        await client.request("payment", "setup", {"users": {
            str(USER): {"name": "bench", "balance": str(BALANCE)},
            str(BROKE_USER): {"name": "bench-broke", "balance": "0.00"},
        }})
        first_seq = await _last_seq(client)
        pids = {(p.name if p.replica == 1 else f"{p.name}-{p.replica}"): p.pid for p in supervisor.processes() if p.pid and p.running}
        nats_pid = supervisor.embedded_pid()
        if nats_pid:
            pids["nats-server"] = nats_pid
        meter = UsageMeter.with_generator(pids)
        meter.start()
        load = await Generator(client, config.plan, on_progress).run(config.timeout_s)
        processes = meter.stop()
        events = await _last_seq(client) - first_seq
        checks = await _checks(client, config.raw, load)
        return BenchReport(config, load, events, processes, checks)
    finally:
        await client.close()


async def _last_seq(client: SagaClient) -> int:
    info = await client.nc.jetstream().stream_info(STREAM)
    return int(info.state.last_seq)


async def _checks(client: SagaClient, raw: bool, load: LoadResult) -> dict[str, Any]:
    """Every sale ended as designed, and (with a database) `sagactl check`'s invariants hold."""
    problems = list(load.unexpected[:20])
    if load.missing:
        problems.append(f"{len(load.missing)} sales never ended, e.g. {load.missing[:5]}")
    what = ["every sale ended as designed"]
    if not raw:  # raw mode keeps no databases: there is nothing to reconcile
        from sagactl.check import run_checks

        report = await run_checks(client)
        what.append("sagactl check's invariants (stock, money, payments, nothing applied twice or stuck)")
        problems += [f"{v.check}: {v.subject}: {v.detail}" for v in report.violations[:20]]
    return {"passed": not problems, "what": what, "problems": problems}


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
