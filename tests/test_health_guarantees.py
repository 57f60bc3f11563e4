"""Size and health (issue 14, items 1, 6, 9, 10): what keeps a participant consuming, and what says so.

Each test injects the fault for real against a real nats-server and a real database: an event
too large to copy, a connection closed for good, a stopped process, a deleted consumer, a
locked or unwritable database, a full stream, a lost PostgreSQL connection, a stale pid file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StreamConfig
from nats.errors import MaxPayloadError
from nats.js.errors import APIError
from sqlmodel import Field, Session, SQLModel
from typer.testing import CliRunner

from participants.contract import CREATED_SALE, DEAD_LETTER_STREAM, STREAM, STREAM_SUBJECTS, Event, new_event, parse_sale
from participants.runtime import broker
from participants.runtime.daemon import ParticipantDaemon
from participants.runtime.database import create_schema, make_engine, utc_datetime
from participants.runtime.jetstream import PubAcks
from participants.runtime.loader import BUILT_IN, load_participant
from participants.runtime.participant import Participant
from participants.runtime.settings import Settings
from participants.runtime.settle import BY_REFERENCE, is_transient
from participants.runtime.transaction import INSERT_INBOX
from sagactl.check import run_checks
from sagactl.cli.main import app
from sagactl.client import SagaClient
from sagactl.streams.deadletters import list_dead_letters
from sagactl.system.health import ping_replicas
from sagactl.system.processes import pid_alive, read_pid
from sagactl.system.statedir import StateDir
from sagactl.system.supervisor import Supervisor
from sagactl.testing.nats import NatsServer
from tests.driving import eventually
from tests.test_participant_faults import client_for, created, publish, stock


@pytest.fixture
def lone_participant(nats_url: str, state: StateDir) -> Iterator[Callable[..., int]]:
    """Start one built-in participant as `sagactl up --nats-url` does (so `status` knows it): `start("inventory", SAGACTL_X="1")`."""
    supervisor = Supervisor(state)

    def start(name: str, **env: str) -> int:
        supervisor.up(nats_url, participants={name: BUILT_IN[name]}, extra_env={name: env})
        return int(read_pid(state.pid_file(name)) or 0)

    try:
        yield start
    finally:
        supervisor.down(kill=True)


def logged(state: StateDir, what: str, participant: str = "inventory", **match: Any) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in state.log_file(participant).read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["what"] == what and all(line.get(k) == v for k, v in match.items())]


def status(state: StateDir) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["status", "--json", "--state-dir", str(state.root)])
    return result.exit_code, json.loads(result.stdout)


async def pings(client: SagaClient, name: str = "inventory") -> list[dict[str, Any]]:
    return await ping_replicas(client.nc, [name], expected=1)


# -- item 1: an oversized event, a connection closed for good, health that is true ---------------
async def test_an_event_too_large_to_copy_is_dead_lettered_by_reference_and_consuming_goes_on(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    pid = lone_participant("inventory")
    client = await client_for(nats_url)
    try:
        huge = b"z" * (client.nc.max_payload - 126)  # the stream stores it; a copy with headers would not fit
        stored = await publish(client, "saga.sale.created", huge)
        good = created(2)
        await publish(client, good.subject, good.to_bytes(), good.event_id)
        js = client.nc.jetstream()

        async def parked() -> list[Any]:
            return await list_dead_letters(js)

        [letter] = await eventually(parked, "the oversized event in the dead-letter list")
        raw = await js.get_msg(DEAD_LETTER_STREAM, letter.seq)
        assert raw.headers and raw.headers[BY_REFERENCE] and raw.headers["Sagactl-Size"] == str(len(huge))
        assert letter.stream_seq == stored.seq and letter.data == b"" and "poison" in letter.error

        async def applied() -> bool:
            return await stock(client) == 8

        await eventually(applied, "the event behind the oversized one to be applied")
        [reply] = await pings(client)
        assert pid_alive(pid) and reply["connected"] and reply["consuming"]
    finally:
        await client.close()


async def test_a_participant_whose_nats_connection_closed_for_good_stops_with_an_error(
    nats_url: str, tmp_path: Path
) -> None:
    settings = Settings(nats_urls=[nats_url], db_url=f"sqlite:///{tmp_path / 'inventory.db'}", state_dir=tmp_path)
    daemon = ParticipantDaemon(load_participant(BUILT_IN["inventory"]), settings)
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(daemon.serve())
    try:
        async def ready() -> bool:
            return daemon.puller is not None and daemon.nc is not None and daemon.nc.is_connected

        await eventually(ready, "the daemon to consume", timeout=30)
        await daemon.nc.close()  # type: ignore[union-attr]  # what nats-py does after a protocol error
        with pytest.raises(broker.BrokerUnavailable, match="closed for good"):  # run() exits 3 on it
            await asyncio.wait_for(serving, timeout=30)
    finally:
        serving.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def test_status_calls_a_running_but_stopped_process_unhealthy(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    pid = lone_participant("inventory")
    code, report = status(state)
    assert code == 0 and report["healthy"]
    os.kill(pid, signal.SIGSTOP)  # alive, its pid file right, but it answers nothing
    try:
        code, report = status(state)
        [process] = report["participants"]
        assert code == 1 and not report["healthy"]
        assert process["running"] and not process["healthy"] and process["problem"] == "did not answer its ping"
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_status_and_check_call_a_connected_process_without_its_consumer_unhealthy(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    lone_participant("inventory")
    client = await client_for(nats_url)
    try:
        await client.nc.jetstream().delete_consumer(STREAM, "inventory")

        async def not_consuming() -> list[dict[str, Any]]:
            return [r for r in await pings(client) if r["connected"] and not r["consuming"]]

        await eventually(not_consuming, "inventory to say it no longer consumes", timeout=30)
        code, report = await asyncio.to_thread(status, state)
        assert code == 1 and report["participants"][0]["problem"] == "connected but not consuming"
        report_check = await run_checks(client)
        assert [v.detail for v in report_check.violations if v.check == "unhealthy"] == ["connected but not consuming"]
    finally:
        await client.close()


# -- item 6: the participant's own database failing ---------------------------------------------
def test_a_read_only_database_is_transient() -> None:
    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorcode = 8  # type: ignore[attr-defined]
    assert is_transient(error)


async def test_a_locked_database_never_blocks_the_event_loop_and_nothing_is_dead_lettered(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    lone_participant("inventory", SAGACTL_MAX_DELIVER="2")  # the default busy timeout
    client = await client_for(nats_url)
    lock = sqlite3.connect(Path(state.root) / "inventory.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        events = [created(n, quantity=1) for n in (1, 2, 3)]
        for event in events:
            await publish(client, event.subject, event.to_bytes(), event.event_id)
        slowest = 0.0
        while len(logged(state, "failed", event_id=events[0].event_id)) < 3:  # naked, redelivered, naked ...
            started = time.monotonic()
            replies = await ping_replicas(client.nc, ["inventory"], expected=1, wait_s=5)
            slowest = max(slowest, time.monotonic() - started)
            assert replies, "a ping went unanswered for 5 s while the database was locked"
            assert len(logged(state, "dead_letter")) == 0
        assert slowest < 2.5  # one busy timeout (1 s) at most, never 30 s per event
        lock.execute("ROLLBACK")

        async def applied() -> bool:
            return await stock(client) == 7

        await eventually(applied, "all three events after the lock is released")
        assert await list_dead_letters(client.nc.jetstream()) == []
    finally:
        lock.close()
        await client.close()


async def test_an_unwritable_database_file_is_retried_and_works_again_once_fixed(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    lone_participant("inventory", SAGACTL_MAX_DELIVER="2")
    db = Path(state.root) / "inventory.db"
    files = [str(db), f"{db}-wal"]  # as root, chmod would not stop a write: make the files immutable
    if subprocess.run(["chattr", "+i", *files], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    client = await client_for(nats_url)
    try:
        event = created(1)
        await publish(client, event.subject, event.to_bytes(), event.event_id)

        async def retried() -> list[dict[str, Any]]:
            failures = logged(state, "failed", event_id=event.event_id)
            return failures if len(failures) >= 3 else []

        await eventually(retried, "three failed deliveries while the file is unwritable")
        assert await list_dead_letters(client.nc.jetstream()) == []
        subprocess.run(["chattr", "-i", *files], check=True)

        async def applied() -> bool:
            return await stock(client) == 8

        await eventually(applied, "the event to be applied once the file is writable again")
        assert await list_dead_letters(client.nc.jetstream()) == []
    finally:
        subprocess.run(["chattr", "-i", *files], capture_output=True)
        await client.close()


# -- item 9: a full stream refuses new events, and status warns before ----------------------------
async def test_a_full_stream_refuses_new_events_and_status_warns_before(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    client = await client_for(nats_url)
    try:
        js = client.nc.jetstream()
        # A stream of an older version: it would drop the oldest events when full.
        await js.add_stream(StreamConfig(name=STREAM, subjects=STREAM_SUBJECTS, discard=DiscardPolicy.OLD, max_bytes=64_000))
        lone_participant("inventory")
        assert (await js.stream_info(STREAM)).config.discard == DiscardPolicy.NEW
        assert (await asyncio.to_thread(status, state))[1]["warnings"] == []
        while (await js.stream_info(STREAM)).state.bytes < 0.85 * 64_000:
            await js.publish("saga.filler.test", b"x" * 2_000)
        code, report = await asyncio.to_thread(status, state)
        [warning] = report["warnings"]
        assert code == 0 and "% full" in warning and "refuses new events" in warning
        with pytest.raises(APIError, match="maximum bytes"):
            for _ in range(20):
                await js.publish("saga.filler.test", b"x" * 2_000)
        assert (await js.stream_info(STREAM)).state.first_seq == 1  # nothing old was discarded
    finally:
        await client.close()


# -- item 10: smaller faults ----------------------------------------------------------------------
async def test_the_first_submit_after_the_database_connection_was_lost_succeeds(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    from backends import PostgresBackend, postgres_server_url

    backend = PostgresBackend(postgres_server_url())
    try:
        url = backend.url("sale")
        lone_participant("sale", SAGACTL_DB_URL_SALE=url)
        client = await client_for(nats_url)
        try:
            first = await client.submit(parse_sale(1, 1, "5.00", 1))
            database = backend.created["sale"]
            with backend._admin() as admin:  # PostgreSQL restarted, or its backends terminated
                pids = [row[0] for row in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                                        (database,)).fetchall()]
                assert pids
                admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))

                # The terminated sessions ended (the sale service's periodic deadline pass may
                # already have opened a new one: the kept connection is what must not be trusted).
                async def gone() -> bool:
                    left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
                    return left is not None and left[0] == 0

                await eventually(gone, "the sale service's sessions to end")
            second = await client.submit(parse_sale(1, 1, "5.00", 1))  # raises when the sale service refuses it
            assert second > first
            # Nothing on the connection failed first: the deadline pass (every 0.2 s) uses the kept
            # connection too, and unchecked it would fail there once and reopen it, which would
            # let the submit above pass without the check.
            assert not logged(state, "periodic_failed", "sale") and not logged(state, "request_failed", "sale")
        finally:
            await client.close()
    finally:
        Supervisor(state).down()
        backend.close()


class Claim(SQLModel, table=True):
    __tablename__ = "claims"
    sale_id: int = Field(primary_key=True)


def test_a_unique_violation_caused_by_a_racing_replica_is_not_the_events_failure(tmp_path: Path) -> None:
    from backends import PostgresBackend, postgres_server_url

    backend = PostgresBackend(postgres_server_url())  # SQLite serialises writers: no such race there
    url = backend.url("probe")
    racing = make_engine(url)

    def claim(event: Event, session: Session) -> None:
        session.get(Claim, event.sale_id)  # our transaction has begun
        # Another replica applies the same event and commits first; our insert then hits its row.
        with racing.begin() as other:
            other.execute(Claim.__table__.insert().values(sale_id=event.sale_id))  # type: ignore[attr-defined]
            INSERT_INBOX.run_many(other, [{"event_id": event.event_id, "event_type": event.type,
                                           "sale_id": event.sale_id, "at": utc_datetime(), "seq": 10}])
        session.add(Claim(sale_id=event.sale_id))
        session.flush()

    probe = Participant("probe", tables=[Claim], handlers={CREATED_SALE: claim})
    create_schema(racing, probe.all_tables)
    daemon = ParticipantDaemon(probe, Settings(nats_urls=["nats://127.0.0.1:1"], db_url=url, state_dir=tmp_path, max_deliver=5))
    try:
        event = new_event(CREATED_SALE, 7, parse_sale(1, 1, "5.00", 1), "sale")
        last_delivery = Msg(None, subject=event.subject, reply="$JS.ACK.SAGA.probe.5.10.10.1700000000000000000.0",  # type: ignore[arg-type]
                            data=event.to_bytes())
        verdict, _ = daemon.batches._apply_one(last_delivery, event)
        assert verdict.action == "retry"  # redelivered, it is a duplicate; never dead-lettered
    finally:
        daemon.engine.dispose()
        racing.dispose()
        backend.close()


async def test_after_nats_returns_unanswered_publishes_are_given_up_at_once(nats_server: NatsServer) -> None:
    nc = await broker.connect([nats_server.url], "pubacks-test")
    try:
        await broker.ensure_streams(nc.jetstream())
        pubacks = PubAcks(nc)
        await pubacks.start()
        assert await pubacks.publish_all([("saga.filler.a", b"1", "a-1")], timeout=5) == [True]
        pid = nats_server.pid
        assert pid
        os.kill(pid, signal.SIGSTOP)  # the server takes the publish but never answers
        publishing = asyncio.create_task(pubacks.publish_all([("saga.filler.a", b"2", "a-2")], timeout=40))

        async def written() -> bool:  # in the socket, not in the client's buffer (which a reconnect resends)
            return nc.pending_data_size == 0 and nc.stats["out_msgs"] >= 2

        await eventually(written, "the publish to leave the client", every=0.01)
        nats_server.restart(kill=True)
        started = time.monotonic()

        async def reconnected() -> bool:
            return nc.is_connected and nc.stats["reconnects"] >= 1

        await eventually(reconnected, "the client to reconnect", timeout=30)
        stored = await asyncio.wait_for(publishing, timeout=40)
        assert stored == [False] and time.monotonic() - started < 20  # not the whole 40 s PubAck timeout
    finally:
        await nc.close()


def test_participant_run_never_prints_the_database_password(state: StateDir, nats_url: str) -> None:
    secret = "s3cret-pw"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "sagactl"), "participant", "run", "inventory", "--state-dir", str(state.root),
         "--nats-url", nats_url, "--db-url", f"postgresql+psycopg://sagactl:{secret}@127.0.0.1:1/none"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 3 and "sagactl:***@127.0.0.1:1" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_a_pid_file_naming_another_program_is_not_trusted(state: StateDir) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state.make()
        state.nats_pid_file().write_text(str(stranger.pid))  # a stale file whose pid was reused
        state.pid_file("inventory").write_text(str(stranger.pid))
        supervisor = Supervisor(state)
        assert read_pid(state.nats_pid_file()) is None and supervisor.embedded_pid() is None
        supervisor.down()
        assert stranger.poll() is None  # `down` did not kill it
    finally:
        stranger.kill()
        stranger.wait()


async def test_a_starting_replica_changes_only_what_really_differs_in_the_shared_consumer(nats_url: str) -> None:
    nc = await broker.connect([nats_url], "consumer-test")
    try:
        js = nc.jetstream()
        await broker.ensure_streams(js)
        older = broker.consumer_config("inventory", ["saga.sale.created"], 30.0)
        older.max_ack_pending = 100  # tuned by the operator on the server
        await js.add_consumer(STREAM, older)
        config = broker.consumer_config("inventory", ["saga.payment.failed", "saga.sale.created"], 30.0)
        await broker.ensure_consumer(js, config)  # a new version handles one more event type
        current = (await js.consumer_info(STREAM, "inventory")).config
        assert sorted(current.filter_subjects or []) == ["saga.payment.failed", "saga.sale.created"]
        assert current.max_ack_pending == 100  # kept: the replica did not reset the rest
        assert await broker.ensure_consumer(js, config) is False  # the next replica writes nothing
    finally:
        await nc.close()


async def test_a_participant_whose_events_a_full_stream_refuses_publishes_them_once_there_is_room(
    nats_url: str, state: StateDir, lone_participant: Callable[..., int]
) -> None:
    client = await client_for(nats_url)
    try:
        js = client.nc.jetstream()
        await broker.ensure_streams(js, max_bytes=64_000)
        pid = lone_participant("inventory")
        os.kill(pid, signal.SIGSTOP)  # it takes the event only once the stream is full
        try:
            event = created(1)
            await publish(client, event.subject, event.to_bytes(), event.event_id)
            for size in (1_000, 10):  # to the last few bytes
                with pytest.raises(APIError, match="maximum bytes"):
                    for _ in range(1_000):
                        await js.publish("saga.filler.test", b"x" * size)
        finally:
            os.kill(pid, signal.SIGCONT)

        async def handled() -> list[dict[str, Any]]:
            return logged(state, "handled", event_id=event.event_id)

        await eventually(handled, "inventory to apply the event")
        subjects = (await js.stream_info(STREAM, subjects_filter=">")).state.subjects or {}
        assert "saga.inventory.updated" not in subjects  # refused: the stream is full
        await js.purge_stream(STREAM, subject="saga.filler.test")

        async def published() -> bool:
            info = await js.stream_info(STREAM, subjects_filter=">")
            return "saga.inventory.updated" in (info.state.subjects or {})

        await eventually(published, "the relay to publish UPDATED_INVENTORY once there is room")
    finally:
        await client.close()


async def test_an_event_too_large_to_publish_with_its_headers_is_refused_without_losing_the_connection(
    nats_url: str,
) -> None:
    nc = await broker.connect([nats_url], "pubacks-size-test")
    try:
        await broker.ensure_streams(nc.jetstream())
        pubacks = PubAcks(nc)
        await pubacks.start()
        too_large = b"z" * (nc.max_payload - 20)  # fits alone, not with its Nats-Msg-Id header
        with pytest.raises(MaxPayloadError):
            await pubacks.publish_all([("saga.filler.big", too_large, "big-1")], timeout=5)
        assert await pubacks.publish_all([("saga.filler.small", b"1", "small-1")], timeout=10) == [True]
        assert nc.is_connected and nc.stats["reconnects"] == 0
    finally:
        await nc.close()
