"""Time inventory's `apply_batch` in-process: batches of CREATED_SALE events on one kept connection.

    .venv/bin/python benchmarks/apply_batch.py sqlite 64 200
    .venv/bin/python benchmarks/apply_batch.py postgresql://postgres@127.0.0.1:5432/test 64 100

The second argument is the batch size, the third the number of batches timed (after 20 to warm
up). A PostgreSQL URL names a server whose role may create databases: the database
`sagactl_apply_batch` is made afresh for the run and dropped after it. Prints the wall time and
this process's CPU per event (the server's CPU is not counted).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url

from participants.builtin import inventory
from participants.contract import CREATED_SALE, Event, new_event, parse_sale
from participants.runtime.database import create_schema, make_engine, seed_once
from participants.runtime.transaction import apply_batch

DATABASE = "sagactl_apply_batch"


def main() -> None:
    target, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    admin = folder = None
    if target == "sqlite":
        folder = tempfile.mkdtemp(prefix="sagactl-apply-batch-")
        url = f"sqlite:///{folder}/inventory.db"
    else:
        import psycopg

        server = make_url(target).set(drivername="postgresql")
        admin = psycopg.connect(server.set(database="postgres").render_as_string(hide_password=False), autocommit=True)
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        url = server.set(database=DATABASE).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        create_schema(engine, inventory.all_tables)
        seed_once(engine, inventory.seed())
        with engine.begin() as connection:
            connection.execute(text("UPDATE inventories SET quantity = 1000000000 WHERE product_id = 1"))
        sale = parse_sale(1, 1, "10.00", 1)
        made = 0

        def batch() -> list[Event]:
            nonlocal made
            made += size
            return [new_event(CREATED_SALE, sale_id, sale, "sale") for sale_id in range(made - size + 1, made + 1)]

        with engine.connect() as connection:
            for _ in range(20):
                apply_batch(connection, inventory, batch(), sequences=list(range(size)))
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(rounds):
                if apply_batch(connection, inventory, batch(), sequences=list(range(size))) is None:
                    raise SystemExit("a batch failed")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        events = size * rounds
        print(f"{make_url(url).get_backend_name()}, batches of {size}: {1e6 * wall / events:.1f} µs an event "
              f"(wall), {1e6 * cpu / events:.1f} µs of this process's CPU")
    finally:
        engine.dispose()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if admin is not None:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            admin.close()


if __name__ == "__main__":
    main()
