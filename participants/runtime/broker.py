"""Connecting to NATS and declaring the JetStream objects every process relies on.

The CLI and the participants both call these, so the stream and its settings have one home.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from typing import Any, Awaitable, Callable

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from participants.contract import (
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    STREAM,
    STREAM_SUBJECTS,
)

# JetStream drops a republished message with the same Nats-Msg-Id inside this window; the
# participants' inboxes catch the copies that arrive later or under another id.
DUPLICATE_WINDOW_S = 120.0
# `sagactl status` warns when the SAGA stream holds more than this fraction of its max bytes.
STREAM_FULL_WARNING = 0.8


# asyncio warns on stderr when a server closes a TLS connection that it refused; the refusal
# itself is reported in one line by `connect`, so this warning would only be a second line.
logging.getLogger("asyncio").addFilter(lambda record: "eof_received" not in record.getMessage())


class BrokerUnavailable(Exception):
    """NATS could not be reached or refused us; the message says which server and why."""


def redact(url: str) -> str:
    """A NATS URL safe to print: credentials replaced by ***."""
    if "@" not in url:
        return url
    scheme, _, rest = url.rpartition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}" if scheme else "***@" + rest.split("@", 1)[1]


class _RefusedForGood(Exception):
    """Raised from the error callback to stop nats-py retrying a server that refused us."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def refused_for_good(exc: BaseException) -> bool:
    """Wrong or missing credentials, or a TLS failure: retrying cannot help."""
    if isinstance(exc, (ssl.SSLError, nats.errors.AuthorizationError)):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("authorization", "authentication", "no ssl context", "tls", "permissions violation"))


def connection_files(creds: str | None, tls_ca: str | None) -> tuple[str | None, str | None]:
    """The credentials file and CA file to use (options, else environment), checked to exist."""
    creds = creds or os.environ.get("SAGACTL_NATS_CREDS") or None
    tls_ca = tls_ca or os.environ.get("SAGACTL_TLS_CA") or None
    for what, path in (("credentials file", creds), ("TLS CA file", tls_ca)):
        if path and not os.path.isfile(path):
            raise BrokerUnavailable(f"{what} {path} does not exist")
    return creds, tls_ca


async def connect(
    urls: list[str],
    name: str,
    *,
    reconnect_forever: bool = True,
    creds: str | None = None,
    tls_ca: str | None = None,
    on_event: Callable[[str], Awaitable[None]] | None = None,
    connect_timeout: float = 2.0,
) -> Client:
    """Connect to the first reachable server of `urls`; daemons keep reconnecting for ever.

    Credentials come from the URL (`nats://user:password@host`, `nats://token@host`), a `.creds`
    file (`creds`, env SAGACTL_NATS_CREDS) and a CA for TLS (`tls_ca`, env SAGACTL_TLS_CA). A
    server that refuses them fails the connect at once, even for a daemon: waiting cannot help.
    """
    creds, tls_ca = connection_files(creds, tls_ca)
    options: dict[str, Any] = {}
    if creds:
        options["user_credentials"] = creds
    if tls_ca:
        options["tls"] = ssl.create_default_context(cafile=tls_ca)
    connecting = True
    last_error: list[BaseException] = []

    async def _error(exc: Exception) -> None:
        if connecting:
            last_error[:] = [exc]
            if refused_for_good(exc):
                raise _RefusedForGood(exc)
            return
        if on_event is not None:
            await on_event(f"error: {describe(exc)}")

    options["error_cb"] = _error
    if on_event is not None:

        async def _disconnected() -> None:
            await on_event("disconnected")

        async def _reconnected() -> None:
            await on_event("reconnected")

        async def _closed() -> None:
            await on_event("closed")

        options.update(disconnected_cb=_disconnected, reconnected_cb=_reconnected, closed_cb=_closed)
    client = Client()
    try:
        await client.connect(
            servers=urls,
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1 if reconnect_forever else 3,
            reconnect_time_wait=0.5,
            **options,
        )
    except Exception as exc:  # nats-py raises several unrelated types for the same failure
        cause = exc.cause if isinstance(exc, _RefusedForGood) else (last_error[0] if last_error else exc)
        try:  # nats-py's close can wait for ever on a transport whose TLS handshake failed
            await asyncio.wait_for(client.close(), timeout=1.0)
        except Exception:
            pass
        where = ", ".join(redact(u) for u in urls)
        raise BrokerUnavailable(f"cannot connect to NATS at {where}: {describe(cause)}") from None
    connecting = False
    return client


def describe(exc: BaseException) -> str:
    """One line about a connection or JetStream failure, without the nats-py prefix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {exc.verify_message} (is the server's CA given with --tls-ca?)"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.replace("nats: ", "").split())


def stream_config(
    replicas: int = 1, max_age_s: float = 0, max_bytes: int = -1, duplicate_window_s: float = DUPLICATE_WINDOW_S
) -> StreamConfig:
    """The saga history: file storage, limits retention, so every event stays readable.

    When full it refuses new events (DiscardPolicy NEW: the publisher gets an error and retries)
    rather than dropping old ones a participant that is down may not have read yet;
    `sagactl status` warns before that (STREAM_FULL_WARNING).
    """
    return StreamConfig(
        name=STREAM,
        subjects=STREAM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=max_age_s or None,
        max_bytes=max_bytes,
        duplicate_window=duplicate_window_s,
        num_replicas=replicas,
    )


def dead_letter_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_SUBJECT_ROOT}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext, replicas: int = 1, max_age_s: float = 0, max_bytes: int = -1,
    duplicate_window_s: float = DUPLICATE_WINDOW_S,
) -> None:
    """Create the saga stream and the dead-letter stream unless they exist (never reconfigure,
    except a SAGA stream of an older version that still discards old events when full)."""
    for config in (stream_config(replicas, max_age_s, max_bytes, duplicate_window_s), dead_letter_config(replicas)):
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            continue
        if config.name == STREAM and info.config.discard != DiscardPolicy.NEW:
            info.config.discard = DiscardPolicy.NEW
            await js.update_stream(info.config)


def consumer_config(
    durable: str, subjects: list[str], ack_wait_s: float, max_ack_pending: int = 4096, only_new: bool = False
) -> ConsumerConfig:
    """A participant's durable pull consumer, filtered to the events it handles.

    The policy only matters when the consumer is first created: a participant that joins a
    running system replays the stream's history (ALL) unless it asked for new events only.
    """
    return ConsumerConfig(
        durable_name=durable,
        name=durable,
        deliver_policy=DeliverPolicy.NEW if only_new else DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        # No server-side limit: the runtime decides (participants/runtime/settle.py). It
        # dead-letters poison on its last allowed delivery and retries a locked or unreachable
        # database for as long as it lasts; the server must never silently stop delivering.
        max_deliver=-1,
        filter_subjects=subjects,
        max_ack_pending=max_ack_pending,
    )


async def ensure_consumer(js: JetStreamContext, config: ConsumerConfig) -> bool:
    """Create the durable consumer if it is missing; else change only what really differs (its
    filters, ack wait or max deliveries) and keep the rest as it is on the server: replicas
    share the consumer, and each one starting must not reset it. True when it wrote the config."""
    try:
        info = await js.consumer_info(STREAM, config.durable_name or "")
    except NotFoundError:
        await js.add_consumer(STREAM, config)
        return True
    current = info.config
    changes: dict[str, Any] = {}
    if sorted(current.filter_subjects or [current.filter_subject or ""]) != sorted(config.filter_subjects or []):
        changes.update(filter_subject=None, filter_subjects=config.filter_subjects)
    if current.ack_wait is None or abs(current.ack_wait - (config.ack_wait or 0)) > 1e-6:
        changes["ack_wait"] = config.ack_wait
    if (current.max_deliver or -1) != config.max_deliver:
        changes["max_deliver"] = config.max_deliver
    if not changes:
        return False
    await js.add_consumer(STREAM, dataclasses.replace(current, **changes))
    return True
