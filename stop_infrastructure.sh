#!/usr/bin/env bash
# Stops what ./start_infrastructure.sh started (Docker Compose, or the local PostgreSQL
# and development broker). Safe to run when nothing runs.
set -uo pipefail
cd "$(dirname "$0")"
data=${CLICKFLOW_DATA:-$PWD/.data}
if [ -z "${CLICKFLOW_NO_DOCKER:-}" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker compose down
  exit 0
fi
if [ -f "$data/broker.pid" ]; then
  kill "$(cat "$data/broker.pid")" 2>/dev/null && echo "development broker stopped"
  rm -f "$data/broker.pid" "$data/broker.addr"
fi
# Where start_infrastructure.sh put the server's files.
pgdata=$(cat "$data/postgres.dir" 2>/dev/null || echo "$data/postgres")
if [ -f "$pgdata/postmaster.pid" ]; then
  bin=$(dirname "$(command -v pg_ctl 2>/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl | head -1)")
  if [ "$(id -u)" = 0 ]; then (cd / && su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$pgdata' -w stop"); else "$bin/pg_ctl" -D "$pgdata" -w stop; fi
fi
