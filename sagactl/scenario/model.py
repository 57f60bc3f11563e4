"""The scenario model: what a scenario file says, as typed data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from participants.contract import Sale


@dataclass(frozen=True)
class SubmitStep:
    sale: Sale
    name: str | None = None


@dataclass(frozen=True)
class WaitStep:
    names: tuple[str, ...] | None  # None: every sale submitted so far
    timeout_s: float = 10.0


Step = SubmitStep | WaitStep


@dataclass(frozen=True)
class SaleExpectation:
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class Expectations:
    sales: dict[str, SaleExpectation] = field(default_factory=dict)
    # "participant.table" -> expected rows, matched in order on the columns they name
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    expect: Expectations
    source: str = ""
