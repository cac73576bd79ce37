#!/usr/bin/env bash
# Replays FILE (default: data/bench-10000000.jsonl, simulated the first time as `clickflow
# bench` simulates its inputs) into a fresh database clickflow_bench and prints the
# processor's resident memory every INTERVAL seconds (default 5): the curve behind the
# README's "memory bounded by open state". Usage: bench/rss_curve.sh [FILE] [INTERVAL]
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-data/bench-10000000.jsonl}
interval=${2:-5}
url=${DATABASE_URL:-$(CLICKFLOW_NO_KAFKA=1 ./start_infrastructure.sh | sed -n 's/^DATABASE_URL=//p')}
cargo build --release --quiet
# The same simulation as `clickflow bench --events N` makes.
[ -f "$file" ] || ./target/release/clickflow produce --events 10000000 --seed 1 --out "$file" \
  --duplicates 0.01 --out-of-order 0.05 --late 0.001 --malformed 0.001
psql -q -d "$url" -c "DROP DATABASE IF EXISTS clickflow_bench WITH (FORCE)" -c "CREATE DATABASE clickflow_bench"
RUST_LOG=warn ./target/release/clickflow process --input "$file" --postgres "${url%/*}/clickflow_bench" --quiet &
pid=$!
start=$(date +%s)
echo "seconds rss_mib"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss"
  sleep "$interval"
done
wait "$pid"
