"""How sagactl reaches its servers: NATS credentials and TLS files, and database URLs.

Secrets (passwords, tokens in URLs) are never printed: URLs are shown through `redact`
(NATS) and `redact_db_url` (databases).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sagactl.errors import Unavailable, UsageError

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


def check_reachable(urls: list[str]) -> None:
    """Connect once and leave: a wrong URL, credential or CA fails here in one line, not in a log."""
    from participants.runtime.broker import BrokerUnavailable, connect

    async def probe() -> None:
        client = await connect(urls, "sagactl-up", reconnect_forever=False)
        await client.close()

    try:
        asyncio.run(probe())
    except BrokerUnavailable as exc:
        raise Unavailable(str(exc)) from None


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
