"""Regenerate the README's example outputs and flow diagrams from real runs.

    .venv/bin/python scripts/readme_examples.py            # rewrites README.md, docs/observe.md, docs/examples/
    .venv/bin/python scripts/readme_examples.py --out DIR  # writes DIR/examples/ and DIR/*.md copies only

It plays `sagactl run success`, then `sagactl run fault --keep` (a finalized sale, an out-of-stock
sale and a refused payment), runs `tail`, `trace` and `logs` against the system that run left
running, and stops it. Each output lands in `docs/examples/<name>.txt` (Mermaid in `.mmd`; the
three flows and `trace 3` also as SVG sequence diagrams, `docs/flow-*.svg`) and
replaces the block between `<!-- BEGIN example:<name> -->` and `<!-- END example:<name> -->` in
the Markdown files that have one. Nothing in those blocks is typed by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAGACTL = [sys.executable, "-c", "from sagactl.cli.main import main; main()"]
MARKDOWN = ["README.md", "docs/observe.md"]
SVG = "docs/trace-refused-payment.svg"
FLOWS = ((1, "flow-success"), (2, "flow-out-of-stock"), (3, "flow-refused-payment"))  # sales of `run fault`
WIDTH = "100"


def sagactl(*args: str, env: dict[str, str] | None = None, merge: bool = False) -> tuple[str, str]:
    """Run sagactl like a user in a 100-column terminal; return (the command as shown, its output)."""
    environment = {**os.environ, "COLUMNS": WIDTH, "NO_COLOR": "1", **(env or {})}
    # merge: messages (stderr) interleaved with data (stdout) as a terminal shows them
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT if merge else subprocess.PIPE}
    result = subprocess.run([*SAGACTL, *args], cwd=ROOT, env=environment, text=True, **streams)  # type: ignore[call-overload]
    output = result.stdout + (result.stderr or "")
    if result.returncode not in (0, 1):
        raise SystemExit(f"sagactl {' '.join(args)} failed ({result.returncode}):\n{output}")
    return "sagactl " + " ".join(args), output.rstrip("\n")


def console(command: str, output: str) -> str:
    text = "\n".join(line.rstrip() for line in output.splitlines())  # Rich pads table lines to the width
    return f"```console\n$ {command}\n{text}\n```"


def collect(svg_path: Path) -> dict[str, str]:
    """Every example block, by name, rendered as Markdown."""
    blocks: dict[str, str] = {}
    blocks["run-success"] = console(*sagactl("run", "success", merge=True))
    command, output = sagactl("run", "fault", "--keep", merge=True)
    blocks["run-fault"] = console(command, output)
    kept = re.search(r"sagactl down --state-dir (\S+?)\)", output)
    if not kept:
        raise SystemExit(f"`run fault --keep` did not say where its system is:\n{output}")
    state = kept.group(1)
    env = {"SAGACTL_STATE_DIR": state}
    try:
        blocks["tail"] = console(*sagactl("tail", "--all", "--no-follow", env=env))
        blocks["tail-json"] = console(*sagactl("tail", "--last", "1", "--no-follow", "--json", env=env))
        blocks["trace"] = console(*sagactl("trace", "3", env=env))
        blocks["logs"] = console(*sagactl("logs", "inventory", "--lines", "3", env=env))
        for sale, name in FLOWS:
            _, diagram = sagactl("trace", str(sale), "--mermaid", env=env)
            blocks[name] = f"```mermaid\n{diagram}\n```"
            # The README shows each flow as the sequence diagram `trace --svg` draws from this run.
            sagactl("trace", str(sale), "--svg", str(svg_path.parent / f"{name}.svg"), env=env)
        sagactl("trace", "3", "--svg", str(svg_path), env=env)
    finally:
        sagactl("down", "--purge", env=env)
        shutil.rmtree(state, ignore_errors=True)
    return blocks


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    for name, block in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN example:{re.escape(name)} -->\n).*?(\n<!-- END example:{re.escape(name)} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + block + m.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Write here instead of the repository's docs and README.")
    args = parser.parse_args()
    out = args.out.resolve() if args.out else ROOT / "docs"
    svg_path = out / Path(SVG).name if args.out else ROOT / SVG
    blocks = collect(svg_path)
    examples = out / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    for name, block in blocks.items():
        body = block.split("\n", 1)[1].rsplit("\n```", 1)[0]
        (examples / f"{name}.{'mmd' if block.startswith('```mermaid') else 'txt'}").write_text(body + "\n")
    for markdown in MARKDOWN:
        source = ROOT / markdown
        target = out / Path(markdown).name if args.out else source
        target.write_text(replace_blocks(source.read_text(), blocks))
    print(f"wrote {len(blocks)} examples to {examples}", file=sys.stderr)


if __name__ == "__main__":
    main()
