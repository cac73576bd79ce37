#!/usr/bin/env bash
# The pipeline's health in the terminal, refreshing every 2 s (Ctrl-C to leave);
# `./monitor_pipeline.sh --once` prints once and exits 1 when unhealthy (for cron and CI).
# Environment: DATABASE_URL (the local clickflow database); further arguments go to
# `clickflow monitor` (thresholds: --max-report-age, --max-watermark-delay, --max-lag,
# --max-dead-letter-ratio).
set -euo pipefail
cd "$(dirname "$0")"
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:${PGPORT:-5432}/${CLICKFLOW_DB:-clickflow}}
cargo build --release --quiet
exec ./target/release/clickflow monitor --postgres "$url" "$@"
