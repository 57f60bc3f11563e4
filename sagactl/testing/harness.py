"""Test a participant as it runs in production: its own process, a real nats-server, a real database.

`SagaHarness` starts participants as subprocesses (`python -m participants.runtime MODULE:OBJECT`,
exactly what `sagactl up` runs, so crash points can SIGKILL them without killing the test),
publishes events onto the `SAGA` stream, records every event the stream holds (a
`sagactl.streams` reader from the first message, so nothing published before a wait is missed) and waits for
the events a participant emits, with deadlines. Its methods are plain blocking calls: a private
event loop in a thread does the NATS work, so sync and async tests can use it alike.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import orjson
from nats.js.api import PubAck
from pydantic import ValidationError

from participants.contract import (
    DEAD_LETTER_STREAM,
    STREAM,
    Event,
    control_subject,
    new_event,
    parse_sale,
)
from participants.runtime import broker
from participants.runtime.settings import db_url_env, to_env
from sagactl.streams.reader import StreamEvent, StreamReader
from sagactl.system.processes import pid_alive, tail
from sagactl.system.statedir import StateDir
from sagactl.system.references import load
from sagactl.system.supervisor import Supervisor

T = TypeVar("T")
# Short, so an event whose process was killed before its ack comes back within a test's patience.
DEFAULT_ACK_WAIT_S = 2.0


class WaitTimeout(AssertionError):
    """A wait reached its deadline; the message says what was awaited and what was seen."""


@dataclass(frozen=True)
class ObservedEvent:
    """One message of the `SAGA` stream as the harness saw it."""

    seq: int
    subject: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def event(self) -> Event | None:
        """The body as an Event, or None when it does not follow the contract (a poison message)."""
        try:
            return Event.model_validate(self.body)
        except ValidationError:
            return None


@dataclass(frozen=True)
class ObservedDeadLetter:
    """An event a participant gave up on, with the runtime's headers saying who and why."""

    participant: str
    error: str
    subject: str
    data: bytes
    headers: dict[str, str]


class _LoopThread:
    """An asyncio loop in a daemon thread; `run` blocks the caller until a coroutine is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sagactl-testing", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel what is left (nats-py's consumer heartbeat tasks outlive a closed connection), stop."""

        async def cancel_the_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.run(cancel_the_rest(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.loop.close()


class SagaHarness:
    """Participants under test, the events they emit, and their tables; `close()` stops it all."""

    def __init__(self, nats_url: str, root: Path, ack_wait_s: float = DEFAULT_ACK_WAIT_S) -> None:
        self.nats_url = nats_url
        self.supervisor = Supervisor(StateDir(Path(root).resolve()))
        self.supervisor.state.make()
        self.ack_wait_s = ack_wait_s
        self.participants: list[RunningParticipant] = []
        self._seen: list[ObservedEvent] = []
        self._dead: list[ObservedDeadLetter] = []
        self._changed = threading.Condition()
        self._loop = _LoopThread()
        self._loop.run(self._connect(), timeout=30)

    async def _connect(self) -> None:
        self._nc = await broker.connect([self.nats_url], "sagactl-testing", reconnect_forever=True)
        self._js = self._nc.jetstream()
        await broker.ensure_streams(self._js)
        # Both streams from their first message, following (across NATS restarts) until close.
        self._readers = [await StreamReader.open([self.nats_url], name="sagactl-testing", follow=True, stream=stream)
                         for stream in (STREAM, DEAD_LETTER_STREAM)]
        self._following = [asyncio.ensure_future(self._follow(reader, record))
                           for reader, record in zip(self._readers, (self._on_event, self._on_dead))]

    async def _follow(self, reader: StreamReader, record: Callable[[StreamEvent], None]) -> None:
        async for event in reader.read(follow=True):
            with self._changed:
                record(event)
                self._changed.notify_all()

    def _on_event(self, event: StreamEvent) -> None:
        self._seen.append(ObservedEvent(event.seq, event.subject, event.body or {}, event.headers))

    def _on_dead(self, event: StreamEvent) -> None:
        headers = event.headers
        self._dead.append(ObservedDeadLetter(headers.get("Sagactl-Participant", ""), headers.get("Sagactl-Error", ""),
                                             headers.get("Sagactl-Subject", ""), event.data, headers))

    async def _disconnect(self) -> None:
        for task in self._following:
            task.cancel()
        await asyncio.gather(*self._following, return_exceptions=True)
        for reader in self._readers:
            await reader.close()
        await self._nc.close()

    def close(self) -> None:
        """Stop every participant this harness started (by pid) and disconnect."""
        for running in self.participants:
            running.stop()
        try:
            self._loop.run(self._disconnect(), timeout=10)
        except Exception:  # the server may already be gone; nothing is left to flush
            pass
        self._loop.close()

    # -- participants ----------------------------------------------------------------------
    def start(
        self,
        reference: str,
        *,
        replica: int = 1,
        crash_point: str | None = None,
        env: dict[str, str] | None = None,
    ) -> RunningParticipant:
        """Start a participant (`MODULE:OBJECT` or a built-in name) and return once it is ready.

        crash_point: `after_commit`, `after_publish` or `mid_batch`, optionally `:N` (the Nth
        time): the process SIGKILLs itself there (see participants/runtime/crashpoints.py).
        env: extra settings, e.g. `to_env(max_deliver=2)` (participants/runtime/settings.py).
        """
        participant = load(reference)  # also registers its event types in this process
        running = RunningParticipant(self, participant.name, reference, replica)
        running.db_url = os.environ.get(db_url_env(participant.name)) or self.supervisor.state.db_url(participant.name)
        running._spawn(crash_point, env)
        self.participants.append(running)
        return running

    def _child_env(self, crash_point: str | None, env: dict[str, str] | None) -> dict[str, str]:
        # Whatever this test process can import, the participant process can import too.
        paths = [os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p) and not p.startswith((sys.prefix, sys.base_prefix)))]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        settings = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                    **to_env(ack_wait_s=float(self.ack_wait_s), crash_point=crash_point)}
        return {**settings, **(env or {})}

    # -- events ----------------------------------------------------------------------------
    @staticmethod
    def event(
        event_type: str,
        sale_id: int = 1,
        *,
        product_id: int = 1,
        user_id: int = 1,
        value: str = "20.00",
        quantity: int = 2,
        producer: str = "test",
        reason: str | None = None,
        **extra: Any,
    ) -> Event:
        """A new event of the contract with a fresh event id (extra fields are kept in the body)."""
        base = new_event(event_type, sale_id, parse_sale(product_id, user_id, value, quantity), producer, reason)
        return base.model_copy(update=extra) if extra else base

    def publish(self, event: Event, *, msg_id: str | None = None) -> PubAck:
        """Publish onto the stream with Nats-Msg-Id = event id (or msg_id), as a participant would.

        The same msg id twice inside the duplicate window is stored once (PubAck.duplicate).
        """
        return self.publish_raw(event.subject, event.to_bytes(), msg_id=msg_id or event.event_id)

    def publish_again(self, event: Event) -> PubAck:
        """The same event body under a new Nats-Msg-Id: a copy the stream stores, so only the
        consumers' inboxes can make it harmless."""
        return self.publish(event, msg_id=f"{event.event_id}-again-{uuid.uuid4().hex[:8]}")

    def publish_raw(self, subject: str, data: bytes, *, msg_id: str | None = None) -> PubAck:
        """Any bytes on any subject (a poison message, say)."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        return self._loop.run(self._js.publish(subject, data, headers=headers, timeout=10), timeout=15)

    def observed(self) -> list[ObservedEvent]:
        """Every message the stream holds, as seen so far, in stream order."""
        with self._changed:
            return list(self._seen)

    def events(self, event_type: str | None = None, *, sale_id: int | None = None, **fields: Any) -> list[Event]:
        """The events seen so far that match the type, the sale and any other body fields."""
        matches = []
        for observed in self.observed():
            body = observed.body
            if event_type is not None and body.get("type") != event_type:
                continue
            if sale_id is not None and body.get("sale_id") != sale_id:
                continue
            if any(body.get(k) != v for k, v in fields.items()):
                continue
            event = observed.event
            if event is not None:
                matches.append(event)
        return matches

    def wait_for(
        self, event_type: str, *, sale_id: int | None = None, count: int = 1, timeout: float = 30.0, **fields: Any
    ) -> list[Event]:
        """Wait until at least `count` matching events are on the stream; return them all."""
        self._wait(lambda: len(self.events(event_type, sale_id=sale_id, **fields)) >= count, timeout,
                   lambda: f"{count} x {event_type}" + (f" of sale {sale_id}" if sale_id else "") + (f" with {fields}" if fields else ""))
        return self.events(event_type, sale_id=sale_id, **fields)

    def dead_letters(self) -> list[ObservedDeadLetter]:
        with self._changed:
            return list(self._dead)

    def wait_for_dead_letter(self, count: int = 1, timeout: float = 30.0) -> list[ObservedDeadLetter]:
        self._wait(lambda: len(self._dead) >= count, timeout, lambda: f"{count} dead letter(s)")
        return self.dead_letters()

    def _wait(self, ready: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        with self._changed:
            if self._changed.wait_for(ready, timeout):
                return
        seen = ", ".join(f"#{o.seq} {o.body.get('type', o.subject)} sale {o.body.get('sale_id')}" for o in self.observed())
        raise WaitTimeout(f"no {what()} within {timeout:g}s; the stream holds: {seen or 'nothing'}")

    # -- requests --------------------------------------------------------------------------
    def request(self, participant: str, verb: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """A control request (`sagactl.<participant>.<verb>`); returns the reply, errors included."""

        async def ask() -> dict[str, Any]:
            reply = await self._nc.request(control_subject(participant, verb), orjson.dumps(body or {}), timeout=timeout)
            return dict(orjson.loads(reply.data))

        return self._loop.run(ask(), timeout=timeout + 5)

    def submit(self, product_id: int = 1, user_id: int = 1, value: str = "20.00", quantity: int = 2) -> int:
        """Submit a sale through a running sale participant, as `sagactl submit` does; its id."""
        reply = self.request("sale", "submit", {"product_id": product_id, "user_id": user_id, "value": value, "quantity": quantity})
        if "error" in reply:
            raise AssertionError(f"sale refused the submit: {reply['error']}")
        return int(reply["sale_id"])


@dataclass
class RunningParticipant:
    """One participant process started by a SagaHarness."""

    harness: SagaHarness
    name: str
    reference: str
    replica: int = 1
    db_url: str = ""
    process: Any = None
    log_offset: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.harness.supervisor.state.log_file(self.name, self.replica)

    def _spawn(self, crash_point: str | None, env: dict[str, str] | None) -> None:
        supervisor = self.harness.supervisor
        self.extra_env = dict(env or {})
        child_env = self.harness._child_env(crash_point, self.extra_env)
        self.log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.process = supervisor.start_participant(self.name, self.reference, self.replica, [self.harness.nats_url], child_env)
        supervisor.wait_ready([(self.name, self.replica, self.process, self.log_offset)])

    # -- its state ---------------------------------------------------------------------------
    def tables(self, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
        """Its tables as `sagactl state` shows them (asked over NATS, so it must be running)."""
        reply = self.harness.request(self.name, "state", timeout=timeout)
        return dict(reply["tables"])

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables()[table]

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines of this run (since the last start or restart)."""
        try:
            with open(self.log_file, "rb") as log:
                log.seek(self.log_offset)
                lines = log.read().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a traceback or other text the process printed
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_logged(self, what: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Wait for a log record such as `handled` or `duplicate` (matching the given fields)."""
        found = _poll(lambda: next((r for r in self.log_records()
                                    if r.get("what") == what and all(r.get(k) == v for k, v in fields.items())), None), timeout)
        if found is None:
            raise WaitTimeout(f"{self.name} logged no {what!r} {fields or ''} within {timeout:g}s; last lines:\n{tail(self.log_file, 8)}")
        return found

    # -- its process -------------------------------------------------------------------------
    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself (e.g. at a crash point); its return code."""
        try:
            return int(self.process.wait(timeout=timeout))
        except Exception:
            raise WaitTimeout(f"{self.name} (pid {self.pid}) still runs after {timeout:g}s; last lines:\n{tail(self.log_file, 8)}") from None

    def wait_crash(self, timeout: float = 30.0) -> None:
        """Wait until the process killed itself at its crash point (SIGKILL)."""
        code = self.wait_exit(timeout)
        if code != -signal.SIGKILL:
            raise AssertionError(f"{self.name} exited with {code}, not at its crash point; last lines:\n{tail(self.log_file, 8)}")

    def stop(self) -> None:
        """SIGTERM, wait for a clean stop (SIGKILL after a few seconds)."""
        self.harness.supervisor.stop_participant(self.name, self.replica)
        if self.process is not None:
            self.process.poll()

    def kill(self) -> None:
        self.harness.supervisor.stop_participant(self.name, self.replica, kill=True)
        self.process.poll()

    def restart(self, *, crash_point: str | None = None, env: dict[str, str] | None = None) -> RunningParticipant:
        """Stop it if it still runs, start it again on the same database; ready when it returns.

        The crash point is not carried over; the extra env is, unless a new one is given."""
        if pid_alive(self.pid):
            self.stop()
        self._spawn(crash_point, self.extra_env if env is None else env)
        return self


def _poll(probe: Callable[[], T | None], timeout: float, every: float = 0.02) -> T | None:
    """Call `probe` until it returns something other than None or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(every)
