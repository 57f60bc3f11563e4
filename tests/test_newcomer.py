"""A newcomer's path through the CLI: help that reads plainly, one error style, the right exit codes.

Real processes throughout: `sagactl` as a subprocess where the exit code and stderr are the
point, a real nats-server and participants (SQLite only: nothing here depends on the backend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sagactl.cli.main import app

runner = CliRunner()

SAGACTL = str(Path(sys.executable).parent / "sagactl")  # the script `pip install` puts beside python
TYPER_PLACEHOLDERS = ("<str>", "<bool>", "<int", "<float", "<path>", "<list", "range>", "{")


def sagactl(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed CLI as a user runs it: a process, 80 columns (the width when piped)."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("SAGACTL_STATE_DIR", None)
    env.pop("NATS_URL", None)
    return subprocess.run([SAGACTL, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("sagactl: error: "), result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def all_commands() -> list[list[str]]:
    import typer.main

    root = typer.main.get_command(app)
    paths = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        for sub in getattr(command, "commands", {}):
            paths.append([name, sub])
    return paths


def first_watch_frame(args: list[str], rows: int, columns: int) -> list[str]:
    """The first screen a `--watch` command draws in a terminal of rows x columns (a real pty)."""
    import fcntl
    import pty
    import re
    import select
    import signal
    import struct
    import termios
    import time

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    watcher = subprocess.Popen([SAGACTL, *args], stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    output, deadline = b"", time.monotonic() + 30
    try:
        while b"Ctrl-C to stop" not in output and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                output += os.read(primary, 65536)
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=20)
        except subprocess.TimeoutExpired:
            watcher.kill()
        os.close(primary)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace")).replace("\r", "")
    assert "Ctrl-C to stop" in text, text
    return text.split("Ctrl-C to stop")[0].strip("\n").splitlines()


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "sagactl")
def test_help_has_plain_placeholders_and_an_example(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    for typer_word in TYPER_PLACEHOLDERS:
        assert typer_word not in result.output, (typer_word, result.output)
    assert "Example" in result.output, result.output
    assert "╭" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    if "Commands:" in result.output:  # each command's summary whole, never cut with "..."
        assert "..." not in result.output.split("Commands:")[1].split("Example")[0], result.output


def test_top_level_help_names_exit_codes_env_and_completion() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=80)
    for word in ("SAGACTL_TRACEBACK", "NO_COLOR", "SAGACTL_STATE_DIR", "--install-completion", "4 timed out"):
        assert word in result.output, word


def test_help_placeholders_say_what_goes_there() -> None:
    submit = runner.invoke(app, ["submit", "--help"], terminal_width=80).output
    assert "--product-id ID" in submit and "--timeout SECONDS" in submit and "--nats-url URL" in submit
    assert "[env var: SAGACTL_STATE_DIR]" in submit and "[default: 30.0]" in submit
    up = runner.invoke(app, ["up", "--help"], terminal_width=80).output
    assert "--replicas NAME=N" in up and "--with MODULE:OBJECT" in up and "--db-url NAME=URL" in up


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["submit"], ["missing option --product-id", "sagactl submit --help"]),
        (["submit", "--product-id", "1", "--user-id", "1", "--value", "1", "--quantity", "1", "--timeout", "abc"],
         ["--timeout", "expected a number"]),
        (["participant", "run", "x", "--replica", "0"], ["--replica", "expected at least 1"]),
        (["logs"], ["missing argument", "sagactl logs --help"]),
        (["nosuch"], ["no such command"]),
    ],
)
def test_typer_errors_are_one_line_in_sagactls_words(args: list[str], words: list[str]) -> None:
    line = one_error_line(sagactl(*args), 2, *words)
    assert "Input should" not in line


def test_bad_input_is_exit_2_with_a_hint(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    sale = ["submit", "--user-id", "1", "--value", "1.00", "--quantity", "1", "--state-dir", state]
    one_error_line(sagactl(*sale, "--product-id", "99999999999999999999"), 2, "--product-id", "<=")
    one_error_line(sagactl(*sale, "--product-id", "1", "--wait", "--timeout", "0"), 2, "--timeout", "above 0")
    one_error_line(sagactl("trace", "99999999999999999999", "--state-dir", state), 2, "SALE_ID", "<=")
    one_error_line(sagactl("tail", "--sale-id", "99999999999999999999", "--state-dir", state), 2, "--sale-id", "<=")
    one_error_line(sagactl(*sale, "--product-id", "1", "--nats-url", "notaurl:x"), 2, "not a NATS URL")
    a_file = tmp_path / "file"
    a_file.write_text("")
    one_error_line(sagactl("status", "--state-dir", str(a_file)), 2, "is a file", "--state-dir")
    one_error_line(sagactl("up", "--state-dir", "/proc/sagactl"), 2, "/proc/sagactl", "--state-dir")
    one_error_line(sagactl("scenario", "validate", str(tmp_path)), 2, "is a directory")
    one_error_line(sagactl("run", str(tmp_path)), 2, "is a directory")


def test_unreachable_is_exit_3(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    one_error_line(sagactl("state", "--state-dir", state), 3, "nothing is running", "sagactl up")
    status = sagactl("status", "--state-dir", state, "--nats-url", "nats://127.0.0.1:1", "--json")
    assert status.returncode == 3, status.stderr
    assert json.loads(status.stdout)["nats_reachable"] is False


def test_a_system_from_up_to_down_purge(tmp_path: Path) -> None:
    """One real system: refusals while it runs, a timeout's own code, then what `down` leaves."""
    state = str(tmp_path / "state")
    try:
        refused = sagactl("up", "--state-dir", state, "--replicas", "billing=2")
        one_error_line(refused, 2, "billing", "--with")
        assert not (tmp_path / "state" / "run").exists() or not list((tmp_path / "state" / "run").glob("*.pid"))
        started = sagactl("up", "--state-dir", state, timeout=120)
        assert started.returncode == 0, started.stderr
        assert sagactl("down", "--state-dir", state).returncode == 0
        sale = ["--product-id", "1", "--user-id", "1", "--value", "1.00", "--quantity", "1", "--state-dir", state]
        one_error_line(sagactl("submit", *sale), 3, "nothing is running", "sagactl up")
        one_error_line(sagactl("state", "--state-dir", state), 3, "nothing is running", "sagactl up")
        assert (tmp_path / "state" / "logs").is_dir()
        purged = sagactl("down", "--purge", "--state-dir", state)
        assert purged.returncode == 0 and "logs" in purged.stderr
        assert not (tmp_path / "state" / "logs").exists()
    finally:
        sagactl("down", "--state-dir", state)


def test_setup_then_a_timeout_with_its_own_exit_code(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    try:
        assert sagactl("up", "--state-dir", state, timeout=120).returncode == 0
        one_error_line(sagactl("setup", "--product", "1", "--state-dir", state), 2, "--product takes ID=UNITS")
        one_error_line(sagactl("setup", "--user", "1=abc", "--state-dir", state), 2, "--user 1=abc")
        done = sagactl("setup", "--product", "1=100", "--product", "7=3", "--user", "1=500", "--user", "2=1.50",
                       "--state-dir", state)
        assert done.returncode == 0, done.stderr
        assert "product 7: 3 units" in done.stdout and "user 2: balance 1.50" in done.stdout
        tables = json.loads(sagactl("state", "--json", "--state-dir", state).stdout)
        stock = {row["product_id"]: row["quantity"] for row in tables["inventory"]["inventories"]}
        balances = {row["id"]: row["balance"] for row in tables["payment"]["users"]}
        assert stock == {1: 100, 7: 3} and balances == {1: "500.00", 2: "1.50"}
        refused = sagactl("submit", "--product-id", "1", "--user-id", "1", "--value", "600.00", "--quantity", "1",
                          "--wait", "--state-dir", state)
        assert refused.returncode == 1 and "insufficient balance" in refused.stdout
        trace = sagactl("trace", "1", "--svg", str(tmp_path / "sale.svg"), "--state-dir", state)  # 80 columns
        assert trace.returncode == 0, trace.stderr
        assert "…" not in trace.stdout and all(len(line) <= 80 for line in trace.stdout.splitlines()), trace.stdout
        assert "handled by sale" in trace.stdout and "compensation, insufficient balance" in trace.stdout
        logged = sagactl("logs", "inventory", "--state-dir", state).stdout
        tags = [line.rsplit("[id …", 1)[1] for line in logged.splitlines() if "[id …" in line]
        # CREATED_SALE and FAILED_PAYMENT (and CANCELED_SALE, once inventory has seen it): one tag each.
        assert len(tags) >= 2 and len(set(tags)) == len(tags), logged
        picture = (tmp_path / "sale.svg").read_text()
        assert picture.count("<line ") == 4 + 1 + 5 and "stroke-dasharray=\"6 3\"" in picture  # the compensation
        many = [arg for n in range(10, 40) for arg in ("--product", f"{n}=5")]
        assert sagactl("setup", *many, "--state-dir", state).returncode == 0
        frame = first_watch_frame(["state", "--watch", "--state-dir", state], rows=40, columns=80)
        assert len(frame) <= 40, "\n".join(frame)
        assert any("older" in line for line in frame), "\n".join(frame)  # 32 products: the oldest counted
        assert any("32 │         39 │" in line for line in frame), "\n".join(frame)  # the newest row
        from sagactl.system.statedir import StateDir
        from sagactl.system.supervisor import Supervisor

        Supervisor(StateDir.at(state)).stop_participant("payment")  # the sale stays PENDING
        result = sagactl("submit", "--product-id", "1", "--user-id", "1", "--value", "1.00", "--quantity", "1",
                         "--wait", "--timeout", "1", "--state-dir", state)
        one_error_line(result, 4, "still PENDING after 1s")
    finally:
        sagactl("down", "--state-dir", state)


LOYALTY = '''
from participants.runtime import Participant

participant = Participant(name="loyalty", tables=[], handlers={})
'''

JOINS = """
name: loyalty-joins
steps:
  - submit: {product_id: 1, user_id: 1, value: "1.00", quantity: 1}
  - start: loyalty:participant
  - wait: all
"""
FROM_THE_START = """
name: loyalty-from-the-start
participants:
  loyalty: {module: "loyalty:participant"}
steps:
  - submit: {product_id: 1, user_id: 1, value: "1.00", quantity: 1}
"""


def test_a_scenario_imports_its_participants_from_the_current_directory(tmp_path: Path) -> None:
    """The rule of `up --with` and `participant run` (and of `python -m`): the current directory first."""
    (tmp_path / "loyalty.py").write_text(LOYALTY)
    (tmp_path / "joins.yaml").write_text(JOINS)
    (tmp_path / "start.yaml").write_text(FROM_THE_START)
    result = sagactl("scenario", "validate", "joins.yaml", "start.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid: scenario loyalty-joins" in result.stdout and "valid: scenario loyalty-from-the-start" in result.stdout


def test_the_shipped_example_validates_from_the_repository_root() -> None:
    root = Path(__file__).resolve().parent.parent
    result = sagactl("scenario", "validate", "examples/shipping/scenario.yaml", cwd=root)
    assert result.returncode == 0, result.stderr


SLOW = """
name: slow
steps:
  - submit: {product_id: 1, user_id: 1, value: "1.00", quantity: 1}
  - sleep: 60
"""


def processes_of(root: Path) -> list[int]:
    """Every live process started for this state dir: its path is in their command line or environment."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " " + process.environ().get("SAGACTL_STATE_DIR", "")
        except (psutil.Error, OSError):
            continue
        if str(root) in text and process.pid != os.getpid():
            found.append(process.pid)
    return found


@pytest.mark.parametrize("when", ["starting", "playing"])
def test_ctrl_c_twice_during_run_removes_the_private_system(tmp_path: Path, when: str) -> None:
    import signal
    import time

    (tmp_path / "slow.yaml").write_text(SLOW)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "COLUMNS": "80", "NO_COLOR": "1"}
    run = subprocess.Popen([SAGACTL, "run", "slow.yaml"], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        root = None
        while time.monotonic() < deadline:  # the private state dir, and (playing) its step 2 under way
            dirs = list(temp.glob("sagactl-slow-*"))
            if dirs:
                root = dirs[0]
                pids = list((root / "run").glob("*.pid")) if (root / "run").exists() else []
                if when == "starting" and pids:
                    break
                if when == "playing" and (root / "run" / "payment-1.pid").exists() and \
                        "payment" in (root / "system.json").read_text() and _step_two(root):
                    break
            time.sleep(0.02)
        assert root is not None, "no private system appeared"
        run.send_signal(signal.SIGINT)
        time.sleep(0.05)  # an impatient user: the second Ctrl-C while the first one tears down
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "interrupted" in err and "removed" in err, err
    assert not root.exists(), list(root.rglob("*"))
    assert processes_of(root) == [], "processes left running"


def _step_two(root: Path) -> bool:
    """The sale of step 1 was handled by payment: the saga is under way and the sleep has begun."""
    log = root / "logs" / "payment.log"
    return log.exists() and "handled" in log.read_text()


def test_up_with_remembers_where_to_import_from_and_down_remove_takes_one_away(tmp_path: Path) -> None:
    """`up --with` from a project directory, then `up` from elsewhere; `down --remove` stops only it."""
    project, elsewhere = tmp_path / "myshop", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shipping = Path(__file__).resolve().parent.parent / "examples" / "shipping" / "__init__.py"
    (project / "myshipping.py").write_text(shipping.read_text())
    state = str(tmp_path / "state")
    try:
        added = sagactl("up", "--with", "myshipping:participant", "--state-dir", state, cwd=project, timeout=120)
        assert added.returncode == 0, added.stderr
        from sagactl.system.statedir import StateDir
        from sagactl.system.supervisor import Supervisor

        supervisor = Supervisor(StateDir.at(state))
        supervisor.stop_participant("shipping", kill=True)
        again = sagactl("up", "--state-dir", state, cwd=elsewhere, timeout=120)  # restarts shipping from there
        assert again.returncode == 0, again.stderr
        assert "shipping" in again.stderr
        one_error_line(sagactl("down", "--remove", "payment", "--state-dir", state), 2, "built-in")
        one_error_line(sagactl("down", "--remove", "billing", "--state-dir", state), 2, "added: shipping")
        removed = sagactl("down", "--remove", "shipping", "--state-dir", state)
        assert removed.returncode == 0 and "shipping removed (stopped shipping)" in removed.stderr, removed.stderr
        status = json.loads(sagactl("status", "--json", "--state-dir", state).stdout)
        assert sorted(p["name"] for p in status["participants"] if p["running"]) == ["inventory", "payment", "sale"]
        assert "shipping" not in {p["name"] for p in status["participants"]}
    finally:
        sagactl("down", "--state-dir", state)


WRONG = """\
name: wrong
steps:
  - submit: {product_id: 1, user_id: 1, value: "20.00", quantity: 2}
    as: first
  - wait: [first]
    status: CANCELED
expect:
  sales:
    first: {status: CANCELED, reason: out of stock}
  tables:
    inventory.inventories: [{product_id: 1, quantity: 7}]
  events:
    first: [CREATED_SALE, ROLLBACK_INVENTORY, CANCELED_SALE]
"""


def test_failed_expectations_show_the_field_that_differs_and_its_line_at_80_columns(tmp_path: Path) -> None:
    (tmp_path / "wrong.yaml").write_text(WRONG)
    result = sagactl("run", "wrong.yaml", "--no-events", cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    verdicts = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("wrong: FAILED")):])
    for expected in (
        "✗ failed step 2 (line 5): wait for first\n    expected 1 CANCELED, got 1 FINALIZED",
        "✗ failed sale first (id 1)  (wrong.yaml:9)\n    status: expected CANCELED, got FINALIZED\n"
        '    reason: expected "out of stock", got none',
        "✗ failed table inventory.inventories  (wrong.yaml:11)\n    row 1 quantity: expected 7, got 8",
        "✗ failed events of first  (wrong.yaml:13)\n    event 2: expected ROLLBACK_INVENTORY, got UPDATED_INVENTORY",
        "    got      CREATED_SALE → UPDATED_INVENTORY → VALIDATED_PAYMENT → FINALIZED_SALE",
    ):
        assert expected in verdicts, (expected, verdicts)
    assert "…" not in result.stdout


def test_purging_every_dead_letter_asks_first(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    one_error_line(sagactl("deadletters", "purge", "--all", "--state-dir", state), 2, "--yes")
    # confirmed, it goes on to the system (none here): the refusal above came before any connection
    one_error_line(sagactl("deadletters", "purge", "--all", "--yes", "--state-dir", state), 3, "nothing is running")


def test_validate_finds_what_run_would_find_and_every_problem_of_a_step(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("""\
name: bad
steps:
  - submit: {product_id: 0, user_id: x, value: "abc", quantity: -1}
expect:
  tables:
    inventory.stock: [{product_id: 1}]
    inventory.inventories: [{product: 1, quantity: 9}]
    payment.users: {where: {id: 1}, values: {money: "1.00"}}
""")
    result = sagactl("scenario", "validate", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2
    for problem in (
        "bad.yaml:3: steps[1].submit.product_id: expected an integer >= 1, got 0",
        "bad.yaml:3: steps[1].submit.user_id: expected an integer",
        "bad.yaml:3: steps[1].submit.quantity: expected an integer >= 1, got -1",
        "bad.yaml:3: steps[1].submit.value: 'abc' is not a decimal amount",
        "bad.yaml:6: expect.tables: unknown table 'inventory.stock'; inventory has inventory.inventories",
        "bad.yaml:7: expect.tables.inventory.inventories: unknown column 'product'",
        "bad.yaml:8: expect.tables.payment.users.values: unknown column 'money'",
    ):
        assert problem in result.stderr, (problem, result.stderr)
    assert "Input should" not in result.stderr
