#!/usr/bin/env bash
# Executes notebooks/exploration.ipynb headlessly against real pipeline output, as CI does:
#  1. a virtualenv in <repo>/.venv-notebook (created if missing or broken) with
#     notebooks/requirements.txt installed;
#  2. a fresh database cf_notebook_<pid> on the server of DATABASE_URL, filled by
#     `clickflow produce` (four weeks of event time from 2026-10-01 at 0.05 events/s, about
#     110,000 events, seed 4, with duplicates, late, malformed and out-of-order events) and
#     `clickflow process`: weeks, so that shoppers come back over days and the cohorts,
#     RFM scores and product pairs of the notebook's section 7 have something to show;
#     2 % of the visits are bots, labelled in target/notebook/labels.csv (CLICKFLOW_LABELS),
#     which section 8 evaluates session_risk against;
#  3. `jupyter nbconvert --execute` with DATABASE_URL pointing at that database: an error
#     in any cell (a failed assert included) fails the run;
#  4. the database is dropped, whatever happened.
# The executed copy, its plots (PNG) and the event file are left in target/notebook/.
# Progress goes to stderr; stdout gets one closing line, `notebook: 1 passed, 0 failed`
# (exit 0) or `notebook: 0 passed, 1 failed` (exit 1).
#
# Environment: DATABASE_URL (a server where the user may create databases; if unset,
#   ./start_infrastructure.sh starts PostgreSQL and its URL is used), CLICKFLOW_BIN
#   (target/debug/clickflow, built with cargo if missing), PYTHON (python3; 3.11 or
#   newer, for the virtualenv), NOTEBOOK_OUT (target/notebook), KEEP_DB=1 to keep the
#   database for a look afterwards.
server_url=""
db=""

say() { echo "run_notebook: $*" >&2; }
fail() { say "$*"; exit 1; }

drop_database() {
  [ -n "$db" ] || return 0
  if [ -n "${KEEP_DB:-}" ]; then
    say "kept database $db (KEEP_DB is set)"
    return 0
  fi
  psql -X -q -d "$server_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
    psql -X -q -d "$server_url" -c "DROP DATABASE IF EXISTS $db" >/dev/null ||
    say "could not drop database $db"
}

finish() {
  local status=$?
  trap - EXIT
  drop_database
  if [ "$status" = 0 ]; then
    echo "notebook: 1 passed, 0 failed"
    exit 0
  fi
  echo "notebook: 0 passed, 1 failed"
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM
set -euo pipefail
SECONDS=0
cd "$(dirname "$0")/.."
repo=$PWD
venv=$repo/.venv-notebook
notebook=notebooks/exploration.ipynb
requirements=notebooks/requirements.txt
out=${NOTEBOOK_OUT:-$repo/target/notebook}

# --- Python 3.11+ and the virtualenv -----------------------------------------------------
is_recent_python() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
python=""
for candidate in ${PYTHON:-python3 python3.13 python3.12 python3.11}; do
  if command -v "$candidate" >/dev/null 2>&1 && is_recent_python "$candidate"; then
    python=$candidate
    break
  fi
done
[ -n "$python" ] || fail "no Python 3.11 or newer found (tried ${PYTHON:-python3 python3.13 python3.12 python3.11}); set PYTHON"

if [ -e "$venv" ] && ! { is_recent_python "$venv/bin/python" && "$venv/bin/python" -m pip --version >/dev/null 2>&1; }; then
  say "$venv is broken or too old: creating it again"
  rm -rf "$venv"
fi
if [ ! -e "$venv" ]; then
  say "creating $venv with $("$python" --version 2>&1) ($(command -v "$python"))"
  if ! "$python" -m venv "$venv" >&2; then
    # Debian's own python3 (prefix /usr) has no ensurepip until python3.X-venv is installed.
    rm -rf "$venv"
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    prefix=$("$python" -c 'import sys; print(sys.base_prefix)')
    if [ "$prefix" = /usr ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing python$version-venv from Debian's packages"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq "python$version-venv" >/dev/null || apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv" >&2 || { rm -rf "$venv"; fail "$python -m venv failed even with python$version-venv installed"; }
    else
      fail "$python -m venv failed: install Debian's python$version-venv (apt-get install python$version-venv) or set PYTHON to a Python with venv"
    fi
  fi
fi
# Quick when everything is installed already (pinned versions need no look-up).
say "installing $requirements into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2

# The notebook is committed without outputs: executed copies go to $out, never back.
"$venv/bin/python" - "$notebook" <<'EOF'
import sys
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nbformat.validate(nb)
stored = [c.get("id") for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
if stored:
    sys.exit(f"run_notebook: {path} has stored outputs in cells {stored}: clear them "
             f"(jupyter nbconvert --clear-output --inplace {path}) before committing")
EOF
setup_seconds=$SECONDS

# --- A fresh database with real pipeline output ---------------------------------------------
command -v psql >/dev/null 2>&1 || fail "psql not found: install PostgreSQL's client (apt-get install postgresql-client)"
server_url=${DATABASE_URL:-}
if [ -z "$server_url" ]; then
  server_url=$(CLICKFLOW_NO_KAFKA=1 ./start_infrastructure.sh | sed -n 's/^DATABASE_URL=//p')
  [ -n "$server_url" ] || fail "./start_infrastructure.sh printed no DATABASE_URL"
fi
case $server_url in
  postgres://* | postgresql://*) ;;
  *) fail "DATABASE_URL must be a postgres:// URL, got: $server_url" ;;
esac
db_url=$("$python" - "$server_url" "cf_notebook_$$" <<'EOF'
import sys
import urllib.parse

u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
EOF
)

bin=${CLICKFLOW_BIN:-$repo/target/debug/clickflow}
if [ ! -x "$bin" ] && [ -z "${CLICKFLOW_BIN:-}" ] && command -v cargo >/dev/null 2>&1; then
  say "building $bin"
  cargo build --locked --quiet --bin clickflow >&2
fi
[ -x "$bin" ] || fail "no clickflow binary at $bin: build it (cargo build) or set CLICKFLOW_BIN"

mkdir -p "$out"
rm -rf "$out/plots" "$out/exploration.executed.ipynb"
events=$out/events.jsonl
# A fixed start in the past (same seed, same bytes): events more than 15 minutes ahead of the
# wall clock would be dead letters.
# 2 % of the visits are bots, their labels beside the stream for section 8 (the processor
# never reads them).
labels=$out/labels.csv
"$bin" produce --days 28 --events-per-second 0.05 --start-time 2026-10-01T00:00:00Z --seed 4 --out "$events" \
  --duplicates 0.01 --late 0.002 --malformed 0.002 --out-of-order 0.05 --bots 0.02 --labels "$labels" >&2 ||
  fail "clickflow produce failed"

psql -X -q -v ON_ERROR_STOP=1 -d "$server_url" -c "CREATE DATABASE cf_notebook_$$" >&2 ||
  fail "could not create database cf_notebook_$$ on $server_url"
db=cf_notebook_$$
say "replaying $events into database $db"
"$bin" process --input "$events" --postgres "$db_url" --quiet >&2 || fail "clickflow process failed"

# --- Execute the notebook ---------------------------------------------------------------------
say "executing $notebook"
start=$SECONDS
# A private IPython profile: no user startup files, and tracebacks without colour codes.
mkdir -p "$out/ipython/profile_default"
echo 'c.InteractiveShell.colors = "nocolor"' >"$out/ipython/profile_default/ipython_kernel_config.py"
# JUPYTER_PREFER_ENV_PATH: the virtualenv's python3 kernel, not one a user installed in ~.
env DATABASE_URL="$db_url" \
  CLICKFLOW_LABELS="$labels" \
  CLICKFLOW_PLOT_DIR="$out/plots" \
  MPLBACKEND=Agg \
  IPYTHONDIR="$out/ipython" \
  JUPYTER_PREFER_ENV_PATH=1 \
  JUPYTER_PLATFORM_DIRS=1 \
  PYDEVD_DISABLE_FILE_VALIDATION=1 \
  PATH="$venv/bin:$PATH" \
  "$venv/bin/jupyter" nbconvert --to notebook --execute "$notebook" \
    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=600 \
    --output-dir "$out" --output exploration.executed >&2 ||
  fail "$notebook failed (the failing cell and its error are above)"
say "executed in $((SECONDS - start)) s (setup $setup_seconds s, total $SECONDS s): $out/exploration.executed.ipynb, plots in $out/plots"
