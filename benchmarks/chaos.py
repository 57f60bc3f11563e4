"""Chaos run: sagas flow through a real system while random faults are injected; then the tally.

    .venv/bin/python benchmarks/chaos.py --minutes 8 --seed 1 --sagas-per-second 40
    .venv/bin/python benchmarks/chaos.py --minutes 0.4 --schedule crash,nats,unwritable --json

A private system (sagactl's own Supervisor on a temp state dir, inventory with --replicas) takes
sales (the mix of `sagactl bench`: 10 % designed to fail) while faults hit it, one at a time:
  crash       restart a participant with SAGACTL_CRASH_POINT=<point>:<n>, it SIGKILLs itself, restarted
  replica     an inventory replica dies at after_commit and stays dead (needs --replicas >= 2)
  nats        nats-server (every node with --cluster) SIGKILLed, restarted 1-15 s later (--max-outage)
  unwritable  a participant's SQLite files made immutable (chattr +i) for 1-6 s (at most --max-outage)
  oversized   an event of max_payload - 126 bytes on saga.sale.created or saga.payment.failed
  forged      a new-id copy of a real event, or an event for a sale that never existed
  leader      (--cluster 3) the SAGA stream's leader node SIGKILLed, restarted 1-5 s later
  postgres    (--postgres URL) every backend of the participants' databases pg_terminate_backend()ed
              (the participants keep their tables in fresh databases there, dropped at the end;
              `unwritable` is then left out: it makes SQLite files immutable)
Then it waits for every sale to end and every consumer to be idle, runs `sagactl check`'s rules
and reads the sale table: submitted, lost, doubled, stuck, faults by kind, the longest recovery
(from a fault, and from its end, to the next terminal event). Exit 1 if anything is lost, doubled
or stuck (or check fails for a reason the injected events do not explain). Every process it started is stopped by
pid; traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from participants.contract import FAILED_PAYMENT, STREAM, new_event, new_event_id, parse_event, parse_sale
from participants.runtime.crashpoints import AFTER_COMMIT, CRASH_POINTS
from participants.runtime.loader import BUILT_IN
from participants.runtime.settings import to_env
from sagactl.bench.load import BALANCE, BROKE_USER, EMPTY_PRODUCT, PRODUCT, STOCK, USER, LoadPlan, design
from sagactl.check import CheckReport, run_checks
from sagactl.client import SagaClient, SaleOutcome
from sagactl.errors import SagactlError, Unavailable
from sagactl.snapshot import read_rows
from sagactl.system.forking import ParticipantProcess
from sagactl.system.processes import pid_alive, read_pid, stop_pid
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

KINDS = ("crash", "replica", "nats", "unwritable", "oversized", "forged")
IN_FLIGHT = 32
FORGED_SALE_BASE = 900_000_000  # ids of sales that never existed, far above any real one
REAL_SUBJECTS = ("saga.sale.created", "saga.inventory.updated", "saga.payment.failed", "saga.sale.finalized")


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    fault_times: list[tuple[str, float, float]] = field(default_factory=list)  # (kind, injected, lifted): perf_counter
    terminal_times: list[float] = field(default_factory=list)
    injected_seqs: set[int] = field(default_factory=set)  # stream seqs of oversized and forged events
    forged_sales: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


class Chaos:
    """The faults, run in a thread (the supervisor's calls block) beside the load's event loop."""

    def __init__(self, system: Supervisor, rng: random.Random, args: argparse.Namespace, tally: Tally,
                 loop: asyncio.AbstractEventLoop, client: SagaClient) -> None:
        self.system, self.rng, self.args, self.tally, self.loop, self.client = system, rng, args, tally, loop, client
        self.dead_for_good: set[tuple[str, int]] = set()
        self.stop = threading.Event()
        self.can_chattr = shutil.which("chattr") is not None

    def schedule(self) -> list[str]:
        if self.args.schedule:
            return self.args.schedule.split(",")
        kinds = [k for k in KINDS if (k != "replica" or self.args.replicas > 1) and (k != "unwritable" or not self.args.postgres)]
        kinds += (["leader"] if self.args.cluster else []) + (["postgres"] if self.args.postgres else [])
        rounds = []
        for _ in range(1000):  # every kind once per round, in random order: each kind several times
            batch = list(kinds)
            self.rng.shuffle(batch)
            rounds += batch
        return rounds

    def run(self, until: float) -> None:
        for kind in self.schedule():
            if self.stop.wait(self.rng.uniform(0.5, 1.5) * self.args.fault_gap) or time.perf_counter() >= until:
                return
            injected = time.perf_counter()
            kind = getattr(self, kind)() or kind  # what was injected in fact (`replica` may fall back to `crash`)
            self.tally.fault_times.append((kind, injected, time.perf_counter()))
            self.tally.faults[kind] += 1

    def _async(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def _start(self, name: str, replica: int, env: dict[str, str] | None = None) -> ParticipantProcess | None:
        """Start one process of a participant as `up` would (its replica count), wait until ready."""
        count = int((self.system.state.load_system().get("replicas") or {}).get(name, 1))
        log_file = self.system.state.log_file(name, replica)
        offset = log_file.stat().st_size if log_file.exists() else 0
        process = self.system.start_participant(name, BUILT_IN[name], replica, self.system.nats_urls(),
                                                {**to_env(replicas=count), **(env or {})})
        try:
            self.system.wait_ready([(name, replica, process, offset)])
        except Unavailable:
            return None  # a crash point reached before `ready`: it is dead, as wanted
        return process

    def _alive(self) -> list[tuple[str, int]]:
        return [(p.name, p.replica) for p in self.system.processes() if p.running]

    def _crash_at_point(self, name: str, replica: int, point: str) -> None:
        self.system.stop_participant(name, replica, kill=True)
        process = self._start(name, replica, {"SAGACTL_CRASH_POINT": point})
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # too few events reached it: a plain SIGKILL then
                self.tally.notes.append(f"{name}-{replica} had not reached {point} in 10 s: SIGKILLed")
                stop_pid(process.pid, sig=9)
        self.system.state.pid_file(name, replica).unlink(missing_ok=True)

    def crash(self) -> str:
        name, replica = self.rng.choice([p for p in self._alive()])
        self._crash_at_point(name, replica, f"{self.rng.choice(CRASH_POINTS)}:{self.rng.randint(1, 10)}")
        self._start(name, replica)
        return "crash"

    def replica(self) -> str:
        alive = [p for p in self._alive() if p[0] == "inventory" and p[1] > 1]
        if not alive:
            return self.crash()  # counted as a crash: no replica is left to kill for good
        victim = self.rng.choice(alive)
        # at after_commit: it leaves committed rows unpublished, for the survivors' sweep to find
        self._crash_at_point(*victim, f"{AFTER_COMMIT}:{self.rng.randint(1, 5)}")
        self.dead_for_good.add(victim)
        return "replica"

    def nats(self) -> None:
        if self.args.cluster:  # every node at once: the whole server gone, as a single one would be
            from sagactl.system.cluster import EmbeddedCluster

            cluster = EmbeddedCluster(self.system.state)
            for node in cluster.nodes():
                cluster.kill(node.number)
            self.stop.wait(self.rng.uniform(1.0, self.args.max_outage))
            cluster.start(self.args.cluster)
            return
        self.system.stop_nats(kill=True)
        self.stop.wait(self.rng.uniform(1.0, self.args.max_outage))
        self.system.start_nats()

    def leader(self) -> None:
        from sagactl.system.cluster import EmbeddedCluster

        cluster = EmbeddedCluster(self.system.state)
        self._retried(lambda: cluster.kill_stream_leader(self.client.nc.jetstream()))
        self.stop.wait(self.rng.uniform(1.0, 5.0))
        cluster.start(self.args.cluster)

    def postgres(self) -> None:
        databases = list(self.args.databases.values())
        with admin(self.args.postgres) as connection:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (databases,))

    def unwritable(self) -> None:
        name = self.rng.choice(list(BUILT_IN))
        db = self.system.state.root / f"{name}.db"
        files = [str(db), f"{db}-wal"]  # as root, chmod would not stop a write: immutable files do
        if subprocess.run(["chattr", "+i", *files], capture_output=True).returncode != 0:
            self.tally.notes.append("unwritable: chattr +i refused here")
            return
        try:
            self.stop.wait(self.rng.uniform(1.0, min(6.0, self.args.max_outage)))
        finally:
            subprocess.run(["chattr", "-i", *files], capture_output=True)

    def oversized(self) -> None:
        subject = self.rng.choice(["saga.sale.created", "saga.payment.failed"])
        self._publish(subject, b"z" * (self.client.nc.max_payload - 126))

    def forged(self) -> None:
        if self.rng.random() < 0.5:
            sale_id = FORGED_SALE_BASE + len(self.tally.forged_sales)
            self.tally.forged_sales.add(sale_id)
            event = new_event(FAILED_PAYMENT, sale_id, parse_sale(PRODUCT, USER, "1.00", 1), "payment")
            self._publish(event.subject, event.to_bytes(), event.event_id)
            return
        try:
            last = self._async(self.client.nc.jetstream().get_last_msg(STREAM, self.rng.choice(REAL_SUBJECTS)))
            copy = parse_event(last.data).model_copy(update={"event_id": new_event_id()})
        except Exception:  # nothing on that subject yet, or the last is our own oversized body: forge
            return self.forged()  # one for an unknown sale instead
        self._publish(copy.subject, copy.to_bytes(), copy.event_id)

    def _publish(self, subject: str, data: bytes, msg_id: str | None = None) -> None:
        headers = {"Nats-Msg-Id": msg_id or uuid.uuid4().hex}  # the same id: a retry is not a second event
        ack = self._retried(lambda: self.client.nc.jetstream().publish(subject, data, headers=headers))
        self.tally.injected_seqs.add(ack.seq)

    def _retried(self, request: Any) -> Any:
        """Await `request()` until the server answers, for a minute at most (a cluster just
        restarted may have no leader yet)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return self._async(request())
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def restore(self) -> None:
        """Whatever the last fault left down comes back, except the replicas killed for good."""
        for name, count in (self.system.state.load_system().get("replicas") or {}).items():
            for replica in range(1, int(count) + 1):
                if (name, replica) not in self.dead_for_good and not pid_alive(read_pid(self.system.state.pid_file(name, replica))):
                    self._start(name, replica)


async def drive(system: Supervisor, args: argparse.Namespace) -> dict[str, Any]:
    client = await SagaClient.connect(system.nats_urls(), name="sagactl-chaos", reconnect_forever=True)
    tally = Tally()
    try:
        await client.request("inventory", "setup", {"products": {str(PRODUCT): STOCK, str(EMPTY_PRODUCT): 0}})
        await client.request("payment", "setup", {"users": {str(USER): {"name": "chaos", "balance": str(BALANCE)},
                                                            str(BROKE_USER): {"name": "chaos-broke", "balance": "0.00"}}})
        before = {row["id"] for row in await read_rows(client, "sale", "sales")}

        def on_terminal(outcome: SaleOutcome) -> None:
            tally.terminal_times.append(outcome.seen_at)

        await client.watch_terminal(on_terminal)
        seconds = args.minutes * 60
        sales = design(LoadPlan(sagas=int(seconds * args.sagas_per_second) + 1, seed=args.seed))
        started = time.perf_counter()
        chaos = Chaos(system, random.Random(args.seed + 1), args, tally, asyncio.get_running_loop(), client)
        faults = asyncio.create_task(asyncio.to_thread(chaos.run, started + seconds))
        ids = await submit_all(client, sales, started, args)
        chaos.stop.set()
        await faults
        await asyncio.to_thread(chaos.restore)
        submitted_s = time.perf_counter() - started
        rows = await settled(client, set(ids), args.settle)
        report = await run_checks(client)
        return tallied(args, tally, ids, before, rows, report, submitted_s, chaos.dead_for_good)
    finally:
        await client.close()


async def submit_all(client: SagaClient, sales: list[Any], started: float, args: argparse.Namespace) -> list[int]:
    """Submit at the given rate, at most IN_FLIGHT at once, each until the sale service answers: a
    retry carries the same request id, so a lost reply does not make a second sale."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    ids: list[int] = []

    async def one(index: int) -> None:
        async with slots:
            for _ in range(1200):
                try:
                    ids.append(await client.submit(sales[index][0], f"chaos-{args.seed}-{index}"))
                    return
                except SagactlError:
                    await asyncio.sleep(0.1)
            raise SystemExit(f"chaos: the sale service did not take sale {index} for 2 minutes")

    tasks = []
    for index in range(len(sales)):
        await asyncio.sleep(max(0.0, started + index / args.sagas_per_second - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    return ids


async def settled(client: SagaClient, ids: set[int], timeout: float) -> dict[int, dict[str, Any]]:
    """Wait (bounded) until every submitted sale has ended and no consumer holds an event; return the rows."""
    deadline = time.monotonic() + timeout
    rows: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            rows = {row["id"]: row for row in await read_rows(client, "sale", "sales")}
            consumers = await client.nc.jetstream().consumers_info(STREAM)
            idle = all(c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers)
            if idle and all(rows.get(i, {}).get("status") not in (None, "PENDING") for i in ids):
                break
        except Exception:  # a participant still restarting: not yet
            pass
        await asyncio.sleep(0.5)
    return rows


def expected(violation: Any, tally: Tally) -> bool:
    """A violation the injected events explain: their own dead letters, a forged copy's second decision."""
    seqs = {int(s) for s in re.findall(r"\d+", violation.detail.partition("stream seq")[2])}
    if violation.check == "dead-letter":
        return bool(seqs & tally.injected_seqs) or any(str(s) in violation.subject for s in tally.forged_sales)
    if violation.check == "applied-twice":
        return len(seqs - tally.injected_seqs) <= 1
    return False


def next_terminal(times: list[float], since: float) -> float:
    return min((t for t in times if t > since), default=float("inf"))


def tallied(args: argparse.Namespace, tally: Tally, ids: list[int], before: set[int], rows: dict[int, dict[str, Any]],
            report: CheckReport, seconds: float, dead_for_good: set[tuple[str, int]]) -> dict[str, Any]:
    unexplained = [v for v in report.violations if not expected(v, tally)]
    kinds = Counter(v.check for v in unexplained)
    ours = [rows[i] for i in ids if i in rows]
    extra = [i for i in rows if i not in before and i not in set(ids) and i not in tally.forged_sales]
    # Recovery: from the fault's injection, and from its end (the server, process or file given back),
    # to the next terminal event of any sale.
    recoveries: dict[str, float] = {}
    after_lift: dict[str, float] = {}
    last_terminal = max(tally.terminal_times, default=0.0)
    for kind, injected, lifted in tally.fault_times:
        # A fault lifted after the last sale ended has no recovery to time (the run was over).
        if injected < last_terminal:
            recoveries[kind] = max(recoveries.get(kind, 0.0), next_terminal(tally.terminal_times, injected) - injected)
        if lifted < last_terminal:
            after_lift[kind] = max(after_lift.get(kind, 0.0), next_terminal(tally.terminal_times, lifted) - lifted)
    pending = {i for i in ids if rows.get(i, {}).get("status") == "PENDING"}
    pending |= {int(v.subject.split()[-1]) for v in unexplained if v.check == "stuck" and v.subject.split()[-1].isdigit()}
    result = {
        "minutes": args.minutes, "seed": args.seed, "sagas_per_second": args.sagas_per_second, "replicas": args.replicas,
        "cluster": args.cluster, "submitted": len(ids), "seconds": round(seconds, 1),
        "statuses": dict(Counter(r["status"] for r in ours)),
        "lost": (len(ids) - len(ours)) + kinds["stock"] + kinds["money"] + kinds["dead-letter"],
        "doubled": len(extra) + len(ids) - len(set(ids)) + kinds["applied-twice"] + kinds["payment"] + kinds["canceled"],
        "stuck": len(pending),
        "faults": dict(sorted(tally.faults.items())),
        "longest_recovery_s": round(max(recoveries.values(), default=0.0), 2),
        "recovery_s_by_kind": {k: round(v, 2) for k, v in sorted(recoveries.items())},
        "longest_recovery_after_lift_s": round(max(after_lift.values(), default=0.0), 2),
        "after_lift_s_by_kind": {k: round(v, 2) for k, v in sorted(after_lift.items())},
        "killed_for_good": sorted(f"{n}-{r}" for n, r in dead_for_good),
        "violations": [f"{v.check} {v.subject}: {v.detail}" for v in unexplained[:20]],
        "explained_violations": len(report.violations) - len(unexplained),
        "notes": tally.notes, "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    result["passed"] = not (result["lost"] or result["doubled"] or result["stuck"] or unexplained)
    return result


def admin(server_url: str) -> Any:
    import psycopg

    return psycopg.connect(server_url, autocommit=True, connect_timeout=5)


def create_databases(server_url: str) -> dict[str, str]:
    """A fresh database per participant on the server: participant -> database name."""
    prefix = f"sagactl_chaos_{uuid.uuid4().hex[:8]}"
    databases = {name: f"{prefix}_{name}" for name in BUILT_IN}
    with admin(server_url) as connection:
        for database in databases.values():
            connection.execute(f'CREATE DATABASE "{database}"')
    return databases


def db_url(server_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long sagas flow and faults hit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sagas-per-second", type=float, default=30.0)
    parser.add_argument("--replicas", type=int, default=3, help="inventory processes (one may be killed for good per extra)")
    parser.add_argument("--cluster", type=int, default=0, help="an embedded cluster of N nodes (adds the leader fault)")
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (a role that may create databases)")
    parser.add_argument("--schedule", default="", help=f"fault kinds in this order (of {','.join(KINDS)},leader,postgres); default random rounds")
    parser.add_argument("--fault-gap", type=float, default=3.0, help="mean seconds between two faults")
    parser.add_argument("--max-outage", type=float, default=15.0, help="longest NATS outage in seconds")
    parser.add_argument("--settle", type=float, default=180.0, help="longest wait for quiescence at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unknown = set(filter(None, args.schedule.split(","))) - {*KINDS, "leader", "postgres"}
    if unknown or args.minutes <= 0 or args.sagas_per_second <= 0:
        print(f"chaos: bad input ({', '.join(sorted(unknown)) or 'minutes and rate must be > 0'})", file=sys.stderr)
        return 2
    # SIGTERM (a CI timeout, a kill) must still stop the private system, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    os.environ.update(to_env(ack_wait_s=1))  # an event held by a killed process comes back at once
    state = StateDir.at(tempfile.mkdtemp(prefix="sagactl-chaos-"))
    system = Supervisor(state)
    args.databases = create_databases(args.postgres) if args.postgres else {}
    try:
        db_urls = {name: db_url(args.postgres, database) for name, database in args.databases.items()}
        system.up(None, replicas={"inventory": args.replicas}, cluster=args.cluster or None, db_urls=db_urls or None)
        result = asyncio.run(drive(system, args))
    finally:
        for path in state.root.glob("*.db*"):
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        system.down(purge=True)
        shutil.rmtree(state.root, ignore_errors=True)
        if args.databases:
            with admin(args.postgres) as connection:
                for database in args.databases.values():
                    connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
