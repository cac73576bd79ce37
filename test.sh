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

# run NAME COMMAND...: runs one check, its output shown and kept in the log. A check
# that fails without printing its own closing line ("NAME: N passed, N failed"; for
# cargo, "test result:" lines) crashed: it counts as one failure.
run() {
  local name=$1 pattern=$2 out rc=0
  shift 2
  out=$(mktemp)
  { "$@" 2>&1 && echo 0 > "$out.rc" || echo $? > "$out.rc"; } | tee "$out"
  rc=$(cat "$out.rc")
  cat "$out" >> "$log"
  if [ "$rc" != 0 ]; then
    status=$rc
    if ! grep -Eq "$pattern" "$out" || ! grep -Eq "$pattern.*[1-9][0-9]* failed|FAILED" "$out"; then
      echo "$name: 0 passed, 1 failed (it stopped with status $rc before reporting a failure)" | tee -a "$log"
    fi
  fi
  rm -f "$out" "$out.rc"
}

run cargo '^test result:' cargo test --workspace --locked "$@"
# Checks written in Python, on the binary cargo just built: an independent data set and
# reference from docs/contract.md alone, every Grafana panel query on real output, and
# the notebook.
if [ "$status" = 0 ]; then
  for seed in 1 2; do
    run independent '^independent:' python3 tests/independent/check.py --seed "$seed"
  done
  run dashboards '^dashboards:' python3 tests/dashboards/check_dashboards.py
  run notebook '^notebook:' notebooks/run_notebook.sh
fi
# One closing line for the whole run (cargo prints one per test binary).
awk '/^(test result|independent|dashboards|notebook|cargo):/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed[;,]?$/) p += $(i-1); if ($i ~ /^failed[;,]?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
