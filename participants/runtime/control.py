"""A participant's control endpoints (core NATS request/reply, outside the stream).

`sagactl.<name>.ping` (every replica answers), `sagactl.discover` (who runs, what it handles),
`sagactl.<name>.state` and `.rows` (its tables), and one subject per request verb the
participant declares (such as the sale service's `submit`), answered by one replica of a queue
group.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

import orjson
from nats.aio.msg import Msg

from participants.contract import DISCOVER_SUBJECT, SUBJECTS, ContractError, control_subject
from participants.runtime.crashpoints import AFTER_COMMIT
from participants.runtime.database import table_rows
from participants.runtime.rows import read_page
from participants.runtime.settle import database_failed
from participants.runtime.transaction import Message, outbox_messages, run_request

if TYPE_CHECKING:
    from participants.runtime.daemon import ParticipantDaemon


class ControlEndpoints:
    """Answers the control subjects of the daemon it serves (its database, relay and connection)."""

    def __init__(self, daemon: "ParticipantDaemon") -> None:
        self.daemon = daemon
        self.name = daemon.participant.name

    async def subscribe(self) -> None:
        nc = self.daemon.nc
        assert nc is not None
        name = self.name
        await nc.subscribe(control_subject(name, "ping"), cb=self.on_ping)
        await nc.subscribe(DISCOVER_SUBJECT, cb=self.on_discover)
        await nc.subscribe(control_subject(name, "state"), queue=name, cb=self.on_state)
        await nc.subscribe(control_subject(name, "rows"), queue=name, cb=self.on_rows)
        for verb in self.daemon.participant.requests:
            await nc.subscribe(control_subject(name, verb), queue=name, cb=self.on_request)

    async def on_ping(self, msg: Msg) -> None:
        # `sagactl status` and `check` call a process healthy only when it says it consumes.
        body = {"participant": self.name, "replica": self.daemon.settings.replica, "pid": os.getpid(),
                "metrics_url": self.daemon.metrics.url,
                "connected": bool(self.daemon.nc and self.daemon.nc.is_connected), "consuming": self.daemon.consuming}
        await msg.respond(orjson.dumps(body))

    async def on_discover(self, msg: Msg) -> None:
        """Say who we are; the event types this process knows let a CLI show events it never imported."""
        participant = self.daemon.participant
        body = {
            "participant": self.name,
            "replica": self.daemon.settings.replica,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "handles": sorted(participant.handlers),
            "requests": sorted(participant.requests),
            "tables": [t.__tablename__ for t in participant.tables],  # type: ignore[attr-defined]
            "event_types": dict(SUBJECTS),
            "metrics_url": self.daemon.metrics.url,
        }
        await msg.respond(orjson.dumps(body))

    async def on_state(self, msg: Msg) -> None:
        from sqlmodel import Session

        if self.daemon.simulation is not None:
            await msg.respond(orjson.dumps({"participant": self.name, "tables": {}, "raw": True}))
            return
        try:
            with Session(self.daemon.engine) as session:
                tables = {t.__tablename__: table_rows(session, t) for t in self.daemon.participant.tables}  # type: ignore[attr-defined]
                session.rollback()
            reply = {"participant": self.name, "tables": tables}
        except Exception as exc:  # a locked or failing database: say so instead of leaving the caller to time out
            reply = {"error": f"{self.name} could not read its tables: {type(exc).__name__}: {exc}"}
        await msg.respond(orjson.dumps(reply))

    async def on_rows(self, msg: Msg) -> None:
        daemon = self.daemon
        try:
            body = orjson.loads(msg.data)
            limit = daemon.nc.max_payload // 2  # type: ignore[union-attr]
            reply = read_page(daemon.engine, daemon.participant.tables, body if isinstance(body, dict) else {}, limit)
        except (ContractError, orjson.JSONDecodeError) as exc:
            reply = orjson.dumps({"error": str(exc)})
        except Exception as exc:
            reply = orjson.dumps({"error": f"{self.name} could not read rows: {type(exc).__name__}: {exc}"})
        await msg.respond(reply)

    async def on_request(self, msg: Msg) -> None:
        daemon = self.daemon
        verb = msg.subject.rsplit(".", 1)[1]
        started = time.perf_counter()
        messages: list[Message] = []
        try:
            body = orjson.loads(msg.data)
            if not isinstance(body, dict):
                raise ContractError("request body is not a JSON object")
            if daemon.simulation is not None:
                reply, emitted = daemon.simulation.request(verb, body)
                messages = outbox_messages(emitted)
            else:
                reply, emitted, messages = run_request(daemon.db.get(), daemon.participant.requests[verb], body)
            daemon.metrics.requested(emitted)
            if daemon.tracing.enabled and emitted:
                daemon.tracing.requested(msg.headers, verb, emitted, time.perf_counter() - started)
        except (ContractError, orjson.JSONDecodeError) as exc:
            reply = {"error": str(exc)}
        except Exception as exc:
            daemon.db.reset(reopen=database_failed(exc))
            daemon.log.write("request_failed", request=verb, error=repr(exc))
            reply = {"error": f"{self.name} could not handle {verb}: {exc}"}
        await msg.respond(orjson.dumps(reply))
        if messages:
            daemon.crash.reach(AFTER_COMMIT)
            daemon.relay.submit(messages)  # type: ignore[union-attr]
