"""examples/shipping/scenario.yaml: shipping joins a live saga, played by `sagactl run`
(its `start` step adds the participant, its `invariants` run `sagactl check`)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sagactl.cli.main import app

SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "shipping" / "scenario.yaml"


def test_shipping_joins_a_live_saga_and_nothing_is_lost() -> None:
    result = CliRunner().invoke(app, ["run", str(SCENARIO), "--json"])
    report = json.loads(result.stdout)
    failed = [v for v in report["expectations"] if not v["passed"]]
    assert result.exit_code == 0 and report["passed"], failed
    assert "shipping" in report["after"]
