#!/usr/bin/env bash
# Simulated shoppers into Kafka, paced, until stopped (Ctrl-C flushes and exits 0).
# Environment: BROKERS (the development broker's address from ./start_infrastructure.sh),
#              TOPIC (clickstream), RATE (200 events/s), SEED (the time: fresh event ids),
#              EVENTS (unbounded);
#              further arguments go to `clickflow produce`.
set -euo pipefail
cd "$(dirname "$0")"
brokers=${BROKERS:-$(cat "${CLICKFLOW_DATA:-$PWD/.data}/broker.addr" 2>/dev/null || echo 127.0.0.1:9092)}
cargo build --release --quiet
exec ./target/release/clickflow produce --brokers "$brokers" --topic "${TOPIC:-clickstream}" --rate "${RATE:-200}" \
  --seed "${SEED:-$(date +%s)}" ${EVENTS:+--events "$EVENTS"} --duplicates 0.005 --out-of-order 0.05 --malformed 0.001 "$@"
