"""`sagactl contract`: the AsyncAPI document passes the official parser, the JSON Schema accepts
every body a real run publishes (and only those), producers and consumers are the code's.

The parser is `@asyncapi/parser` from npm, run by node. `.ci/run` installs it into
`.cache/asyncapi` (or `SAGACTL_ASYNCAPI_PARSER_DIR`); there the test must run
(`SAGACTL_REQUIRE_ASYNCAPI=1`), elsewhere it is skipped when node or the parser is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from commands import runner
from polling import wait_for

from participants import flow
from participants.runtime.loader import BUILT_IN, load_participant
from sagactl.cli.main import app
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = Path(__file__).parent / "node" / "asyncapi_validate.cjs"
SHIPPING = "examples.shipping:participant"


def parser_dir() -> Path:
    return Path(os.environ.get("SAGACTL_ASYNCAPI_PARSER_DIR") or ROOT / ".cache" / "asyncapi")


def asyncapi_parse(document: dict[str, Any]) -> dict[str, Any]:
    """Run the official parser on a document; its verdict, diagnostics and what it read."""
    modules = parser_dir() / "node_modules"
    missing = ("node is not installed" if shutil.which("node") is None
               else None if (modules / "@asyncapi" / "parser").is_dir()
               else f"@asyncapi/parser is not installed in {parser_dir()} (npm install --prefix {parser_dir()} @asyncapi/parser)")
    if missing:
        if os.environ.get("SAGACTL_REQUIRE_ASYNCAPI"):
            pytest.fail(missing)
        pytest.skip(missing)
    result = subprocess.run(["node", str(VALIDATOR)], input=json.dumps(document), capture_output=True, text=True,
                            env={**os.environ, "NODE_PATH": str(modules)}, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def contract(*args: str, state: StateDir | None = None) -> dict[str, Any]:
    """`sagactl contract ARGS` printing a JSON document."""
    extra = ["--state-dir", str(state.root)] if state else []
    result = runner.invoke(app, ["contract", *args, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def shipping_system(state: StateDir) -> Iterator[Supervisor]:
    """NATS, the three built-ins and the shipping example, on SQLite (the bodies do not depend on it)."""
    supervisor = Supervisor(state)
    try:
        supervisor.up(None, participants={**BUILT_IN, "shipping": SHIPPING})
        yield supervisor
    finally:
        supervisor.down(kill=True)


def test_the_asyncapi_document_passes_the_official_parser() -> None:
    document = contract("--asyncapi", "--with", SHIPPING)
    verdict = asyncapi_parse(document)
    assert verdict["ok"], verdict["diagnostics"]
    read = verdict["document"]
    assert read["version"] == "3.0.0"
    assert "saga.sale.created" in read["channels"] and "saga.shipping.created" in read["channels"]
    assert {"CREATED_SALE", "SHIPMENT_CREATED"} <= set(read["messages"])
    operations = {op["id"]: op["action"] for op in read["operations"]}
    assert operations["shipping.sends.SHIPMENT_CREATED"] == "send"
    assert operations["shipping.receives.FINALIZED_SALE"] == "receive"


def test_the_parser_rejects_a_broken_document() -> None:
    """The check above can fail: a message that points at a schema nobody defined is an error."""
    document = contract("--asyncapi")
    document["components"]["messages"]["CREATED_SALE"]["payload"] = {"$ref": "#/components/schemas/NOWHERE"}
    verdict = asyncapi_parse(document)
    assert not verdict["ok"]
    assert any(d["severity"] == 0 for d in verdict["diagnostics"])


def test_producers_and_consumers_are_the_choreography_and_the_handlers() -> None:
    document = contract("--asyncapi", "--with", SHIPPING)
    sends = {op.split(".sends.")[1]: op.split(".")[0] for op in document["operations"] if ".sends." in op}
    receives: dict[str, set[str]] = {}
    for op in document["operations"]:
        if ".receives." in op:
            receives.setdefault(op.split(".receives.")[1], set()).add(op.split(".")[0])
    assert {t: p for t, p in sends.items() if t in flow.PRODUCERS} == flow.PRODUCERS
    assert sends["SHIPMENT_CREATED"] == "shipping"
    for event_type, step in flow.STEPS.items():
        if event_type != flow.SUBMIT:
            assert step.actor in receives[event_type]
    assert receives["FINALIZED_SALE"] == {"shipping"}  # the built-in saga ends there; shipping reacts to it
    assert "SHIPMENT_CREATED" not in receives  # nobody consumes it
    for name, reference in BUILT_IN.items():  # every handler is a receive operation, and nothing else is
        for event_type in load_participant(reference).handlers:
            assert name in receives[event_type]
    assert sum(map(len, receives.values())) == sum(len(load_participant(r).handlers) for r in BUILT_IN.values()) + 1


def test_the_json_schema_accepts_every_body_of_a_real_run_and_rejects_a_wrong_one(shipping_system: Supervisor) -> None:
    state = shipping_system.state
    sales = [("1", "20.00", "2"), ("1", "69.99", "10"), ("1", "500.00", "1")]  # finalized, out of stock, refused
    for product, value, quantity in sales:
        result = runner.invoke(app, ["submit", "--product-id", product, "--user-id", "1", "--value", value,
                                     "--quantity", quantity, "--wait", "--state-dir", str(state.root)])
        assert result.exit_code in (0, 1), result.output
    schema = contract("--json-schema", state=state)  # shipping comes from the state dir: `up` ran it
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    def bodies() -> list[dict[str, Any]]:
        result = runner.invoke(app, ["tail", "--all", "--no-follow", "--json", "--state-dir", str(state.root)])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["data"] for line in result.stdout.splitlines() if line.strip()]

    published = wait_for(lambda: (found := bodies()) and any(b["type"] == "SHIPMENT_CREATED" for b in found) and found,
                         what="the shipment event")
    types = {b["type"] for b in published}
    assert {"CREATED_SALE", "FAILED_PAYMENT", "ROLLBACK_INVENTORY", "CANCELED_SALE", "SHIPMENT_CREATED"} <= types
    for body in published:
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (body, errors)
    wrong = dict(published[0], value=20.0)  # money as a JSON number: the contract says a string
    assert list(validator.iter_errors(wrong))
    assert list(validator.iter_errors(dict(published[0], type="NO_SUCH_TYPE")))


def test_usage_errors_are_one_line() -> None:
    both = runner.invoke(app, ["contract", "--asyncapi", "--json-schema"])
    assert both.exit_code == 2 and "give one of them" in both.output
    unknown = runner.invoke(app, ["contract", "--with", "no_such_module:participant"])
    assert unknown.exit_code == 2 and "cannot import no_such_module" in unknown.output
    assert "Traceback" not in both.output + unknown.output


def test_the_table_names_every_type() -> None:
    table = runner.invoke(app, ["contract", "--with", SHIPPING], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    for line in ("CREATED_SALE", "saga.sale.created", "SHIPMENT_CREATED", "saga.shipping.created"):
        assert line in table.stdout

