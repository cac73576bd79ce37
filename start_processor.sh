#!/usr/bin/env bash
# The processor on the live topic, until stopped (SIGTERM/Ctrl-C writes what was read and exits 0).
# Environment: BROKERS, TOPIC (clickstream), DATABASE_URL, WORKERS (2);
#              further arguments go to `clickflow process` (e.g. --until-idle 10s).
set -euo pipefail
cd "$(dirname "$0")"
data=${CLICKFLOW_DATA:-$PWD/.data}
brokers=${BROKERS:-$(cat "$data/broker.addr" 2>/dev/null || echo 127.0.0.1:9092)}
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:${PGPORT:-5432}/${CLICKFLOW_DB:-clickflow}}
cargo build --release --quiet
exec ./target/release/clickflow process --brokers "$brokers" --topic "${TOPIC:-clickstream}" --postgres "$url" \
  -w "${WORKERS:-2}" "$@"
