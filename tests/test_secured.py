"""A server that wants credentials and TLS: sagactl works with the right ones, and with wrong or
missing ones fails in one line (no traceback, no hang) without ever printing a secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from nats_auth import (
    Certificates,
    Operator,
    SecuredServer,
    make_certificates,
    make_operator,
    new_keys,
    run_server,
)
from commands import sagactl
from polling import wait_for

from sagactl.system.connection import CONNECTION_FILE_VARIABLES
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor

PASSWORD = "s3cret-pa55"
TOKEN = "t0ken-9f8e7d"


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--creds/--tls-ca set these in the (in-process) CLI's environment: undo that after each test.

    `delenv` of an absent variable records nothing to undo, so each is set first (recording its
    absence or its value) and then removed: the undo restores exactly what was there before."""
    for variable in CONNECTION_FILE_VARIABLES:
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_users(tmp_path: Path, certificates: Certificates) -> Iterator[SecuredServer]:
    settings = (f'tls {{ cert_file: "{certificates.cert}", key_file: "{certificates.key}" }}\n'
                f'authorization {{ users: [ {{ user: alice, password: "{PASSWORD}" }} ] }}')
    yield from run_server(tmp_path / "tls-users", settings)


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[SecuredServer]:
    yield from run_server(tmp_path / "token", f'authorization {{ token: "{TOKEN}" }}')


@pytest.fixture(scope="module")
def operator() -> Operator:
    return make_operator()


@pytest.fixture
def creds_server(tmp_path: Path, operator: Operator) -> Iterator[SecuredServer]:
    yield from run_server(tmp_path / "creds", operator.server_settings())


# What the server logs for each connection that failed: a password, token or creds it refused, or
# a client that refused its certificate (a handshake cut off, EOF). Not the "connection reset" of
# a port probe.
REFUSAL = re.compile(r"authentication error|TLS handshake error: EOF")


def refusals(server: SecuredServer) -> int:
    log = server.folder / "server.log"
    return sum(1 for line in log.read_text(errors="replace").splitlines() if REFUSAL.search(line)) if log.exists() else 0


def refused(server: SecuredServer, state: StateDir, *args: str):  # type: ignore[no-untyped-def]
    """`sagactl ARGS` against `server`, with `.attempts`: how many connections the server refused
    meanwhile, which shows whether the CLI gave up at the refusal instead of retrying."""
    before = refusals(server)
    result = sagactl(state, *args)
    # The server may write its line just after the client saw the refusal: wait for it.
    wait_for(lambda: refusals(server) > before, timeout=10, what="the server to log the refusal")
    result.attempts = refusals(server) - before  # type: ignore[attr-defined]
    return result


def everything_printed_and_logged(state: StateDir, *results) -> str:  # type: ignore[no-untyped-def]
    logs = "".join(p.read_text(errors="replace") for p in state.logs_dir.glob("*.log")) if state.logs_dir.exists() else ""
    return logs + "".join(r.output for r in results)


def assert_one_line_failure(result, *expected: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(text in lines[0] for text in expected), lines[0]
    # Without the give-up (broker.refused_for_good) the CLI makes its whole budget of 4 attempts,
    # a daemon retries for ever; nats-py may have a second one under way when the first is refused.
    assert result.attempts <= 2, f"{result.attempts} connections refused: the CLI retried a refusal"


def run_system(state: StateDir, url: str, *options: str) -> None:
    """`up` against the secured server, one sale, `status`; then prove no secret leaked."""
    try:
        up = sagactl(state, "up", "--nats-url", url, *options)
        assert up.exit_code == 0, up.output
        # Later commands find the server, its credentials and CA through the state directory.
        sale = sagactl(state, "submit", "--product-id", "1", "--user-id", "1", "--value", "20.00", "--quantity", "2", "--wait")
        assert sale.exit_code == 0 and "FINALIZED" in sale.stdout, sale.output
        status = sagactl(state, "status", "--json")
        assert status.exit_code == 0 and json.loads(status.stdout)["nats_reachable"], status.output
    finally:
        Supervisor(state).down()
    shown = everything_printed_and_logged(state, up, sale, status)
    assert PASSWORD not in shown and TOKEN not in shown


def test_user_and_password_over_tls_with_a_ca(state: StateDir, tls_users: SecuredServer, certificates: Certificates) -> None:
    run_system(state, f"nats://alice:{PASSWORD}@{tls_users.address}", "--tls-ca", str(certificates.ca))


@pytest.mark.parametrize(
    ("userinfo", "with_ca", "expected"),
    [
        (f"alice:wrong-{PASSWORD}@", True, "Authorization Violation"),
        ("", True, "Authorization Violation"),
        (f"alice:{PASSWORD}@", False, "certificate verify failed"),
    ],
    ids=["wrong-password", "no-credentials", "no-ca"],
)
def test_refused_credentials_fail_in_one_line(
    state: StateDir, tls_users: SecuredServer, certificates: Certificates, userinfo: str, with_ca: bool, expected: str
) -> None:
    options = ["--tls-ca", str(certificates.ca)] if with_ca else []
    url = f"nats://{userinfo}{tls_users.address}"
    up = refused(tls_users, state, "up", "--nats-url", url, *options)
    assert_one_line_failure(up, "cannot connect to NATS", expected)
    submit = refused(tls_users, state, "submit", "--nats-url", url, *options, "--product-id", "1", "--user-id", "1",
                     "--value", "1.00", "--quantity", "1")
    assert_one_line_failure(submit, expected)
    assert PASSWORD not in up.output + submit.output
    assert not Supervisor(state).processes() or not any(p.running for p in Supervisor(state).processes())


def test_refusal_is_one_line_on_the_real_stderr(state: StateDir, tls_users: SecuredServer, certificates: Certificates) -> None:
    """Out of process, so that whatever asyncio or nats-py print on stderr would show too."""
    for options in (["--tls-ca", str(certificates.ca)], []):
        result = subprocess.run(
            [str(Path(sys.executable).parent / "sagactl"), "up", "--state-dir", str(state.root),
             "--nats-url", f"nats://alice:wrong@{tls_users.address}", *options],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("sagactl: error: cannot connect to NATS at nats://***@127.0.0.1:")


def test_token_in_the_url(state: StateDir, token_server: SecuredServer) -> None:
    status = sagactl(state, "status", "--json", "--nats-url", f"nats://{TOKEN}@{token_server.address}")
    report = json.loads(status.stdout)
    assert report["nats_reachable"] is True and report["nats_url"] == f"nats://***@{token_server.address}"
    wrong = refused(token_server, state, "submit", "--nats-url", f"nats://nope@{token_server.address}", "--product-id", "1",
                    "--user-id", "1", "--value", "1.00", "--quantity", "1")
    assert_one_line_failure(wrong, "Authorization Violation")
    assert TOKEN not in status.output + wrong.output


def test_creds_file(state: StateDir, creds_server: SecuredServer, operator: Operator, tmp_path: Path) -> None:
    creds = operator.creds(tmp_path / "user.creds")
    run_system(state, f"nats://{creds_server.address}", "--creds", str(creds))


def test_wrong_or_missing_creds_file(state: StateDir, creds_server: SecuredServer, operator: Operator, tmp_path: Path) -> None:
    from nkeys import PREFIX_BYTE_ACCOUNT

    foreign = operator.creds(tmp_path / "foreign.creds", account=new_keys(PREFIX_BYTE_ACCOUNT))
    url = f"nats://{creds_server.address}"
    assert_one_line_failure(refused(creds_server, state, "up", "--nats-url", url, "--creds", str(foreign)), "Authorization Violation")
    assert_one_line_failure(refused(creds_server, state, "up", "--nats-url", url), "Authorization Violation")
    missing = sagactl(state, "up", "--nats-url", url, "--creds", str(tmp_path / "nope.creds"))
    assert missing.exit_code == 2 and "nope.creds" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


# The permissions docs/deploy.md gives the participants' user and the CLI's user.
PERMISSIONS = """authorization {
  users: [
    { user: participant, password: "%s",
      permissions: { publish: ["saga.>", "sagadlq.>", "$JS.API.>", "$JS.ACK.SAGA.>", "_INBOX.>"],
                     subscribe: ["sagactl.>", "_INBOX.>"] } },
    { user: operator, password: "%s",
      permissions: { publish: ["sagactl.>", "$JS.API.>"],
                     subscribe: ["saga.>", "_INBOX.>"] } }
  ]
}""" % (PASSWORD, PASSWORD)


@pytest.fixture
def permissioned(tmp_path: Path) -> Iterator[SecuredServer]:
    yield from run_server(tmp_path / "permissions", PERMISSIONS)


def test_the_documented_least_privilege_users_are_enough(state: StateDir, permissioned: SecuredServer) -> None:
    try:
        up = sagactl(state, "up", "--nats-url", f"nats://participant:{PASSWORD}@{permissioned.address}")
        assert up.exit_code == 0, up.output
        operator = ["--nats-url", f"nats://operator:{PASSWORD}@{permissioned.address}"]
        sale = sagactl(state, "submit", *operator, "--product-id", "1", "--user-id", "1", "--value", "20.00",
                       "--quantity", "2", "--wait")
        assert sale.exit_code == 0 and "FINALIZED" in sale.stdout, sale.output
        tables = json.loads(sagactl(state, "state", *operator, "--json").stdout)
        assert tables["inventory"]["inventories"][0]["quantity"] == 8
        report = json.loads(sagactl(state, "status", *operator, "--json").stdout)
        assert report["stream"]["messages"] == 4 and report["nats_reachable"]
        logs = "".join(p.read_text() for p in state.logs_dir.glob("*.log"))
        assert "permissions violation" not in logs.lower(), logs
    finally:
        Supervisor(state).down()
