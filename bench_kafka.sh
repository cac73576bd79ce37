#!/usr/bin/env bash
# Kafka benchmarks against the development broker (./start_infrastructure.sh):
#   ./bench_kafka.sh drain [N] [WORKERS]      N events (1,000,000) pre-filled into a fresh 4-partition
#                                             topic, drained by `process --until-idle 3s` into a fresh
#                                             database: prints events/s (idle wait excluded) and memory.
#   ./bench_kafka.sh latency [SECONDS] [RATE] a producer paced at RATE events/s (1000) for SECONDS (120),
#                                             1-second traffic windows, 5 s watermark delay: prints
#                                             p50/p99 of window end → final row written.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-drain}
export CLICKFLOW_NO_DOCKER=1
infra=$(./start_infrastructure.sh)
url=$(sed -n 's/^DATABASE_URL=//p' <<<"$infra")
brokers=$(sed -n 's/^BROKERS=//p' <<<"$infra")
bin=./target/release/clickflow
topic="bench_$(date +%s)"
db="clickflow_bench_kafka"
psql -q -d "$url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
bench_url="${url%/*}/$db"

case "$mode" in
drain)
  n=${2:-1000000}
  workers=${3:-2}
  start=$(date +%s.%N)
  RUST_LOG=warn $bin produce --brokers "$brokers" --topic "$topic" --events "$n" --seed 1 \
    --duplicates 0.01 --out-of-order 0.05 --late 0.001 --malformed 0.001
  echo "produced $n events into $topic in $(echo "$(date +%s.%N) - $start" | bc) s"
  RUST_LOG=info $bin process --brokers "$brokers" --topic "$topic" --until-idle 3s -w "$workers" \
    --postgres "$bench_url" --quiet 2>&1 | grep "all rows final" | sed 's/\x1b\[[0-9;]*m//g' |
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
         END { gsub(/"/, "", v["seconds"]); gsub(/"/, "", v["peak_memory_mib"]); printf "drained %s messages in %.1f s (3 s idle wait excluded): %.0f events/s, peak memory %s MiB\n",
               v["input"], v["seconds"] - 3, v["input"] / (v["seconds"] - 3), v["peak_memory_mib"] }'
  ;;
latency)
  seconds=${2:-120}
  rate=${3:-1000}
  RUST_LOG=warn $bin produce --brokers "$brokers" --topic "$topic" --events 0 # creates the topic
  RUST_LOG=warn $bin process --brokers "$brokers" --topic "$topic" -w 2 --postgres "$bench_url" --quiet \
    --traffic-window 1s --watermark-delay 5s --progress-interval 1s 2>"${CLICKFLOW_DATA:-.data}/bench-processor.log" &
  processor=$!
  RUST_LOG=warn timeout -s INT "$seconds" $bin produce --brokers "$brokers" --topic "$topic" --rate "$rate" || true
  sleep 2
  kill -TERM $processor; wait $processor
  psql -X -q -At -d "$bench_url" -c "
    WITH l AS (SELECT extract(epoch FROM updated_at - window_end) AS s FROM traffic WHERE is_final)
    SELECT format('%s final 1 s windows at %s events/s: window end -> final row p50 %s s, p99 %s s (5 s of it is the watermark delay)',
                  count(*), $rate, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 2),
                  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 2)) FROM l"
  ;;
*) echo "usage: $0 drain [N] [WORKERS] | latency [SECONDS] [RATE]" >&2; exit 2 ;;
esac
