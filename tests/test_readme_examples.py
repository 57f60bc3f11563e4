"""The README's examples come from real runs: the generating script works end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_script_writes_every_example_from_real_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_examples.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    examples = tmp_path / "examples"
    assert "FINALIZED_SALE" in (examples / "run-success.txt").read_text()
    assert "success: passed" in (examples / "run-success.txt").read_text()
    assert "fault: passed" in (examples / "run-fault.txt").read_text()
    tail = (examples / "tail.txt").read_text().splitlines()
    # Sales 2 and 3 of the fault scenario run at once, so their lines interleave in any order.
    assert tail[0] == "$ sagactl tail --all --no-follow" and len(tail) == 13
    assert sum("(compensation)" in line for line in tail) == 1
    assert "sale 3: CANCELED (insufficient balance)" in (examples / "trace.txt").read_text()
    refused = (examples / "flow-refused-payment.mmd").read_text()
    assert refused.startswith("sequenceDiagram") and "payment-)inventory: FAILED_PAYMENT" in refused
    assert "inventory-)sale: ROLLBACK_INVENTORY" in (examples / "flow-out-of-stock.mmd").read_text()
    assert (tmp_path / "trace-refused-payment.svg").read_text().startswith("<svg")
    readme_text = (ROOT / "README.md").read_text()
    for name, lifelines, events in (("flow-success", 4, 4), ("flow-out-of-stock", 3, 3), ("flow-refused-payment", 4, 5)):
        picture = (tmp_path / f"{name}.svg").read_text()  # a sequence diagram: lifelines, submit, one arrow per event
        assert picture.count("<line ") == lifelines + 1 + events, name
        assert f"](docs/{name}.svg)" in readme_text, name
    assert "compensation" in (tmp_path / "flow-refused-payment.svg").read_text()
    readme = (tmp_path / "README.md").read_text()
    for name in ("run-success", "run-fault", "tail", "trace"):
        block = readme.split(f"<!-- BEGIN example:{name} -->")[1].split(f"<!-- END example:{name} -->")[0]
        assert block.count("\n") > 5, name
    assert (ROOT / "README.md").read_text().count("<!-- BEGIN example:") == 4  # the repository's own copy has the blocks
