"""The short chaos run of CI: benchmarks/chaos.py for half a minute, every fault kind at least once.

The kinds come in a fixed order (the seed fixes the rest; only the timing is random); the run must
end with nothing lost, doubled or stuck. The long run and its figures: docs/reliability.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).resolve().parents[1] / "benchmarks" / "chaos.py"
SCHEDULE = ["crash", "nats", "replica", "unwritable", "oversized", "forged", "crash", "forged"]


@pytest.mark.sqlite_only
@pytest.mark.timeout(90)
def test_a_short_chaos_run_loses_doubles_and_sticks_nothing() -> None:
    if shutil.which("chattr") is None:
        pytest.skip("the unwritable-database fault needs chattr")
    done = subprocess.run(
        [sys.executable, str(CHAOS), "--minutes", "0.5", "--seed", "14", "--sagas-per-second", "20", "--replicas", "2",
         "--fault-gap", "1.5", "--max-outage", "3", "--settle", "60", "--schedule", ",".join(SCHEDULE), "--json"],
        capture_output=True, text=True, timeout=85,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["faults"]) == set(SCHEDULE), result  # every kind was injected
    assert result["notes"] == [] or all("SIGKILLed" in note for note in result["notes"]), result
    assert (result["lost"], result["doubled"], result["stuck"]) == (0, 0, 0), result
    assert result["violations"] == [], result
    assert result["submitted"] >= 300, result
    assert done.returncode == 0, done.stderr[-3000:]
