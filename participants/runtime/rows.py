"""The `rows` control request: one of the participant's tables, a page at a time.

`state` answers with every row in one message, which stops working once a table outgrows the
server's max_payload (1 MB: about 9,000 sales). `rows` pages by primary key, so `sagactl check`
can read a table of any size: `{"table": "sales", "after": 0, "limit": 5000}` answers
`{"columns": [...], "rows": [[...], ...], "next": <last key, or null at the end>}`.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson
from sqlalchemy import Engine, inspect
from sqlmodel import Session, SQLModel, select

from participants.contract import ContractError
from participants.runtime.database import plain

MAX_LIMIT = 10_000


def read_page(engine: Engine, tables: Sequence[type[SQLModel]], body: dict[str, Any], max_bytes: int) -> bytes:
    """The encoded reply: as many rows after `after` as `limit` and `max_bytes` allow."""
    by_name = {t.__tablename__: t for t in tables}  # type: ignore[attr-defined]
    table = by_name.get(body.get("table"))  # type: ignore[arg-type]
    if table is None:
        raise ContractError(f"unknown table {body.get('table')!r}; tables: {', '.join(sorted(by_name))}")
    after, limit = body.get("after", 0), body.get("limit", 1000)
    if not isinstance(after, int) or not isinstance(limit, int) or isinstance(after, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ContractError(f"rows needs an integer after and a limit between 1 and {MAX_LIMIT}")
    mapper = inspect(table)
    key = mapper.primary_key[0]
    columns = [c.key for c in mapper.columns]
    with Session(engine) as session:
        found = session.exec(select(table).where(key > after).order_by(key).limit(limit)).all()
        rows = [[plain(getattr(row, name)) for name in columns] for row in found]
        session.rollback()
    position = columns.index(key.key)
    while True:
        more = len(rows) == limit or len(rows) < len(found)
        reply = orjson.dumps({"columns": columns, "rows": rows, "next": rows[-1][position] if rows and more else None})
        if len(reply) <= max_bytes or len(rows) <= 1:
            return reply
        rows = rows[: len(rows) // 2]  # too big for one message: a shorter page, the caller asks again
