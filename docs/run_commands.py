"""Re-run the commands of a markdown document and paste their real output back into it.

    .venv/bin/python docs/run_commands.py docs/participants.md

In a new directory named like /tmp/myshop (short, so tables that show paths fit; its path is
written as /tmp/myshop in the outputs), it
writes every code block whose info string names a file (```` ```python file=loyalty.py ````) and
runs every `$ command` line of the blocks marked ```` ```console run ````, in order, with this
venv's `bin` first on PATH; each command's stdout and stderr replace what followed it in the block.
A block marked ```` ```console run in=repo ```` runs at the repository's root instead (for
commands that name files of the repository).
At the end it runs `sagactl down --purge` there and deletes the directory.

    .venv/bin/python docs/run_commands.py docs/participants.md --check

reruns them without writing and exits 1 with the difference when an output drifted from the
page (times, ports, pids, ids and table widths aside): tests/test_tutorial.py runs it.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
WORKDIR = Path("/tmp/myshop")
REPOSITORY = Path(__file__).resolve().parent.parent


def files(document: str) -> dict[str, str]:
    """The code blocks that name a file: {file name: content}, the last one winning."""
    found = {}
    for match in FENCE.finditer(document):
        names = [word.removeprefix("file=") for word in match["info"].split() if word.startswith("file=")]
        if names:
            found[names[0]] = match["body"]
    return found


def render(document: str, workdir: Path, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        info, body = match["info"].split(), match["body"]
        if not info:
            return match[0]
        files = [word.removeprefix("file=") for word in info if word.startswith("file=")]
        if files:
            (workdir / files[0]).write_text(body)
            return match[0]
        if info[0] == "console" and "run" in info[1:]:
            where = REPOSITORY if "in=repo" in info else workdir
            return f"```{match['info']}\n{run_block(body, where, env)}```"
        return match[0]

    return FENCE.sub(replace, document)


def run_block(body: str, workdir: Path, env: dict[str, str]) -> str:
    shown = []
    for command in (line[2:] for line in body.splitlines() if line.startswith("$ ")):
        sys.stderr.write(f"$ {command}\n")
        result = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=300)
        shown.append(f"$ {command}\n{result.stdout}")
    return "".join(shown)


def fresh_workdir() -> Path:
    """A new directory whose path is as long as WORKDIR's, so that outputs naming it (tables of
    paths) keep their widths when WORKDIR is written in its place: runs never share one."""
    stem = str(WORKDIR.parent / "")
    for _ in range(100):
        candidate = Path(stem + secrets.token_hex(8)[: len(str(WORKDIR)) - len(stem)])
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise SystemExit(f"could not make a directory next to {WORKDIR}")


def normalized(document: str) -> list[str]:
    """A document's lines with what changes from run to run (times, ports, pids, ids, table
    widths) blanked: two runs of the same commands on the same code give the same lines."""
    lines: list[str] = []
    cells: list[str] = []  # the words of consecutive table rows: a cell wraps where its column's width says
    for line in document.splitlines():
        if '"what":"nats"' in line:  # connection changes while a process stops: their number is timing
            continue
        line = re.sub(r"[0-9a-f]{8,}", "H", line)
        line = re.sub(r"\d+(\.\d+)?", "N", line)
        line = re.sub(r"[ ─━═]+", " ", line).rstrip()
        if line.startswith("│"):
            cells += [word.strip(",") for word in line.replace("│", " ").split() if word.strip(",")]
            continue
        if cells:
            lines.append("│ " + " ".join(sorted(cells)))
            cells = []
        lines.append(line)
    return lines


def main() -> None:
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1:
        sys.stderr.write("usage: run_commands.py FILE.md [--check]\n")
        raise SystemExit(2)
    path = Path(args[0])
    workdir = fresh_workdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SAGACTL_", "NATS_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", COLUMNS="100", NO_COLOR="1")
    try:
        rendered = render(path.read_text(), workdir, env).replace(str(workdir), str(WORKDIR))
    finally:
        subprocess.run([f"{Path(sys.executable).parent}/sagactl", "down", "--purge"], cwd=workdir, env=env,
                       capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    if not check:
        path.write_text(rendered)
        return
    drift = list(difflib.unified_diff(normalized(path.read_text()), normalized(rendered), "committed", "rerun",
                                      lineterm="", n=1))
    if drift:  # --check: the page shows outputs the code no longer gives
        sys.stdout.write("\n".join(drift[:80]) + "\n")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
