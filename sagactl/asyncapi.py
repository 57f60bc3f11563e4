"""The event contract as documents other tools read: JSON Schema and AsyncAPI 3.0.

Everything comes from the code that runs: subjects from `participants.contract.SUBJECTS` (the
built-in types and every type a loaded participant registered), payloads from the `Event`
model, consumers from each participant's handlers, producers from `participants.flow` (the
built-in choreography) and, for a type a user's participant registered, from its subject: a type
under `saga.<name>.` is produced by participant `<name>` (the convention every built-in subject
follows too). Nothing here is written by hand per event type, so the documents cannot drift.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from participants import flow
from participants.contract import SUBJECT_ROOT, SUBJECTS, TERMINAL_TYPES, Event

if TYPE_CHECKING:
    from participants.runtime.participant import Participant

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# What the runtime puts in every event message's NATS headers.
HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "The event id again: the stream drops a second copy with the same id (its duplicate window).",
        },
    },
}


@dataclass(frozen=True)
class EventType:
    """One event type of the contract: where it travels, who publishes it, who reacts to it."""

    name: str
    subject: str
    producer: str | None
    consumers: tuple[str, ...]

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL_TYPES


def event_types(participants: list[Participant]) -> list[EventType]:
    """Every registered event type (import the participants first: that registers theirs)."""
    names = {p.name for p in participants}
    result = []
    for name, subject in SUBJECTS.items():
        producer = flow.PRODUCERS.get(name)
        if producer is None:
            owner = subject.removeprefix(f"{SUBJECT_ROOT}.").split(".")[0]
            producer = owner if owner in names else None
        consumers = tuple(sorted(p.name for p in participants if name in p.handlers))
        result.append(EventType(name, subject, producer, consumers))
    return result


def payload_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type's body as published (draft-07 compatible keywords only)."""
    schema = copy.deepcopy(_EVENT_SCHEMA)
    schema["title"] = event_type
    schema["properties"]["type"] = {"type": "string", "const": event_type, "description": "The event type."}
    return schema


def json_schema_document(types: list[EventType]) -> dict[str, Any]:
    """One JSON Schema (2020-12) that accepts exactly the bodies of the known event types."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "sagactl event",
        "description": "A body on the SAGA stream: one of the event types below, chosen by its `type`.",
        "oneOf": [{"$ref": f"#/$defs/{t.name}"} for t in types],
        "$defs": {t.name: payload_schema(t.name) for t in types},
    }


def asyncapi_document(types: list[EventType], version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the saga: channels are subjects, messages event types.

    The document describes the whole choreography, so its operations are every participant's:
    `<participant>.sends.<TYPE>` and `<participant>.receives.<TYPE>`, each tagged with its
    participant, which is what a participant in another language needs to take part.
    """
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for t in types:
        channel_id = t.subject
        channels[channel_id] = {
            "address": t.subject,
            "title": t.name,
            "messages": {t.name: {"$ref": f"#/components/messages/{t.name}"}},
        }
        messages[t.name] = {
            "name": t.name,
            "title": t.name,
            "summary": _summary(t),
            "contentType": "application/json",
            "headers": HEADERS_SCHEMA,
            "payload": {"$ref": f"#/components/schemas/{t.name}"},
        }
        message_ref = {"$ref": f"#/channels/{_pointer(channel_id)}/messages/{t.name}"}
        channel_ref = {"$ref": f"#/channels/{_pointer(channel_id)}"}
        if t.producer:
            operations[f"{t.producer}.sends.{t.name}"] = {
                "action": "send", "channel": channel_ref, "messages": [message_ref],
                "summary": f"{t.producer} publishes {t.name} on {t.subject}", "tags": [{"name": t.producer}],
            }
        for consumer in t.consumers:
            operations[f"{consumer}.receives.{t.name}"] = {
                "action": "receive", "channel": channel_ref, "messages": [message_ref],
                "summary": f"{consumer} reacts to {t.name}", "tags": [{"name": consumer}],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "sagactl saga events",
            "version": version,
            "description": ("The events of the sale saga on the JetStream stream SAGA (subjects saga.>). "
                            "Each participant consumes its types through its own durable consumer, records the "
                            "event id it handled (so a redelivered copy changes nothing) and publishes what follows "
                            "with Nats-Msg-Id set to the new event's id."),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {t.name: payload_schema(t.name) for t in types}},
    }


def _summary(t: EventType) -> str:
    producer = t.producer or "a participant not loaded here"
    consumers = ", ".join(t.consumers) or ("nobody: it ends the saga" if t.terminal else "nobody yet")
    return f"Published by {producer}; consumed by {consumers}."


def _pointer(key: str) -> str:
    """A JSON pointer token (RFC 6901): `~` and `/` escaped; subjects have neither, but be exact."""
    return key.replace("~", "~0").replace("/", "~1")


def _event_schema() -> dict[str, Any]:
    """The Event model's schema, told exactly as the body is on the wire (see Event.to_bytes)."""
    schema = Event.model_json_schema(mode="serialization")
    properties = schema["properties"]
    for prop in properties.values():
        prop.pop("title", None)
    properties["value"] = {"type": "string", "pattern": r"^[0-9]{1,10}\.[0-9]{2}$",
                           "description": "Money, a decimal string with two places (never a JSON number)."}
    properties["reason"] = {"type": "string", "description": "Why a step refused the sale; absent on the success path."}
    properties["occurred_at"] = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601."}
    properties["event_id"]["description"] = "Unique per event; consumers deduplicate on it."
    properties["sale_id"]["description"] = "The saga: every event of one sale carries its id."
    properties["producer"]["description"] = "The participant that published the event."
    schema["description"] = "Fields beyond these are the producing participant's own, kept by every consumer."
    schema.pop("title", None)
    return schema


_EVENT_SCHEMA = _event_schema()
