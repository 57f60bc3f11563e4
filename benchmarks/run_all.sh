#!/usr/bin/env bash
# Every figure in docs/performance.md, in one go (about 6 minutes on the 2-core machine).
# Writes benchmarks/results/*.jsonl, then the plot. Run from the repository root.
set -euo pipefail
py=.venv/bin/python
out=benchmarks/results
mkdir -p "$out"
echo "load before: $(cat /proc/loadavg)" > "$out/load.txt"
$py benchmarks/sweep.py concurrency 2000 --sagas 20000 > "$out/headline.jsonl"
$py benchmarks/sweep.py concurrency 2000 --sagas 20000 --extra=--raw >> "$out/headline.jsonl"
$py benchmarks/sweep.py concurrency 2000 --sagas 20000 --extra=--fsync >> "$out/headline.jsonl"
$py benchmarks/sweep.py concurrency 2000 --sagas 1000 > "$out/flat.jsonl"
$py benchmarks/sweep.py concurrency 2000 --sagas 10000 >> "$out/flat.jsonl"
$py benchmarks/sweep.py concurrency 2000 --sagas 100000 >> "$out/flat.jsonl"
$py benchmarks/sweep.py concurrency 50 200 1000 2000 4000 --sagas 20000 > "$out/concurrency.jsonl"
$py benchmarks/sweep.py concurrency 200 1000 2000 4000 --sagas 20000 --extra=--raw >> "$out/concurrency.jsonl"
$py benchmarks/sweep.py rate 1000 2000 3000 4000 5000 6000 --sagas 20000 > "$out/rate.jsonl"
echo "load after: $(cat /proc/loadavg)" >> "$out/load.txt"
$py benchmarks/plot.py "$out/concurrency.jsonl" "$out/rate.jsonl" --out docs/performance.png
