"""The scenario model: what a scenario file says, as typed data (no YAML, no NATS here).

`loader.py` builds it from a file and checks it; `runner.py` plays it. Every step keeps the line
it came from so progress and verdicts can point back into the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from participants.contract import Sale

# The sale statuses a scenario names (`status: CANCELED`) are the contract's: SALE_STATUSES.
BUILT_IN_PARTICIPANTS = ("sale", "inventory", "payment")

SaleRef = str | int  # a name given with `as:`, or a sale id


# -- setup and participants -------------------------------------------------------------
@dataclass(frozen=True)
class UserSetup:
    balance: Decimal
    name: str | None = None


@dataclass(frozen=True)
class Setup:
    """Initial stock and users, sent as the inventory and payment `setup` requests."""

    products: dict[int, int] = field(default_factory=dict)
    users: dict[int, UserSetup] = field(default_factory=dict)
    deadline_s: float | None = None  # every sale's default deadline (`up --sale-deadline`)


@dataclass(frozen=True)
class Crash:
    point: str  # a name from participants.runtime.crashpoints.CRASH_POINTS
    nth: int = 1  # crash the nth time the point is reached

    @property
    def spec(self) -> str:
        return f"{self.point}:{self.nth}"


@dataclass(frozen=True)
class ParticipantSettings:
    replicas: int = 1
    fail_rate: float = 0.0  # fraction of events failing once with a transient error
    delay_ms: float = 0.0  # extra handling time per event
    crash: Crash | None = None  # armed in the participant's first process only
    module: str | None = None  # MODULE:OBJECT to run under this name instead of the built-in
    ack_wait_s: float | None = None  # seconds before an unacked event is delivered again (SAGACTL_ACK_WAIT)


# -- expectations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SaleExpectation:
    """One sale's (or every sale of a group's) status and reason, or a group's count per status."""

    status: str | None = None
    reason: str | None = None
    counts: dict[str, int] | None = None


@dataclass(frozen=True)
class TableRows:
    """Exactly these rows, in order, compared on the columns each names."""

    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class TableValues:
    """The rows matching `where` have these column `values`; optionally exactly `count` match."""

    where: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    count: int | None = None


@dataclass(frozen=True)
class Expectations:
    sales: dict[SaleRef, SaleExpectation] = field(default_factory=dict)
    tables: dict[str, TableRows | TableValues] = field(default_factory=dict)  # "participant.table"
    events: dict[SaleRef, tuple[str, ...]] = field(default_factory=dict)  # event types, stream order
    dead_letters: dict[str, int] = field(default_factory=dict)  # participant -> parked events
    invariants: bool = False
    line: int = 0
    # The YAML line of each expectation, by (section, key): a failed verdict points at it.
    lines: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.sales or self.tables or self.events or self.dead_letters or self.invariants)


# -- steps ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StepBase:
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class SubmitStep(StepBase):
    sale: Sale
    name: str | None = None
    repeat: int = 1
    concurrency: int = 1
    group: bool = False  # `repeat` was given: the name refers to a group of sales
    deadline_s: float | None = None  # this sale's deadline, overriding setup's

    def summary(self) -> str:
        what = f"{self.repeat} × " if self.group else ""
        label = f" as {self.name}" if self.name else ""
        deadline = f" deadline {self.deadline_s:g}s" if self.deadline_s else ""
        return (f"submit {what}product {self.sale.product_id} user {self.sale.user_id} "
                f"qty {self.sale.quantity} value {self.sale.value:.2f}{deadline}{label}")


@dataclass(frozen=True, kw_only=True)
class WaitStep(StepBase):
    names: tuple[str, ...] | None  # None: every sale submitted so far
    status: str | None = None  # None: any terminal status
    timeout_s: float = 10.0

    def summary(self) -> str:
        which = "all sales" if self.names is None else ", ".join(self.names)
        return f"wait for {which} to be {self.status or 'terminal'} (timeout {self.timeout_s:g}s)"


@dataclass(frozen=True, kw_only=True)
class WaitExitStep(StepBase):
    participant: str
    timeout_s: float = 10.0

    def summary(self) -> str:
        return f"wait for {self.participant} to exit (timeout {self.timeout_s:g}s)"


@dataclass(frozen=True, kw_only=True)
class KillStep(StepBase):
    participant: str
    replica: int | None = None  # None: every replica

    def summary(self) -> str:
        return f"kill {self.participant}" + (f" replica {self.replica}" if self.replica else "") + " (SIGKILL)"


@dataclass(frozen=True, kw_only=True)
class PauseStep(StepBase):
    """Freeze every process of a participant (SIGSTOP): it holds its events, answers nothing."""

    participant: str

    def summary(self) -> str:
        return f"pause {self.participant} (SIGSTOP)"


@dataclass(frozen=True, kw_only=True)
class ResumeStep(StepBase):
    participant: str

    def summary(self) -> str:
        return f"resume {self.participant} (SIGCONT)"


@dataclass(frozen=True, kw_only=True)
class RestartStep(StepBase):
    participant: str

    def summary(self) -> str:
        return f"restart {self.participant}"


@dataclass(frozen=True, kw_only=True)
class StartStep(StepBase):
    name: str  # the participant's own name, read from the object
    reference: str  # MODULE:OBJECT

    def summary(self) -> str:
        return f"start participant {self.name} ({self.reference})"


@dataclass(frozen=True, kw_only=True)
class StopNatsStep(StepBase):
    def summary(self) -> str:
        return "stop NATS (SIGKILL)"


@dataclass(frozen=True, kw_only=True)
class StartNatsStep(StepBase):
    def summary(self) -> str:
        return "start NATS on its store"


@dataclass(frozen=True, kw_only=True)
class KillNatsLeaderStep(StepBase):
    def summary(self) -> str:
        return "kill the cluster node leading the SAGA stream (SIGKILL)"


@dataclass(frozen=True, kw_only=True)
class PublishStep(StepBase):
    """A raw body on a subject, or a copy of an event a named sale already has on the stream."""

    subject: str | None = None
    body: bytes | None = None
    copy_of: str | None = None  # a sale name
    copy_type: str | None = None  # which of its events
    msg_id: str | None = None  # Nats-Msg-Id; a copy without one gets a fresh id

    def summary(self) -> str:
        if self.copy_of:
            return f"publish a copy of {self.copy_of}'s {self.copy_type}" + (f" as {self.msg_id}" if self.msg_id else "")
        return f"publish {len(self.body or b'')} bytes on {self.subject}" + (f" as {self.msg_id}" if self.msg_id else "")


@dataclass(frozen=True, kw_only=True)
class SleepStep(StepBase):
    seconds: float

    def summary(self) -> str:
        return f"sleep {self.seconds:g}s"


@dataclass(frozen=True, kw_only=True)
class ExpectStep(StepBase):
    expect: Expectations
    within_s: float = 0.0  # > 0: judge again until all hold or this time is up (eventual consistency)

    def summary(self) -> str:
        return "check expectations" + (f" (within {self.within_s:g}s)" if self.within_s else "")


ScenarioStep = (SubmitStep | WaitStep | WaitExitStep | KillStep | PauseStep | ResumeStep | RestartStep | StartStep | StopNatsStep | StartNatsStep
        | KillNatsLeaderStep | PublishStep | SleepStep | ExpectStep)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[ScenarioStep, ...]
    expect: Expectations
    setup: Setup = field(default_factory=Setup)
    participants: dict[str, ParticipantSettings] = field(default_factory=dict)
    source: str = ""
    cluster: int | None = None  # nodes of an embedded JetStream cluster instead of one server

    @property
    def group_names(self) -> set[str]:
        return {s.name for s in self.steps if isinstance(s, SubmitStep) and s.group and s.name}
