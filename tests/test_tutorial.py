"""docs/participants.md stays true: its participant and its tests, copied out of the page, pass."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_tutorials_participant_passes_the_tutorials_tests(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("run_commands", DOCS / "run_commands.py")
    assert spec is not None and spec.loader is not None
    run_commands = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_commands)
    files = run_commands.files((DOCS / "participants.md").read_text())
    assert set(files) == {"loyalty.py", "test_loyalty.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:cacheprovider",
                             "test_loyalty.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_tutorials_sample_outputs_are_what_the_commands_print_today() -> None:
    """Every `console run` block of docs/participants.md, rerun on a fresh system, prints what the page
    shows (times, ports, pids, ids and table widths aside): `run_commands.py --check`."""
    result = subprocess.run([sys.executable, str(DOCS / "run_commands.py"), str(DOCS / "participants.md"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, "the page drifted from the commands' output:\n" + result.stdout + result.stderr[-2000:]
