"""OpenTelemetry traces across participants: W3C `traceparent` in the NATS headers of every event.

The submit request starts a saga's trace (a span of the sale service, the child of a
`traceparent` the request carried, if any); each participant's handling of an event is a span
whose parent is the span that emitted the event, read from the message's `traceparent` header;
the events a span emits are published with its own `traceparent`. So one saga is one trace
across every process, compensations included, in event order.

Off unless the standard variables ask for it: `OTEL_TRACES_EXPORTER` (`otlp` or `console`) or
an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
`OTEL_SDK_DISABLED=true` wins. Off, nothing of OpenTelemetry is imported and the runtime's hooks
are one attribute test each. The OTLP protocol is `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or
`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the default) or `grpc`; every other `OTEL_*`
setting (endpoint, headers, sampler, batch delay, resource attributes) is the SDK's own.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from participants.flow import outcome_kind

if TYPE_CHECKING:
    from participants.contract import Event

# Event id -> the `traceparent` to publish that event with; jetstream.publish_all takes it out.
TRACEPARENTS: dict[str, str] = {}


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Tracing:
    """The spans of one participant process; `enabled` False makes every hook a no-op."""

    def __init__(self, participant: str, replica: int = 1) -> None:
        self.participant = participant
        self.enabled = configured()
        if self.enabled:
            self._start(replica)

    def _start(self, replica: int) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        attributes = {"service.instance.id": f"{self.participant}-{replica}"}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = self.participant
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(BatchSpanProcessor(_exporter()))
        self._tracer = self._provider.get_tracer("sagactl.participants.runtime")
        self._propagator = TraceContextTextMapPropagator()
        self._consumer, self._server = SpanKind.CONSUMER, SpanKind.SERVER

    def handled(self, headers: Mapping[str, str] | None, event: Event, outcome: str, emitted: Sequence[Event],
                deliveries: int, seconds: float) -> None:
        """A span for one handled event (ended now, begun `seconds` ago), the parent of what it emitted."""
        attributes: dict[str, Any] = {
            "sagactl.participant": self.participant, "sagactl.event.type": event.type, "sagactl.event.id": event.event_id,
            "sagactl.sale_id": event.sale_id, "sagactl.outcome": outcome, "sagactl.redeliveries": max(deliveries - 1, 0),
            "sagactl.emitted": [e.type for e in emitted], "messaging.system": "nats",
            "messaging.destination.name": event.subject, "messaging.message.id": event.event_id,
        }
        if emitted:
            attributes["sagactl.kind"] = outcome_kind(emitted[0].type, emitted[0].reason)
        self._span(f"{self.participant} handles {event.type}", self._consumer, headers, attributes, emitted, seconds,
                   error=outcome in ("retried", "dead_lettered"))

    def settled(self, headers: Mapping[str, str] | None, data: bytes, action: str, deliveries: int) -> None:
        """A span for an event that was not applied (retried later or dead-lettered), when it can be read."""
        from participants.contract import ContractError, parse_event

        try:
            event = parse_event(data)
        except ContractError:  # poison: no event, no saga to put it in
            return
        self.handled(headers, event, "retried" if action == "retry" else "dead_lettered", [], deliveries, 0.0)

    def requested(self, headers: Mapping[str, str] | None, verb: str, emitted: Sequence[Event], seconds: float) -> None:
        """A span for a control request that emitted events (a submit): it starts their sagas' traces."""
        for event in emitted:  # one trace per saga, also for a submit_many of several
            attributes = {"sagactl.participant": self.participant, "sagactl.request": verb, "sagactl.sale_id": event.sale_id,
                          "sagactl.emitted": [event.type]}
            self._span(f"{self.participant} {verb}", self._server, headers, attributes, [event], seconds)

    def _span(self, name: str, kind: Any, headers: Mapping[str, str] | None, attributes: dict[str, Any],
              emitted: Sequence[Event], seconds: float, error: bool = False) -> None:
        from opentelemetry.trace import Status, StatusCode

        end = time.time_ns()
        parent = self._propagator.extract(carrier=dict(headers or {}))
        span = self._tracer.start_span(name, context=parent, kind=kind, attributes=attributes,
                                       start_time=end - int(seconds * 1e9))
        context = span.get_span_context()
        traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        for event in emitted:
            TRACEPARENTS[event.event_id] = traceparent
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Export what is buffered (at stop: the last spans are not lost)."""
        if self.enabled:
            self._provider.shutdown()


def _exporter() -> Any:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
    if kind == "console":  # one JSON line per span on stderr: the participant's log
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n")
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPSpanExporter()
