#!/usr/bin/env bash
# The whole live pipeline on its embedded default: PostgreSQL and the development Kafka
# broker (./start_infrastructure.sh), the processor on two timely workers, and paced
# simulated shoppers; prints the tables filling up every few seconds, then stops both
# and prints a summary.
# Environment: SECONDS_TO_RUN (60), RATE (500 events/s), and those of the start scripts.
set -euo pipefail
cd "$(dirname "$0")"
export CLICKFLOW_NO_DOCKER=1
infra=$(./start_infrastructure.sh)
export DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$infra")
export BROKERS=$(sed -n 's/^BROKERS=//p' <<<"$infra")
data=${CLICKFLOW_DATA:-$PWD/.data}
run_for=${SECONDS_TO_RUN:-60}
echo "PostgreSQL: $DATABASE_URL   Kafka (development broker): $BROKERS"

# A short watermark delay so that windows visibly become final within a minute.
./start_processor.sh --watermark-delay 10s --quiet >"$data/processor.log" 2>&1 &
processor=$!
RATE=${RATE:-500} ./start_producer.sh >"$data/producer.log" 2>&1 &
producer=$!
trap 'kill $producer $processor 2>/dev/null' EXIT

echo "time      events   sessions(open)  traffic windows(final)  watermark                 lag"
for _ in $(seq $((run_for / 5))); do
  sleep 5
  psql -X -q -At -F '  ' "$DATABASE_URL" -c "
    SELECT to_char(now(), 'HH24:MI:SS'),
           (SELECT count(*) FROM events_raw),
           (SELECT count(*) || '(' || count(*) FILTER (WHERE NOT is_final) || ')' FROM sessions),
           (SELECT count(*) || '(' || count(*) FILTER (WHERE is_final) || ')' FROM traffic),
           coalesce((SELECT watermark::text FROM pipeline_progress ORDER BY id DESC LIMIT 1), '-'),
           coalesce((SELECT kafka_lag::text FROM pipeline_progress ORDER BY id DESC LIMIT 1), '-')" 2>&1 | tail -1
done
kill -INT $producer; wait $producer || true
kill -TERM $processor; wait $processor || true
trap - EXIT
./target/release/clickflow process --help >/dev/null
echo "Stopped. Latest figures:"
psql -X "$DATABASE_URL" -c "SELECT window_start, events, active_users, revenue, is_final FROM traffic ORDER BY window_start DESC LIMIT 5"
echo "Logs in $data/processor.log and $data/producer.log; ./stop_infrastructure.sh stops the servers."
