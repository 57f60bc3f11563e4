#!/usr/bin/env bash
# The scale-out figures of docs/performance.md: `sagactl bench --reuse` on systems started with
# SQLite or PostgreSQL participants, one process each or replicas (inventory x3, payment x2).
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth; PG_URL to change); creates and drops the
# databases bench_sale, bench_inventory, bench_payment. Writes benchmarks/results/scaleout.jsonl.
# Run from the repository root: bash benchmarks/scaleout.sh  (SAGAS=20000 by default)
set -uo pipefail
sagactl=.venv/bin/sagactl
pg=${PG_URL:-postgresql://postgres@127.0.0.1:5432}
out=benchmarks/results/scaleout.jsonl
mkdir -p "$(dirname "$out")"
: > "$out"

databases() {  # drop (and with "create", create) the bench databases
  for db in sale inventory payment; do
    psql -q "$pg/test" -c "DROP DATABASE IF EXISTS bench_$db WITH (FORCE)" >/dev/null 2>&1
    [ "${1:-}" = create ] && psql -q "$pg/test" -c "CREATE DATABASE bench_$db" >/dev/null
  done
}

run() {  # label, then `sagactl up` options
  local label=$1 dir
  shift
  dir=$(mktemp -d /tmp/sagactl-bench-XXXX)
  databases create
  $sagactl up --state-dir "$dir" "$@" 2>/dev/null
  $sagactl bench --reuse --state-dir "$dir" --sagas "${SAGAS:-20000}" --concurrency 2000 --json 2>/dev/null |
    .venv/bin/python -c "import json, sys; r = json.load(sys.stdin); r.update(label='$label', load=float(open('/proc/loadavg').read().split()[0])); print(json.dumps(r))" >> "$out"
  $sagactl down --purge --state-dir "$dir" >/dev/null 2>&1
  rm -rf "$dir"
}

on_pg() {  # --db-url options for the three participants, with an optional URL suffix
  for db in sale inventory payment; do printf -- "--db-url %s=%s/bench_%s%s " "$db" "$pg" "$db" "${1:-}"; done
}

run sqlite
run postgres $(on_pg)
run sqlite-replicas --replicas inventory=3 --replicas payment=2
run postgres-replicas $(on_pg) --replicas inventory=3 --replicas payment=2
run postgres-async-commit $(on_pg "?options=-c%20synchronous_commit%3Doff")
databases
.venv/bin/python - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    cpu = sum(p["cpu_s"] for p in r["processes"]) / r["sagas"] * 1e6
    print(f'{r["label"]:24} {r["sagas_per_s"]:8.0f}/s p50 {r["p50_ms"]:6.0f} ms p99 {r["p99_ms"]:6.0f} ms '
          f'CPU/saga {cpu:4.0f} us checks {r["checks_passed"]} load {r["load"]}')
PY
