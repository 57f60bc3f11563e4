"""The event contract: the one definition of subjects, event types and event bodies.

Both the participant daemons and the `sagactl` CLI import this module; nothing else defines
what travels on the `SAGA` stream. A new participant adds its own event types with
`register_event_type` instead of editing this file.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

STREAM = "SAGA"
SUBJECT_ROOT = "saga"
STREAM_SUBJECTS = [f"{SUBJECT_ROOT}.>"]
DEAD_LETTER_STREAM = "SAGA_DLQ"
DEAD_LETTER_SUBJECT_ROOT = "sagadlq"
# Control requests (state, submit, ping) travel outside `saga.>` so they never enter the history.
CONTROL_ROOT = "sagactl"
# Every running participant replica answers a request on this subject (no queue group), so a
# client on any machine learns which participants exist by collecting replies for a moment.
DISCOVER_SUBJECT = f"{CONTROL_ROOT}.discover"

CREATED_SALE = "CREATED_SALE"
UPDATED_INVENTORY = "UPDATED_INVENTORY"
ROLLBACK_INVENTORY = "ROLLBACK_INVENTORY"
VALIDATED_PAYMENT = "VALIDATED_PAYMENT"
FAILED_PAYMENT = "FAILED_PAYMENT"
FINALIZED_SALE = "FINALIZED_SALE"
CANCELED_SALE = "CANCELED_SALE"
# Payment's answer to a CANCELED_SALE for a sale it had charged: the money is back.
REFUNDED_PAYMENT = "REFUNDED_PAYMENT"

# Event type -> subject. The seed's five names plus the two terminal events of the sale service.
SUBJECTS: dict[str, str] = {
    CREATED_SALE: "saga.sale.created",
    UPDATED_INVENTORY: "saga.inventory.updated",
    ROLLBACK_INVENTORY: "saga.inventory.rolledback",
    VALIDATED_PAYMENT: "saga.payment.validated",
    FAILED_PAYMENT: "saga.payment.failed",
    FINALIZED_SALE: "saga.sale.finalized",
    CANCELED_SALE: "saga.sale.canceled",
    REFUNDED_PAYMENT: "saga.payment.refunded",
}
TERMINAL_TYPES = frozenset({FINALIZED_SALE, CANCELED_SALE})

# A sale's status: PENDING from its submit until a terminal event says how it ended.
STATUS_PENDING = "PENDING"
STATUS_FINALIZED = "FINALIZED"
STATUS_CANCELED = "CANCELED"
SALE_STATUSES = (STATUS_PENDING, STATUS_FINALIZED, STATUS_CANCELED)
TERMINAL_STATUSES = (STATUS_FINALIZED, STATUS_CANCELED)
# Terminal event type -> the status it gives its sale.
STATUS_AFTER = {FINALIZED_SALE: STATUS_FINALIZED, CANCELED_SALE: STATUS_CANCELED}
# Events that undo or end a saga that failed; views colour them as such.
FAILURE_TYPES = frozenset({FAILED_PAYMENT, ROLLBACK_INVENTORY, CANCELED_SALE, REFUNDED_PAYMENT})

REASON_OUT_OF_STOCK = "out of stock"
REASON_UNKNOWN_PRODUCT = "unknown product"
REASON_INSUFFICIENT_BALANCE = "insufficient balance"
REASON_UNKNOWN_USER = "unknown user"
# The sale service closes a sale it never opened (an answer to a forged event) with this reason,
# so inventory and payment undo whatever the forged event moved.
REASON_UNKNOWN_SALE = "unknown sale"
REASON_DEADLINE = "deadline exceeded"


def replay_subject(participant: str) -> str:
    """Where a dead letter is replayed: only the participant that gave up on it consumes it."""
    return f"{SUBJECT_ROOT}.replay.{participant}"

MONEY_PLACES = Decimal("0.01")
MAX_MONEY = Decimal("9999999999.99")


class ContractError(ValueError):
    """An event body or sale request that does not follow the contract."""


class Refused(ContractError):
    """A well-formed event that contradicts what the participant knows of its sale (a conflicting
    copy, a compensation for a sale it never reserved): dead-lettered at once, never applied."""


def register_event_type(event_type: str, subject: str) -> None:
    """Add an event type of a new participant; its subject must live under `saga.`."""
    if not subject.startswith(f"{SUBJECT_ROOT}.") or any(c.isspace() or c in "*>" for c in subject):
        raise ContractError(f"subject {subject!r} must be a concrete subject under '{SUBJECT_ROOT}.'")
    known = SUBJECTS.get(event_type)
    if known is not None and known != subject:
        raise ContractError(f"event type {event_type} is already bound to {known}")
    SUBJECTS[event_type] = subject


def subject_for(event_type: str) -> str:
    try:
        return SUBJECTS[event_type]
    except KeyError:
        raise ContractError(f"unknown event type {event_type!r}") from None


def type_for_subject(subject: str) -> str | None:
    for event_type, known in SUBJECTS.items():
        if known == subject:
            return event_type
    return None


def parse_money(raw: Any) -> Decimal:
    """Exact money: a decimal with at most two places, never a float."""
    if isinstance(raw, float):
        raise ContractError("money must be a decimal string, not a float")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ContractError(f"{raw!r} is not a decimal amount") from None
    if not value.is_finite():
        raise ContractError(f"{raw!r} is not a decimal amount")
    if value < 0:
        raise ContractError(f"amount {raw} is negative")
    if value != value.quantize(MONEY_PLACES):
        raise ContractError(f"amount {raw} has more than two decimal places")
    if value > MAX_MONEY:
        raise ContractError(f"amount {raw} is too large")
    return value.quantize(MONEY_PLACES)


def to_cents(value: Decimal) -> int:
    return int(value * 100)


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(MONEY_PLACES)


def new_event_id() -> str:
    """32 hex digits: the time in milliseconds (48 bits), then 80 random bits.

    Ids made later sort later, so the inbox and outbox indexes (keyed by event id) grow at their
    end instead of at random pages: their cost stays flat as they grow. The random bits come from
    the module's generator (seeded from the OS at import and again in a forked child, so replicas
    never share a sequence): an ``os.urandom`` system call per event cost 5-8 % of a participant.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The time as `datetime.now(timezone.utc).isoformat(timespec="microseconds")` writes it, in a
    third of its time: the date and time of day are formatted once a second (every event emitted
    carries one)."""
    global _second
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    if seconds != _second[0]:
        _second = (seconds, datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micros:06d}+00:00"


class Sale(BaseModel):
    """What a saga is about: the fields every event of it carries."""

    model_config = ConfigDict(frozen=True)

    product_id: int = Field(ge=1)
    user_id: int = Field(ge=1)
    value: Decimal
    quantity: int = Field(ge=1)

    @field_validator("value", mode="before")
    @classmethod
    def _exact_money(cls, raw: Any) -> Decimal:
        return parse_money(raw)

    @field_serializer("value")
    def _money_as_string(self, value: Decimal) -> str:
        return f"{value:.2f}"


class Event(Sale):
    """One event on the `SAGA` stream. Extra fields of new participants' events are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str
    event_id: str = Field(min_length=1, max_length=64)
    sale_id: int = Field(ge=1)
    producer: str
    occurred_at: str
    reason: str | None = None

    @property
    def subject(self) -> str:
        return subject_for(self.type)

    @property
    def sale(self) -> Sale:
        # Its fields were validated with the event's: not validated again (see _trusted).
        return _trusted(Sale, {"product_id": self.product_id, "user_id": self.user_id, "value": self.value,
                               "quantity": self.quantity})

    def to_bytes(self) -> bytes:
        if self.__pydantic_extra__:
            return orjson.dumps(self.model_dump(mode="json", exclude_none=True))
        # The same JSON as model_dump, built by hand: this runs for every event published.
        body = {
            "product_id": self.product_id, "user_id": self.user_id, "value": f"{self.value:.2f}",
            "quantity": self.quantity, "type": self.type, "event_id": self.event_id, "sale_id": self.sale_id,
            "producer": self.producer, "occurred_at": self.occurred_at,
        }
        if self.reason is not None:
            body["reason"] = self.reason
        return orjson.dumps(body)

    def follow(self, event_type: str, producer: str, reason: str | None = None, **extra: Any) -> "Event":
        """The next event of the same saga, caused by this one."""
        if not extra and not self.__pydantic_extra__ and event_type in SUBJECTS:
            # The saga's fields were validated when this event was; the rest are ours.
            return _trusted(Event, {
                **self.__dict__, "type": event_type, "event_id": new_event_id(), "producer": producer,
                "occurred_at": utc_now(), "reason": reason,
            })
        return Event(
            type=event_type,
            event_id=new_event_id(),
            sale_id=self.sale_id,
            product_id=self.product_id,
            user_id=self.user_id,
            value=self.value,
            quantity=self.quantity,
            producer=producer,
            occurred_at=utc_now(),
            reason=reason,
            **extra,
        )


ModelT = TypeVar("ModelT", bound=BaseModel)


def _trusted(model: type[ModelT], fields: dict[str, Any]) -> ModelT:
    """A model from fields already valid (every field, no extra), without validating them
    again: what pydantic's own `model_construct` does, in a quarter of its time (this runs for
    every event a participant emits). tests/test_domain.py checks it against validated models,
    so a pydantic release that changes these attributes fails there."""
    instance = model.__new__(model)
    setattr_ = object.__setattr__  # the models are frozen
    setattr_(instance, "__dict__", fields)
    setattr_(instance, "__pydantic_fields_set__", set(fields))
    setattr_(instance, "__pydantic_extra__", {} if model.model_config.get("extra") == "allow" else None)
    setattr_(instance, "__pydantic_private__", None)
    return instance


def new_event(event_type: str, sale_id: int, sale: Sale, producer: str, reason: str | None = None) -> Event:
    """The first event of a saga about `sale` (validated when it was made)."""
    if event_type not in SUBJECTS:
        raise ContractError(f"unknown event type {event_type!r}")
    if isinstance(sale_id, bool) or not isinstance(sale_id, int) or sale_id < 1:
        raise ContractError(f"sale_id must be a positive integer, not {sale_id!r}")
    return _trusted(Event, {
        "product_id": sale.product_id, "user_id": sale.user_id, "value": sale.value, "quantity": sale.quantity,
        "type": event_type, "event_id": new_event_id(), "sale_id": sale_id, "producer": producer,
        "occurred_at": utc_now(), "reason": reason,
    })


def decode_body(data: bytes) -> dict[str, Any] | None:
    """The JSON object a message carries; None for anything else (malformed, not an object)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def parse_event(data: bytes) -> Event:
    """Decode an event body; raise ContractError with a one-line reason when it is malformed."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ContractError("event body is not a JSON object")
    try:
        event = Event.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ContractError(f"invalid event field {where}: {first['msg']}") from None
    if event.type not in SUBJECTS:
        raise ContractError(f"unknown event type {event.type!r}")
    return event


def parse_sale(product_id: Any, user_id: Any, value: Any, quantity: Any) -> Sale:
    """Validate a sale request (from the CLI, a scenario or a submit request)."""
    try:
        return Sale(product_id=product_id, user_id=user_id, value=value, quantity=quantity)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "sale"
        message = first["msg"].removeprefix("Value error, ")
        raise ContractError(f"{where}: {message}") from None


def control_subject(participant: str, verb: str) -> str:
    """Request/reply subject of a participant's control endpoint (state, ping, submit)."""
    return f"{CONTROL_ROOT}.{participant}.{verb}"
