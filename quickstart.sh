#!/usr/bin/env bash
# The whole pipeline on its embedded default: start PostgreSQL, simulate shoppers
# (with duplicates, disorder, late and malformed messages), replay them through the
# dataflow into PostgreSQL, print a summary of the tables.
# Environment: EVENTS (200000), SEED (42), and those of start_infrastructure.sh.
set -euo pipefail
cd "$(dirname "$0")"
url=$(./start_infrastructure.sh | tee /dev/stderr | sed -n 's/^DATABASE_URL=//p')
cargo build --release --quiet
mkdir -p data
./target/release/clickflow produce --events "${EVENTS:-200000}" --seed "${SEED:-42}" --out data/sample.jsonl \
  --duplicates 0.01 --out-of-order 0.05 --late 0.002 --malformed 0.002
./target/release/clickflow process --input data/sample.jsonl --postgres "$url"
echo "Explore: psql $url -c 'SELECT * FROM funnel ORDER BY window_start'"
