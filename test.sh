#!/usr/bin/env bash
# Runs every test: unit, property and doc tests of the dataflow, and the integration
# tests against a real PostgreSQL (started by ./start_infrastructure.sh unless
# DATABASE_URL already names a server).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(./start_infrastructure.sh | sed -n 's/^DATABASE_URL=//p')
  export DATABASE_URL
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
