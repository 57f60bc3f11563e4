"""How sagactl reaches its servers: NATS credentials and TLS files, and database URLs.

Secrets (passwords, tokens in URLs) are never printed: URLs are shown through `redact`
(NATS) and `redact_db_url` (databases).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sagactl.errors import Unavailable, UsageError

if TYPE_CHECKING:  # nats is imported only by the commands that connect
    from nats.aio.client import Client as NATS

# The environment variables naming a `.creds` file and a TLS CA (read by broker.connect, and
# inherited by the participants that `sagactl up` starts).
CONNECTION_FILE_VARIABLES = ("SAGACTL_NATS_CREDS", "SAGACTL_TLS_CA")


def use_connection_files(creds: Path | None, tls_ca: Path | None) -> None:
    """Make `--creds` and `--tls-ca` apply to this process's connections and the participants it starts."""
    for variable, path, what in (("SAGACTL_NATS_CREDS", creds, "--creds"), ("SAGACTL_TLS_CA", tls_ca, "--tls-ca")):
        if path is None:
            continue
        if not path.is_file():
            raise UsageError(f"{what} {path}: no such file")
        os.environ[variable] = str(path.resolve())


async def connect(urls: list[str], name: str) -> NATS:
    """A connection for one command, or `Unavailable` (exit 3) in sagactl's words: the one place
    where a broker that cannot be reached becomes the user's error."""
    from participants.runtime.broker import BrokerUnavailable
    from participants.runtime.broker import connect as broker_connect

    try:
        return await broker_connect(urls, name, reconnect_forever=False)
    except BrokerUnavailable as exc:
        raise Unavailable(str(exc)) from None


def check_reachable(urls: list[str]) -> None:
    """Connect once and leave: a wrong URL, credential or CA fails here in one line, not in a log."""

    async def probe() -> None:
        client = await connect(urls, "sagactl-up")
        await client.close()

    asyncio.run(probe())


def parse_db_urls(specs: list[str]) -> dict[str, str]:
    """`sale=postgresql+psycopg://...` -> {"sale": URL}; a usage error for anything else."""
    result = {}
    for spec in specs:
        name, _, url = spec.partition("=")
        if not name.isidentifier() or not url.startswith(("sqlite:", "postgresql")):
            raise UsageError(f"--db-url takes NAME=URL with a sqlite:/// or postgresql+psycopg:// URL, not {redact_db_url(spec)!r}")
        if url.startswith("postgresql"):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise UsageError("PostgreSQL needs psycopg: pip install 'sagactl[postgres]'") from None
        result[name] = url
    return result


def redact_db_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ***."""
    head, sep, rest = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.rpartition("//")
    user = credentials.split(":", 1)[0]
    return f"{scheme}//{user}:***@{rest}"
