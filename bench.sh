#!/usr/bin/env bash
# Benchmark: replay N simulated events (default 1,000,000) from a file into a fresh
# PostgreSQL database and print events/s and peak memory. Usage: ./bench.sh [N] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-1000000}
workers=${2:-1}
url=$(CLICKFLOW_NO_KAFKA=1 ./start_infrastructure.sh | sed -n 's/^DATABASE_URL=//p')
cargo build --release --quiet
mkdir -p data
file=data/bench-$n.jsonl
[ -f "$file" ] || ./target/release/clickflow produce --events "$n" --seed 1 --out "$file" \
  --duplicates 0.01 --out-of-order 0.05 --late 0.001 --malformed 0.001
db=clickflow_bench
psql -q -d "$url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
bench_url="${url%/*}/$db"
echo "replaying $(wc -l < "$file") lines with -w $workers into $bench_url"
RUST_LOG=info ./target/release/clickflow process --input "$file" --postgres "$bench_url" -w "$workers" --quiet 2>&1 | grep "all rows final"
