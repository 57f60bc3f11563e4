"""The saga seen from outside: submit sales, learn how they end, ask participants for state.

Everything goes through NATS, as a remote user's would: submit and state are requests answered
by the participants, and the end of a saga is its terminal event on the stream. The terminal
watcher here is the one place a sale's end is learned: `sagactl submit --wait`, scenarios
(scenario/tracker.py) and the bench (bench/load.py) all listen on it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from participants.contract import (
    DISCOVER_SUBJECT,
    STATUS_AFTER,
    SUBJECTS,
    TERMINAL_STATUSES,
    ContractError,
    Sale,
    control_subject,
    decode_body,
    register_event_type,
    subject_for,
)
from participants.runtime import broker
from participants.runtime.loader import BUILT_IN
from sagactl.errors import SagactlError, TimedOut, Unavailable

REQUEST_TIMEOUT_S = 5.0
# How long `participants()` collects answers: every replica answers within milliseconds unless it
# is busy with a batch, and nobody can say how many will answer.
DISCOVER_WINDOW_S = 0.5
# Once every expected participant answered, others (started by hand elsewhere) get this much longer.
DISCOVER_GRACE_S = 0.1
# Lookups in flight at once when rechecking many awaited sales (after a reconnect, say), and how
# long each waits: a recheck runs inside a scenario's wait and must not outlast it.
RECHECK_CONCURRENCY = 16
RECHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SaleOutcome:
    """How a sale ended, and when this process learned it."""

    sale_id: int
    status: str  # STATUS_FINALIZED or STATUS_CANCELED
    reason: str | None = None
    seen_at: float = field(default=0.0, compare=False)  # time.perf_counter() on arrival


def outcome_of(body: dict[str, Any] | None) -> SaleOutcome | None:
    """The outcome a terminal event announces; None for any other body (`sagactl check` reports malformed ones)."""
    if body is None or not isinstance(body.get("sale_id"), int):
        return None
    status = STATUS_AFTER.get(body.get("type"))  # type: ignore[arg-type]
    return None if status is None else SaleOutcome(body["sale_id"], status, body.get("reason"), time.perf_counter())


class SagaClient:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._waiting: dict[int, asyncio.Future[SaleOutcome]] = {}
        self._outcomes: dict[int, SaleOutcome] = {}
        # Sales submitted or waited for since `watch_terminal`, whose end is not known yet: the
        # ones looked up at the sale service when their terminal event may have been missed.
        self._awaited: set[int] = set()
        self._listeners: list[Callable[[SaleOutcome], None]] = []
        self._subscriptions: list[Any] = []

    @classmethod
    async def connect(cls, urls: list[str], name: str = "sagactl", reconnect_forever: bool = False) -> "SagaClient":
        client: SagaClient

        async def on_event(what: str) -> None:
            if what == "reconnected":
                # Terminal events published while we were away are not replayed to a plain
                # subscription: ask the sale service about every sale still awaited.
                asyncio.ensure_future(client.recheck())

        try:
            nc = await broker.connect(urls, name, reconnect_forever=reconnect_forever, on_event=on_event)
        except broker.BrokerUnavailable as exc:
            raise Unavailable(str(exc)) from None
        client = cls(nc)
        return client

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()

    async def request(self, participant: str, verb: str, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        try:
            reply = await self.nc.request(control_subject(participant, verb), orjson.dumps(body), timeout=timeout)
        except (NoRespondersError, NatsTimeout, asyncio.TimeoutError):
            raise Unavailable(f"participant {participant} did not answer {verb} (is it running? `sagactl status`)") from None
        answer = orjson.loads(reply.data)
        if "error" in answer:
            raise SagactlError(f"{participant} refused {verb}: {answer['error']}")
        return answer

    # -- sales ---------------------------------------------------------------------------
    async def submit(self, sale: Sale, request_id: str | None = None, deadline: float | None = None) -> int:
        """Submit a sale through the sale service; return its id (the saga has started).

        Give a `request_id` to make retries safe: the same id submitted again returns the first
        sale instead of starting another (the reply of the first may have been lost). A
        `deadline` (seconds) cancels the sale if it is still PENDING then."""
        body = sale.model_dump(mode="json")
        if request_id is not None:
            body["request_id"] = request_id
        if deadline is not None:
            body["deadline"] = deadline
        answer = await self.request("sale", "submit", body)
        return self._submitted([int(answer["sale_id"])])[0]

    async def submit_many(self, sales: list[Sale], timeout: float = REQUEST_TIMEOUT_S) -> list[int]:
        """Submit several sales in one request (one transaction at the sale service); their ids in order."""
        body = {"sales": [sale.model_dump(mode="json") for sale in sales]}
        answer = await self.request("sale", "submit_many", body, timeout=timeout)
        return self._submitted([int(item["sale_id"]) for item in answer["sales"]])

    def _submitted(self, sale_ids: list[int]) -> list[int]:
        if self._subscriptions:
            self._awaited.update(i for i in sale_ids if i not in self._outcomes)
        return sale_ids

    # -- the terminal watcher: the one place a sale's end is learned -------------------------
    async def watch_terminal(self, on_outcome: Callable[[SaleOutcome], None] | None = None) -> None:
        """Start listening for terminal events; call before submitting sales to wait for.

        `on_outcome` is called once for each sale's end as it becomes known (an event, or a lookup
        after a reconnect or at a deadline), with the time it arrived."""
        if on_outcome is not None:
            self._listeners.append(on_outcome)
        if self._subscriptions:
            return
        for event_type in STATUS_AFTER:
            self._subscriptions.append(await self.nc.subscribe(subject_for(event_type), cb=self._on_terminal))
        await self.nc.flush()

    def stop_listening(self, on_outcome: Callable[[SaleOutcome], None]) -> None:
        if on_outcome in self._listeners:
            self._listeners.remove(on_outcome)

    async def _on_terminal(self, msg: Msg) -> None:
        outcome = outcome_of(decode_body(msg.data))
        if outcome is not None:
            self._settle(outcome)

    def _settle(self, outcome: SaleOutcome) -> None:
        if outcome.sale_id in self._outcomes:
            return  # a copy of its terminal event: a sale ends once
        self._outcomes[outcome.sale_id] = outcome
        self._awaited.discard(outcome.sale_id)
        future = self._waiting.pop(outcome.sale_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)
        for listener in list(self._listeners):
            listener(outcome)

    async def lookup(self, sale_id: int, timeout: float = REQUEST_TIMEOUT_S) -> SaleOutcome | None:
        """The sale's terminal outcome from the sale service, or None while it is PENDING."""
        answer = await self.request("sale", "get", {"sale_id": sale_id}, timeout=timeout)
        if not answer.get("found"):
            raise SagactlError(f"sale {sale_id} does not exist")
        if answer["status"] not in TERMINAL_STATUSES:
            return None
        return SaleOutcome(sale_id, answer["status"], answer.get("reason"), time.perf_counter())

    async def recheck(self, sale_ids: Iterable[int] | None = None) -> None:
        """Ask the sale service how the awaited sales (or these) ended: the fallback for terminal
        events a plain subscription missed (published while we were disconnected)."""
        gate = asyncio.Semaphore(RECHECK_CONCURRENCY)
        unanswered = False

        async def one(sale_id: int) -> None:
            nonlocal unanswered
            async with gate:
                if unanswered:
                    return  # the sale service is away: the others would only wait out their timeouts too
                try:
                    outcome = await self.lookup(sale_id, timeout=RECHECK_TIMEOUT_S)
                except Unavailable:
                    unanswered = True
                    return
                except SagactlError:
                    return
            if outcome is not None:
                self._settle(outcome)

        wanted = self._awaited if sale_ids is None else set(sale_ids)
        await asyncio.gather(*(one(i) for i in wanted.copy() if i not in self._outcomes))

    async def wait_terminal(self, sale_id: int, timeout: float) -> SaleOutcome:
        """Wait for FINALIZED or CANCELED; `watch_terminal` must have been called before the submit."""
        if sale_id in self._outcomes:
            return self._outcomes[sale_id]
        self._awaited.add(sale_id)
        future = self._waiting.get(sale_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[sale_id] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            outcome = await self.lookup(sale_id)  # maybe we missed its event while disconnected
            if outcome is not None:
                self._settle(outcome)
                return self._outcomes[sale_id]
            raise TimedOut(f"sale {sale_id} still PENDING after {timeout:g}s") from None

    def outcome(self, sale_id: int) -> SaleOutcome | None:
        return self._outcomes.get(sale_id)

    # -- discovery -------------------------------------------------------------------------
    async def participants(self, window: float = DISCOVER_WINDOW_S, expected: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every running participant replica, as each describes itself, from any machine.

        Answers are collected for `window` seconds, or until every `expected` participant has
        answered and DISCOVER_GRACE_S more have passed. Event types a participant registered (a
        fourth participant's own) are learned too, so this process can name and parse events from
        modules it never imported.
        """
        answers: list[dict[str, Any]] = []
        waiting_for = set(expected)
        all_expected = asyncio.Event()

        async def collect(msg: Msg) -> None:
            try:
                answer = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                return
            if isinstance(answer, dict) and isinstance(answer.get("participant"), str):
                answers.append(answer)
                waiting_for.discard(answer["participant"])
                if not waiting_for:
                    all_expected.set()

        inbox = self.nc.new_inbox()
        subscription = await self.nc.subscribe(inbox, cb=collect)
        started = asyncio.get_running_loop().time()
        try:
            await self.nc.publish(DISCOVER_SUBJECT, b"{}", reply=inbox)
            # A collection window, not a synchronisation: nobody can say how many will answer.
            try:
                await asyncio.wait_for(all_expected.wait(), window if waiting_for else 0)
            except asyncio.TimeoutError:
                pass
            remaining = window - (asyncio.get_running_loop().time() - started)
            await asyncio.sleep(min(DISCOVER_GRACE_S, remaining) if all_expected.is_set() else max(remaining, 0))
        finally:
            await subscription.unsubscribe()
        for answer in answers:
            learn_event_types(answer.get("event_types") or {})
        return sorted(answers, key=lambda a: (participant_order(a["participant"]), a.get("replica", 1)))

    async def participant_names(self, expected: list[str] | None = None, window: float = DISCOVER_WINDOW_S) -> list[str]:
        """The participants to show: those that answered, plus those expected (the built-ins and
        whatever this state dir started), so one that is down still shows as not answering."""
        wanted = list(expected if expected is not None else BUILT_IN)
        found = {a["participant"] for a in await self.participants(window, expected=wanted)}
        return sorted(found | set(wanted), key=participant_order)

    # -- state ---------------------------------------------------------------------------
    async def state(self, participants: list[str], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, dict[str, Any] | None]:
        """Each participant's tables as it reports them; None for one that did not answer."""

        async def one(name: str) -> dict[str, Any] | None:
            try:
                return (await self.request(name, "state", {}, timeout=timeout))["tables"]
            except Unavailable:
                return None

        answers = await asyncio.gather(*(one(name) for name in participants))
        return dict(zip(participants, answers))


def participant_order(name: str) -> tuple[int, str]:
    """The built-ins first, in the saga's order (sale, inventory, payment), then the rest by name."""
    built_in = list(BUILT_IN)
    return (built_in.index(name), "") if name in built_in else (len(built_in), name)


def learn_event_types(event_types: dict[str, str]) -> None:
    """Register event types another process declared; a conflicting one is ignored, not fatal."""
    for event_type, subject in event_types.items():
        if event_type in SUBJECTS:
            continue
        try:
            register_event_type(str(event_type), str(subject))
        except ContractError:
            continue
