"""Connecting to NATS and declaring the JetStream objects every process relies on.

The CLI and the participants both call these, so the stream and its settings have one home.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Awaitable, Callable

import nats
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


class BrokerUnavailable(Exception):
    """NATS could not be reached or refused us; the message says which server and why."""


def redact(url: str) -> str:
    """A NATS URL safe to print: credentials replaced by ***."""
    if "@" not in url:
        return url
    scheme, _, rest = url.rpartition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}" if scheme else "***@" + rest.split("@", 1)[1]


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
    """Connect to the first reachable server of `urls`; daemons keep reconnecting for ever."""
    creds = creds or os.environ.get("SAGACTL_NATS_CREDS") or None
    tls_ca = tls_ca or os.environ.get("SAGACTL_TLS_CA") or None
    options: dict[str, Any] = {}
    if creds:
        options["user_credentials"] = creds
    if tls_ca:
        context = ssl.create_default_context(cafile=tls_ca)
        options["tls"] = context
    if on_event is not None:

        async def _disconnected() -> None:
            await on_event("disconnected")

        async def _reconnected() -> None:
            await on_event("reconnected")

        async def _error(exc: Exception) -> None:
            await on_event(f"error: {exc}")

        options.update(disconnected_cb=_disconnected, reconnected_cb=_reconnected, error_cb=_error)
    else:

        async def _quiet(exc: Exception) -> None:
            return None

        options["error_cb"] = _quiet
    try:
        return await nats.connect(
            servers=urls,
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1 if reconnect_forever else 3,
            reconnect_time_wait=0.5,
            **options,
        )
    except Exception as exc:  # nats-py raises several unrelated types for the same failure
        where = ", ".join(redact(u) for u in urls)
        raise BrokerUnavailable(f"cannot connect to NATS at {where}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("nats: ", "")


def stream_config(
    replicas: int = 1, max_age_s: float = 0, max_bytes: int = -1, duplicate_window_s: float = DUPLICATE_WINDOW_S
) -> StreamConfig:
    """The saga history: file storage, limits retention, so every event stays readable."""
    return StreamConfig(
        name=STREAM,
        subjects=STREAM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
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
    """Create the saga stream and the dead-letter stream unless they exist (never reconfigure)."""
    for config in (stream_config(replicas, max_age_s, max_bytes, duplicate_window_s), dead_letter_config(replicas)):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)


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
        # No server-side limit: the runtime decides (participants/runtime/retry.py). It
        # dead-letters poison on its last allowed delivery and retries a locked or unreachable
        # database for as long as it lasts; the server must never silently stop delivering.
        max_deliver=-1,
        filter_subjects=subjects,
        max_ack_pending=max_ack_pending,
    )


async def ensure_consumer(js: JetStreamContext, config: ConsumerConfig) -> None:
    """Create the durable consumer, or update it in place when its filters or retry settings changed."""
    try:
        info = await js.consumer_info(STREAM, config.durable_name or "")
    except NotFoundError:
        await js.add_consumer(STREAM, config)
        return
    current = info.config
    if (
        sorted(current.filter_subjects or [current.filter_subject or ""]) != sorted(config.filter_subjects or [])
        or current.ack_wait != config.ack_wait
        or (current.max_deliver or -1) != config.max_deliver
    ):
        await js.add_consumer(STREAM, config)
