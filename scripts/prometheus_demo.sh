#!/usr/bin/env bash
# A real Prometheus scraping a live sagactl system, asked through its HTTP API.
#
#   scripts/prometheus_demo.sh [SALES]      (default 20 sales; needs Debian's `prometheus` package:
#                                            apt-get install --no-install-recommends prometheus)
#
# In a temporary directory it starts a system (`sagactl up`), writes the participants' /metrics
# addresses as a file_sd target list (`sagactl metrics --targets`), starts Prometheus on a free
# loopback port with the scrape configuration of docs/observe.md, submits SALES sales (one in ten
# out of stock), waits until Prometheus has scraped every one of them and prints the answer of
# `sum by (status, reason) (sagactl_sagas_total)`. Exit 0 when Prometheus counts exactly SALES
# sagas, 1 otherwise. Everything it started is stopped by pid, the directory removed.
set -euo pipefail
SALES="${1:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-${ROOT}/.venv/bin/python}"  # the Python that has sagactl installed
[ -x "$PY" ] || PY="$(command -v python3)"
SAGACTL=("$PY" -c "from sagactl.cli.main import main; main()")
PROMETHEUS="${PROMETHEUS:-$(command -v prometheus || true)}"
if [ -z "$PROMETHEUS" ]; then
    echo "prometheus_demo: no prometheus binary (Debian: apt-get install --no-install-recommends prometheus)" >&2
    exit 3
fi

WORK="$(mktemp -d)"
export SAGACTL_STATE_DIR="$WORK/state"
PROM_PID=""
cleanup() {
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null || true
    "${SAGACTL[@]}" down --purge >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"${SAGACTL[@]}" up
"${SAGACTL[@]}" metrics --targets > "$WORK/sagactl-targets.json"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: sagactl
    honor_labels: true
    file_sd_configs:
      - files: [$WORK/sagactl-targets.json]
        refresh_interval: 1s
EOF
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PORT" --log.level=warn > "$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

for i in $(seq 1 "$SALES"); do
    quantity=1; [ $((i % 10)) -eq 0 ] && quantity=1000  # out of stock
    "${SAGACTL[@]}" submit --product-id 1 --user-id 1 --value 1.00 --quantity "$quantity" --wait >/dev/null || true
done

# Ask Prometheus until it has scraped all SALES sagas (a deadline, not a sleep).
"$PY" - "$PORT" "$SALES" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
port, sales = sys.argv[1], int(sys.argv[2])
query = "sum by (status, reason) (sagactl_sagas_total)"
url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
deadline, counted, result = time.monotonic() + 60, None, []
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            result = json.load(response)["data"]["result"]
        counted = sum(float(r["value"][1]) for r in result)
        if counted == sales:
            break
    except OSError:  # Prometheus still starting
        pass
    time.sleep(0.5)
print(f"prometheus at 127.0.0.1:{port}: {query}")
for r in sorted(result, key=lambda r: (r["metric"].get("status", ""), r["metric"].get("reason", ""))):
    print(f"  status={r['metric'].get('status')} reason={r['metric'].get('reason') or '-'}  {float(r['value'][1]):g}")
if counted != sales:
    print(f"prometheus_demo: Prometheus counted {counted} sagas, {sales} were submitted", file=sys.stderr)
    sys.exit(1)
print(f"prometheus_demo: Prometheus counted all {sales} sagas")
EOF
