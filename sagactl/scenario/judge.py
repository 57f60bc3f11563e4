"""Judge an `expect` block against what the system shows: one verdict per expectation.

Sales and tables are read from the participants (their state requests), event sequences from
the SAGA stream, dead letters from the dead-letter stream, invariants from `sagactl check`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import nats.errors

from participants.contract import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT_ROOT
from sagactl.client import SagaClient
from sagactl.errors import SagactlError
from sagactl.scenario.model import (
    Expectations,
    SaleExpectation,
    SaleRef,
    TableRows,
    TableValues,
)
from sagactl.streams.reader import StreamEvent, read_all

# A source that cannot be read (NATS down after a failed step) makes its expectations fail.
UNREADABLE = (SagactlError, nats.errors.Error, asyncio.TimeoutError, OSError)


@dataclass
class ExpectationVerdict:
    what: str
    passed: bool
    expected: Any
    actual: Any
    line: int = 0  # the expectation's line in the scenario file (0: none, e.g. a step's own verdict)


@dataclass
class Evidence:
    """What one `expect` block is judged against; each source is read at most once."""

    client: SagaClient
    urls: list[str]
    participants: list[str]
    named: dict[str, list[int]]
    groups: set[str] = field(default_factory=set)
    state: dict[str, Any] | None = None
    _history: list[StreamEvent] | None = field(default=None, repr=False)

    async def tables(self) -> dict[str, Any]:
        if self.state is None:
            self.state = await self.client.state(self.participants)
        return self.state

    async def history(self) -> list[StreamEvent]:
        if self._history is None:
            self._history = await read_all(self.urls, name="sagactl-run")
        return self._history

    def sale_ids(self, ref: SaleRef) -> list[int]:
        return [ref] if isinstance(ref, int) else self.named.get(ref, [])


async def judge(expect: Expectations, evidence: Evidence, prefix: str = "") -> list[ExpectationVerdict]:
    verdicts: list[ExpectationVerdict] = []
    if expect.sales or expect.tables:
        state = await evidence.tables()
        sale_rows = {row["id"]: row for row in ((state.get("sale") or {}).get("sales") or [])}
        for ref, wanted in expect.sales.items():
            if state.get("sale") is None:
                verdicts.append(ExpectationVerdict(f"sale {ref}", False, wanted.counts or wanted.status, "the sale service did not answer"))
                continue
            verdicts.append(_at(expect, "sales", ref,
                                _sale_verdict(ref, wanted, evidence.sale_ids(ref), sale_rows, ref in evidence.groups)))
        for key, table in expect.tables.items():
            verdicts.append(_at(expect, "tables", key, _table_verdict(key, table, state)))
    if expect.events:
        try:
            history = await evidence.history()
        except UNREADABLE as exc:
            history = None
            verdicts.extend(ExpectationVerdict(f"events of {ref}", False, list(types), _unreadable("the stream", exc))
                            for ref, types in expect.events.items())
        for ref, types in expect.events.items() if history is not None else ():
            verdicts.append(_at(expect, "events", ref, _events_verdict(ref, types, evidence.sale_ids(ref), history)))
    if expect.dead_letters:
        try:
            verdicts.extend(_at(expect, "dead_letters", v.what.removeprefix("dead letters of "), v)
                            for v in await _dead_letter_verdicts(expect.dead_letters, evidence.client))
        except UNREADABLE as exc:
            verdicts.extend(ExpectationVerdict(f"dead letters of {name}", False, count, _unreadable("the dead-letter stream", exc))
                            for name, count in expect.dead_letters.items())
    if expect.invariants:
        try:
            verdicts.append(_at(expect, "invariants", "", await _invariants_verdict(evidence.client)))
        except UNREADABLE as exc:
            verdicts.append(ExpectationVerdict("invariants (sagactl check)", False, "no violations", _unreadable("the system", exc)))
    for verdict in verdicts:
        verdict.what = prefix + verdict.what
        verdict.line = verdict.line or expect.line  # a source that could not be read: the block's line
    return verdicts


def _at(expect: Expectations, section: str, key: Any, verdict: ExpectationVerdict) -> ExpectationVerdict:
    verdict.line = expect.lines.get((section, str(key)), expect.line)
    return verdict


def _unreadable(what: str, exc: BaseException) -> str:
    return f"could not read {what}: {exc if isinstance(exc, SagactlError) else type(exc).__name__}"


def _status_of(row: dict[str, Any] | None, with_reason: bool) -> str:
    if row is None:
        return "MISSING"
    return f"{row['status']}: {row['reason']}" if with_reason and row.get("reason") else str(row["status"])


def _sale_verdict(ref: SaleRef, wanted: SaleExpectation, ids: list[int], rows: dict[int, Any], group: bool) -> ExpectationVerdict:
    found = [rows.get(i) for i in ids]
    if not ids:
        return ExpectationVerdict(f"sale {ref}", False, wanted.counts or wanted.status, "no sale was submitted under this name")
    if not group:
        row = found[0]
        actual = {"status": row["status"], "reason": row.get("reason")} if row else "no such sale"
        expected = {"status": wanted.status, "reason": wanted.reason} if wanted.reason else {"status": wanted.status}
        passed = row is not None and row["status"] == wanted.status and (wanted.reason is None or row.get("reason") == wanted.reason)
        return ExpectationVerdict(f"sale {ref}" if isinstance(ref, int) else f"sale {ref} (id {ids[0]})", passed, expected, actual)
    what = f"sales {ref} ({len(ids)})"
    if wanted.counts is not None:
        counts = dict(Counter(_status_of(row, False) for row in found))
        expected_counts = {k: v for k, v in wanted.counts.items() if v}
        return ExpectationVerdict(what, counts == expected_counts, expected_counts, counts)
    key = f"{wanted.status}: {wanted.reason}" if wanted.reason else str(wanted.status)
    counts = dict(Counter(_status_of(row, wanted.reason is not None) for row in found))
    return ExpectationVerdict(what, counts == {key: len(ids)}, {key: len(ids)}, counts)


def _table_verdict(key: str, table: TableRows | TableValues, state: dict[str, Any]) -> ExpectationVerdict:
    participant, _, name = key.partition(".")
    tables = state.get(participant)
    rows = None if tables is None else tables.get(name)
    expected: Any = list(table.rows) if isinstance(table, TableRows) else _values_expected(table)
    if rows is None:
        why = f"participant {participant} did not answer" if tables is None else f"{participant} has no table {name}"
        return ExpectationVerdict(f"table {key}", False, expected, why)
    if isinstance(table, TableRows):
        shown = [{k: r.get(k) for k in (table.rows[i] if i < len(table.rows) else r)} for i, r in enumerate(rows)]
        passed = len(table.rows) == len(rows) and all(_matches(want, row) for want, row in zip(table.rows, rows))
        return ExpectationVerdict(f"table {key}", passed, expected, shown)
    matched = [row for row in rows if _matches(table.where, row)]
    differing = [row for row in matched if not _matches(table.values, row)]
    passed = not differing and (len(matched) == table.count if table.count is not None else bool(matched))
    actual: dict[str, Any] = {"count": len(matched)}
    if differing:
        actual["differing"] = [{k: row.get(k) for k in {**table.where, **table.values}} for row in differing[:5]]
    return ExpectationVerdict(f"table {key}", passed, expected, actual)


def _values_expected(table: TableValues) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    if table.where:
        expected["where"] = table.where
    if table.values:
        expected["values"] = table.values
    expected["count"] = table.count if table.count is not None else ">= 1"
    return expected


def _matches(wanted: dict[str, Any], row: dict[str, Any]) -> bool:
    return all(_same(value, row.get(column)) for column, value in wanted.items())


def _same(expected: Any, actual: Any) -> bool:
    if expected == actual:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        return False
    try:  # money: "80.00" == "80", 8 == "8"
        return Decimal(str(expected)) == Decimal(str(actual))
    except (InvalidOperation, ValueError):
        return str(expected) == str(actual)


def _events_verdict(ref: SaleRef, types: tuple[str, ...], ids: list[int], history: list[StreamEvent]) -> ExpectationVerdict:
    sequences: dict[int, list[str]] = {i: [] for i in ids}
    for event in history:
        if event.field("sale_id") in sequences:
            sequences[event.field("sale_id")].append(str(event.event_type))
    wrong = {i: seq for i, seq in sequences.items() if tuple(seq) != types}
    what = f"events of {ref}" + (f" ({len(ids)} sales)" if len(ids) > 1 else "")
    if len(ids) == 1:
        return ExpectationVerdict(what, not wrong, list(types), sequences[ids[0]])
    actual = "all match" if not wrong else {f"sale {i}": seq for i, seq in list(wrong.items())[:5]}
    return ExpectationVerdict(what, not wrong, list(types), actual)


async def _dead_letter_verdicts(wanted: dict[str, int], client: SagaClient) -> list[ExpectationVerdict]:
    info = await client.nc.jetstream().stream_info(DEAD_LETTER_STREAM, subjects_filter=f"{DEAD_LETTER_SUBJECT_ROOT}.>")
    counts = info.state.subjects or {}
    return [ExpectationVerdict(f"dead letters of {name}", counts.get(f"{DEAD_LETTER_SUBJECT_ROOT}.{name}", 0) == count, count,
                    counts.get(f"{DEAD_LETTER_SUBJECT_ROOT}.{name}", 0)) for name, count in wanted.items()]


async def _invariants_verdict(client: SagaClient) -> ExpectationVerdict:
    from sagactl.check import run_checks

    what, expected = "invariants (sagactl check)", "no violations"
    result = await run_checks(client)
    if result.passed:
        return ExpectationVerdict(what, True, expected, "no violations")
    return ExpectationVerdict(what, False, expected, result.as_json().get("violations", [str(v) for v in result.violations]))
