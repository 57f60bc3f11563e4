"""examples/shipping/scenario.yaml: shipping joins a live saga, played by `sagactl run`.

The file needs the scenario format's `start` step (issue 5) and `invariants`, which runs
`sagactl check` (issue 3); until both are in this build the test says so and skips.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app
from sagactl.scenario import model

SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "shipping" / "scenario.yaml"

if not hasattr(model, "StartStep") or importlib.util.find_spec("sagactl.check") is None:
    pytest.skip("needs the scenario `start` step (issue 5) and `sagactl check` (issue 3)", allow_module_level=True)


def test_shipping_joins_a_live_saga_and_nothing_is_lost() -> None:
    result = CliRunner().invoke(app, ["run", str(SCENARIO), "--json"])
    report = json.loads(result.stdout)
    failed = [v for v in report["expectations"] if not v["passed"]]
    assert result.exit_code == 0 and report["passed"], failed
    assert "shipping" in report["after"]
