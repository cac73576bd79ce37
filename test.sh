#!/usr/bin/env bash
# Runs every test: unit, property and doc tests of the dataflow, and the integration
# tests against a real PostgreSQL (started by ./start_infrastructure.sh unless
# DATABASE_URL already names a server).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(CLICKFLOW_NO_KAFKA=1 ./start_infrastructure.sh | sed -n 's/^DATABASE_URL=//p')
  export DATABASE_URL
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# Checks written in Python, on the binary cargo just built: an independent data set and
# reference from docs/contract.md alone, every Grafana panel query on real output, and the
# notebook.
if [ "$status" = 0 ]; then
  for seed in 1 2; do
    python3 tests/independent/check.py --seed "$seed" 2>&1 | tee -a "$log" || status=$?
  done
  python3 tests/dashboards/check_dashboards.py 2>&1 | tee -a "$log" || status=$?
  # The notebook, executed headlessly on real output (a virtualenv in .venv-notebook).
  notebooks/run_notebook.sh 2>&1 | tee -a "$log" || status=$?
fi
# One closing line for the whole run (cargo prints one per test binary).
awk '/^(test result|independent|dashboards|notebook):/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed[;,]?$/) p += $(i-1); if ($i ~ /^failed[;,]?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
