"""`sagactl bench` runs end to end and its checks pass: a smoke test, not a speed test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("args", [
    ["--sagas", "120", "--concurrency", "40", "--fault-rate", "0.2"],
    ["--sagas", "60", "--rate", "200"],
    ["--sagas", "60", "--concurrency", "20", "--raw"],
])
def test_bench_runs_and_its_checks_pass(args: list[str]) -> None:
    result = runner.invoke(app, ["bench", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    sagas = int(args[1])
    assert report["checks_passed"] is True, report["checks"]
    assert report["finalized"] + report["canceled"] == sagas
    assert report["sagas_per_s"] > 0 and report["events_per_s"] > 0
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    names = {p["name"] for p in report["processes"]}
    assert {"sale", "inventory", "payment", "nats-server", "generator"} <= names
    if "--raw" not in args:
        assert any("sagactl check's invariants" in what for what in report["checks"]["what"])
        assert report["canceled"] > 0  # the designed failures happened and ended as designed


@pytest.mark.parametrize("args, message", [
    ([], "exactly one of --concurrency"),
    (["--concurrency", "5", "--rate", "10"], "exactly one of --concurrency"),
    (["--concurrency", "0"], "must be positive"),
    (["--concurrency", "5", "--fault-rate", "2"], "between 0 and 1"),
    (["--concurrency", "5", "--reuse", "--raw"], "need a fresh system"),
])
def test_bench_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 2 and message in result.stderr


def test_help_and_status_import_only_what_they_need(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys; sys.argv = ['sagactl'] + sys.argv[1:]\n"
        "from sagactl.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit: pass\n"
        "heavy = sorted(m for m in ('sqlmodel', 'sqlalchemy', 'nats', 'pydantic', 'participants.runtime.daemon') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
    )
    # What makes --help quick (docs/performance.md: 0.3 s) is what it does not import; a clock on
    # a shared CI machine would say more about the machine than about sagactl.
    helped = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in helped.stderr, helped.stderr
    assert "bench" in helped.stdout and "submit" in helped.stdout  # the whole command list all the same
    status = subprocess.run([sys.executable, "-c", code, "status", "--state-dir", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    # Nothing running: no NATS client needed. (Typer itself loads pydantic to convert options.)
    assert "HEAVY=pydantic\n" in status.stderr or "HEAVY=\n" in status.stderr, status.stderr
