"""Play a scenario on a fresh private system: setup, steps in order, then the verdicts.

`run_scenario` is the one call `sagactl run` makes. What happens is reported to an `Observer`
as it happens (steps, events), and everything ends up in the `Report`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import nats.errors
import orjson

from participants.contract import subject_for
from sagactl.client import SagaClient
from sagactl.errors import SagactlError
from sagactl.scenario.judge import Evidence, ExpectationVerdict, judge
from sagactl.scenario.model import (
    ExpectStep,
    KillNatsLeaderStep,
    KillStep,
    PauseStep,
    ResumeStep,
    PublishStep,
    RestartStep,
    Scenario,
    SleepStep,
    StartNatsStep,
    StartStep,
    ScenarioStep,
    StopNatsStep,
    SubmitStep,
    WaitExitStep,
    WaitStep,
)
from sagactl.scenario.private_system import ScenarioSystem, wait_exited
from sagactl.scenario.tracker import SaleTracker
from sagactl.streams.reader import read_all

RECONNECT_TIMEOUT_S = 15.0
EXPECT_RETRY_S = 0.2
# What a step may run into that ends the run with a failed verdict rather than a traceback.
STEP_ERRORS = (SagactlError, nats.errors.Error, asyncio.TimeoutError, OSError)


@dataclass
class StepResult:
    index: int
    line: int
    summary: str
    passed: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    scenario: str
    sales: dict[str, dict[str, Any]] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    verdicts: list[ExpectationVerdict] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0
    state_dir: str | None = None  # set when the system was kept running

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts) and all(s.passed for s in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "sales": self.sales,
            "steps": [asdict(s) | {"seconds": round(s.seconds, 3)} for s in self.steps],
            "expectations": [asdict(v) for v in self.verdicts],
            "events": self.events,
            "before": self.before,
            "after": self.after,
            "state_dir": self.state_dir,
        }


def _ignore(*_: Any) -> None:
    return None


@dataclass
class Observer:
    """Where a run reports progress; every callback defaults to doing nothing."""

    phase: Callable[[str], None] = _ignore
    step_started: Callable[[int, int, ScenarioStep], None] = _ignore
    step_done: Callable[[StepResult], None] = _ignore
    event: Callable[[dict[str, Any], str], None] = _ignore  # body (or {"raw": text}), subject


def run_scenario(scenario: Scenario, observer: Observer | None = None, keep: bool = False) -> Report:
    """Start a fresh private system, play the scenario on it, stop it (unless `keep`)."""
    observer = observer or Observer()
    started = time.monotonic()
    system = ScenarioSystem.fresh(scenario)
    previous = _first_interrupt_only()
    interrupted = False
    try:
        observer.phase(f"starting a private system in {system.state.root}")
        urls = system.start()
        report = asyncio.run(_play(scenario, system, urls, observer))
    except KeyboardInterrupt:
        interrupted, where = True, system.state.root
        if keep:
            observer.phase(f"interrupted: left running in {where} (stop: sagactl down --purge --state-dir {where})")
        else:
            removed = system.close()
            observer.phase(f"interrupted: removed {', '.join(removed) or 'nothing (nothing had started)'} "
                           f"and deleted {where}")
        raise
    finally:
        if not keep and not interrupted:
            system.close()
        if not interrupted:  # interrupted, the command is ending: a late second Ctrl-C stays ignored
            _restore_interrupt(previous)
    report.state_dir = str(system.state.root) if keep else None
    report.seconds = time.monotonic() - started
    return report


def _first_interrupt_only() -> Any:
    """Ctrl-C interrupts the run once; a second one, during the teardown, is ignored."""
    import signal

    def interrupted(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGINT, interrupted)
    except ValueError:  # not the main thread (an embedding program): its own handling applies
        return None


def _restore_interrupt(previous: Any) -> None:
    if previous is not None:
        import signal

        signal.signal(signal.SIGINT, previous)


async def _play(scenario: Scenario, system: ScenarioSystem, urls: list[str], observer: Observer) -> Report:
    client = await SagaClient.connect(urls, name="sagactl-run", reconnect_forever=True)
    try:
        return await _Play(scenario, system, client, urls, observer).run()
    finally:
        try:
            await client.close()
        except STEP_ERRORS:  # a connection to a server that a step stopped: nothing left to flush
            pass


@dataclass
class _StepOutcome:
    passed: bool
    detail: str
    verdicts: list[ExpectationVerdict] = field(default_factory=list)


class _Play:
    def __init__(self, scenario: Scenario, system: ScenarioSystem, client: SagaClient, urls: list[str],
                 observer: Observer) -> None:
        self.scenario = scenario
        self.system = system
        self.client = client
        self.urls = urls
        self.observer = observer
        self.tracker = SaleTracker(client, observer.event)
        self.report = Report(scenario.name)
        self.named: dict[str, list[int]] = {}
        self.submitted: list[int] = []

    def evidence(self, state: dict[str, Any] | None = None) -> Evidence:
        return Evidence(self.client, self.urls, self.system.participants, self.named, self.scenario.group_names, state)

    async def run(self) -> Report:
        await self.tracker.start()
        await self._setup()
        self.report.before = await self.client.state(self.system.participants)
        total = len(self.scenario.steps)
        for index, step in enumerate(self.scenario.steps, start=1):
            self.observer.step_started(index, total, step)
            began = time.monotonic()
            stop = False
            try:
                outcome = await self._do(step)
            except STEP_ERRORS as exc:  # the step could not be done: judge what is there, skip the rest
                why = str(exc) if isinstance(exc, SagactlError) else f"{type(exc).__name__}: {exc}"
                outcome, stop = _StepOutcome(False, why, [ExpectationVerdict(step.summary(), False, "done", why)]), True
            label = f"step {index} (line {step.line}): "
            for verdict in outcome.verdicts:
                verdict.what = label + verdict.what
            self.report.verdicts.extend(outcome.verdicts)
            result = StepResult(index, step.line, step.summary(), outcome.passed, time.monotonic() - began, outcome.detail)
            self.report.steps.append(result)
            self.observer.step_done(result)
            if stop:
                break
        self.report.after = await self.client.state(self.system.participants)
        self.report.verdicts.extend(await judge(self.scenario.expect, self.evidence(self.report.after)))
        self.report.sales = self._sales_summary()
        self.report.events = self.tracker.events_seen
        return self.report

    async def _setup(self) -> None:
        setup = self.scenario.setup
        if setup.products:
            await self.client.request("inventory", "setup", {"products": {str(k): v for k, v in setup.products.items()}})
        if setup.users:
            users = {str(k): {"balance": f"{u.balance:.2f}", **({"name": u.name} if u.name else {})}
                     for k, u in setup.users.items()}
            await self.client.request("payment", "setup", {"users": users})

    async def _do(self, step: ScenarioStep) -> _StepOutcome:
        if isinstance(step, SubmitStep):
            return await self._submit(step)
        if isinstance(step, WaitStep):
            return await self._wait(step)
        if isinstance(step, WaitExitStep):
            if await asyncio.to_thread(wait_exited, self.system, step.participant, step.timeout_s):
                return _StepOutcome(True, f"{step.participant} is not running")
            running = self.system.running(step.participant)
            return _StepOutcome(False, "still running", [ExpectationVerdict(f"{step.participant} exited", False, "no process running",
                                                             f"replicas {running} still running")])
        if isinstance(step, KillStep):
            await asyncio.to_thread(self.system.kill, step.participant, step.replica)
            return _StepOutcome(True, "killed")
        if isinstance(step, (PauseStep, ResumeStep)):
            paused = isinstance(step, PauseStep)
            pids = await asyncio.to_thread(self.system.freeze, step.participant, paused)
            return _StepOutcome(True, f"{'paused' if paused else 'resumed'} pid {', '.join(map(str, pids))}")
        if isinstance(step, RestartStep):
            await asyncio.to_thread(self.system.restart, step.participant)
            return _StepOutcome(True, f"{step.participant} ready")
        if isinstance(step, StartStep):
            await asyncio.to_thread(self.system.add, step.name, step.reference)
            return _StepOutcome(True, f"{step.name} ready")
        if isinstance(step, StopNatsStep):
            await asyncio.to_thread(self.system.stop_nats)
            return _StepOutcome(True, "nats-server killed")
        if isinstance(step, StartNatsStep):
            return await self._start_nats()
        if isinstance(step, KillNatsLeaderStep):
            return _StepOutcome(True, f"{await self.system.kill_nats_leader(self.client.nc.jetstream())} killed")
        if isinstance(step, PublishStep):
            return await self._publish(step)
        if isinstance(step, SleepStep):
            await asyncio.sleep(step.seconds)
            return _StepOutcome(True, "")
        if isinstance(step, ExpectStep):
            return await self._expect(step)
        raise AssertionError(f"no runner for {type(step).__name__}")

    async def _submit(self, step: SubmitStep) -> _StepOutcome:
        gate = asyncio.Semaphore(step.concurrency)

        async def one() -> int:
            async with gate:
                return await self.client.submit(step.sale, deadline=step.deadline_s)

        ids = list(await asyncio.gather(*(one() for _ in range(step.repeat))))
        self.submitted.extend(ids)
        if step.name:
            self.named[step.name] = ids
        return _StepOutcome(True, f"sale {ids[0]}" if len(ids) == 1 else f"sales {min(ids)}..{max(ids)}")

    async def _wait(self, step: WaitStep) -> _StepOutcome:
        ids = list(self.submitted) if step.names is None else [i for n in step.names for i in self.named.get(n, [])]
        if await self.tracker.wait(ids, step.status, step.timeout_s):
            return _StepOutcome(True, f"{len(ids)} sale(s) {step.status or 'terminal'}")
        counts = dict(Counter(self.tracker.status(i)[0] for i in ids))
        expected = {step.status or "FINALIZED or CANCELED": len(ids)}
        verdict = ExpectationVerdict(f"wait for {'all sales' if step.names is None else ', '.join(step.names)}", False, expected, counts)
        return _StepOutcome(False, f"not reached: {counts}", [verdict])

    async def _expect(self, step: ExpectStep) -> _StepOutcome:
        deadline = time.monotonic() + step.within_s
        while True:
            verdicts = await judge(step.expect, self.evidence())
            failed = sum(not v.passed for v in verdicts)
            if not failed or time.monotonic() >= deadline:
                return _StepOutcome(not failed, f"{len(verdicts) - failed}/{len(verdicts)} held", verdicts)
            await asyncio.sleep(EXPECT_RETRY_S)

    async def _start_nats(self) -> _StepOutcome:
        url = await asyncio.to_thread(self.system.start_nats)
        began = time.monotonic()
        while not self.client.nc.is_connected:
            if time.monotonic() - began > RECONNECT_TIMEOUT_S:
                return _StepOutcome(False, f"NATS is back at {url} but sagactl did not reconnect in {RECONNECT_TIMEOUT_S:g}s")
            await asyncio.sleep(0.05)
        # The participants reconnect on their own schedule; a submit right now could find no sale service.
        for name in self.system.participants:
            while True:
                try:
                    await self.client.request(name, "ping", {}, timeout=0.5)
                    break
                except SagactlError:
                    if time.monotonic() - began > RECONNECT_TIMEOUT_S:
                        return _StepOutcome(False, f"NATS is back at {url} but {name} did not answer in {RECONNECT_TIMEOUT_S:g}s")
                    await asyncio.sleep(0.05)
        return _StepOutcome(True, f"NATS back at {url}; everyone reconnected after {time.monotonic() - began:.2f}s")

    async def _publish(self, step: PublishStep) -> _StepOutcome:
        if step.copy_of:
            assert step.copy_type is not None
            sale_id = self.named[step.copy_of][0]
            original = next((e.body for e in await read_all(self.urls, name="sagactl-run")
                             if e.field("sale_id") == sale_id and e.event_type == step.copy_type), None)
            if original is None:
                return _StepOutcome(False, f"sale {sale_id} has no {step.copy_type} on the stream to copy")
            subject, data = subject_for(step.copy_type), orjson.dumps(original)
            msg_id = step.msg_id or f"copy-{uuid.uuid4().hex}"
        else:
            assert step.subject is not None and step.body is not None
            subject, data, msg_id = step.subject, step.body, step.msg_id
        ack = await self.client.nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
        if ack.duplicate:
            return _StepOutcome(True, f"the stream dropped it: Nats-Msg-Id {msg_id} already seen (seq {ack.seq})")
        return _StepOutcome(True, f"on {subject}, stream seq {ack.seq}")

    def _sales_summary(self) -> dict[str, dict[str, Any]]:
        rows = {r["id"]: r for r in ((self.report.after.get("sale") or {}).get("sales") or [])}

        def status(sale_id: int) -> tuple[str, str | None]:
            row = rows.get(sale_id)
            if row is not None:
                return row["status"], row.get("reason")
            return self.tracker.status(sale_id)

        summary: dict[str, dict[str, Any]] = {}
        for name, ids in self.named.items():
            if name in self.scenario.group_names:
                summary[name] = {"sale_ids": ids, "statuses": dict(Counter(status(i)[0] for i in ids))}
            else:
                summary[name] = {"sale_id": ids[0], "status": status(ids[0])[0], "reason": status(ids[0])[1]}
        return summary
