"""scripts/prometheus_demo.sh: a real Prometheus (Debian's package) scrapes a live system and
counts every saga through its HTTP API. `.ci/run` installs the package and requires this test
(SAGACTL_REQUIRE_PROMETHEUS=1); elsewhere it is skipped without a `prometheus` binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "prometheus_demo.sh"


def test_prometheus_scrapes_every_participant_and_counts_every_saga(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("SAGACTL_REQUIRE_PROMETHEUS"):
            pytest.fail("no prometheus binary (apt-get install --no-install-recommends prometheus)")
        pytest.skip("no prometheus binary (apt-get install --no-install-recommends prometheus)")
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("SAGACTL_STATE_DIR", None)
    result = subprocess.run(["bash", str(SCRIPT), "10"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "status=FINALIZED reason=-  9" in result.stdout
    assert "status=CANCELED reason=out of stock  1" in result.stdout
    assert "Prometheus counted all 10 sagas" in result.stdout
