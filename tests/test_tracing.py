"""OpenTelemetry across real processes: the participants export to an OTLP/HTTP receiver in this
test process; one saga is one trace, with a span from every participant, each the child of the
span that emitted the event it handled, compensation included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from polling import wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_cli import sagactl

from participants.runtime.loader import BUILT_IN, load_participant
from participants.runtime.tracing import configured
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor


class Receiver:
    """An OTLP/HTTP trace receiver: every span posted to /v1/traces, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        lock = self.lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    for resource in request.resource_spans:
                        service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                spans.append({
                                    "service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(), "parent_id": span.parent_span_id.hex(),
                                    "start": span.start_time_unix_nano,
                                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                                })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_sale(self, sale_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return sorted((s for s in self.spans if s["attributes"].get("sagactl.sale_id") == sale_id), key=lambda s: s["start"])


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def traced_system(state: StateDir, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Supervisor]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms, not every 5 s
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, participants=dict(BUILT_IN))
        yield supervisor
    finally:
        supervisor.down()


def submit(supervisor: Supervisor, value: str, quantity: int) -> int:
    result = sagactl(supervisor, "submit", "--product-id", "1", "--user-id", "1", "--value", value,
                     "--quantity", str(quantity), "--wait", "--json")
    assert result.exit_code in (0, 1), result.output
    return int(json.loads(result.stdout)["sale_id"])


def links(spans: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(parent span name, child span name) of every span; the root's parent is "" (none)."""
    names = {s["span_id"]: s["name"] for s in spans}
    assert all(not s["parent_id"] or s["parent_id"] in names for s in spans), "every parent is in the trace"
    assert sum(1 for s in spans if not s["parent_id"]) == 1, "one root"
    return {(names.get(s["parent_id"], ""), s["name"]) for s in spans}


def expected_links(*path: str, then: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    """A path of spans each the child of the one before, and `then` all children of its last."""
    pairs = {("", path[0])} | set(zip(path, path[1:]))
    return pairs | {(path[-1], child) for child in then}


def test_one_saga_is_one_trace_across_the_three_processes(traced_system: Supervisor, receiver: Receiver) -> None:
    finalized = submit(traced_system, "20.00", 2)
    refused = submit(traced_system, "500.00", 1)  # payment refuses; inventory compensates

    spans = wait_for(lambda: len(s := receiver.of_sale(finalized)) == 4 and s, what="the finalized saga's four spans")
    assert len({s["trace_id"] for s in spans}) == 1
    assert links(spans) == expected_links(
        "sale submit", "inventory handles CREATED_SALE", "payment handles UPDATED_INVENTORY", "sale handles VALIDATED_PAYMENT")
    assert {s["service"] for s in spans} == {"sale", "inventory", "payment"}
    handled = next(s for s in spans if s["name"] == "inventory handles CREATED_SALE")["attributes"]
    assert handled["sagactl.outcome"] == "applied" and handled["sagactl.redeliveries"] == 0
    assert handled["sagactl.emitted"] == ["UPDATED_INVENTORY"]

    # The participants that react to CANCELED_SALE (a saga's end) are children of the span that emitted it.
    on_canceled = tuple(f"{name} handles CANCELED_SALE" for name, reference in BUILT_IN.items()
                        if "CANCELED_SALE" in load_participant(reference).handlers)
    count = 5 + len(on_canceled)
    spans = wait_for(lambda: len(s := receiver.of_sale(refused)) == count and s, what="the refused saga's spans")
    assert len({s["trace_id"] for s in spans}) == 1
    assert {s["trace_id"] for s in spans} != {s["trace_id"] for s in receiver.of_sale(finalized)}
    assert links(spans) == expected_links(
        "sale submit", "inventory handles CREATED_SALE", "payment handles UPDATED_INVENTORY",
        "inventory handles FAILED_PAYMENT", "sale handles ROLLBACK_INVENTORY", then=on_canceled)
    compensation = next(s for s in spans if s["name"] == "inventory handles FAILED_PAYMENT")
    assert compensation["attributes"]["sagactl.kind"] == "compensation"
    starts = [next(s["start"] for s in spans if s["name"] == n) for n in ("sale submit", "inventory handles CREATED_SALE",
              "payment handles UPDATED_INVENTORY", "inventory handles FAILED_PAYMENT", "sale handles ROLLBACK_INVENTORY")]
    assert starts == sorted(starts)  # in event order


def test_off_by_default_and_by_the_standard_switch() -> None:
    assert not configured({})
    assert configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert configured({"OTEL_TRACES_EXPORTER": "console"})
    assert not configured({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not configured({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    # Off, a participant process does not even import OpenTelemetry.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = "import sys, participants.runtime.daemon; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
