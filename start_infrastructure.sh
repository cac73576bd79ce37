#!/usr/bin/env bash
# Starts what clickflow needs on this machine: a PostgreSQL server on 127.0.0.1.
# Idempotent: a server that already answers is used as it is. Installs PostgreSQL
# from Debian's packages when its binaries are missing (as root).
#
# Environment: PGPORT (5432), CLICKFLOW_DATA (./.data: server files and log),
#              CLICKFLOW_DB (clickflow: the database to create).
set -euo pipefail
cd "$(dirname "$0")"
port=${PGPORT:-5432}
data=${CLICKFLOW_DATA:-$PWD/.data}
db=${CLICKFLOW_DB:-clickflow}

pg_bin() {
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

answers() { pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null || ! pg_bin >/dev/null; then
  echo "Installing PostgreSQL from Debian's packages..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

if answers; then
  echo "PostgreSQL already answers on 127.0.0.1:$port"
else
  bin=$(pg_bin)
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then chown postgres "$data"; fi
  if [ ! -f "$data/postgres/PG_VERSION" ]; then
    as_postgres "'$bin/initdb' -D '$data/postgres' -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null"
  fi
  as_postgres "'$bin/pg_ctl' -D '$data/postgres' -l '$data/postgres.log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min\" start >/dev/null"
  echo "PostgreSQL started on 127.0.0.1:$port (files in $data/postgres, log in $data/postgres.log)"
fi

if ! psql -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE \"$db\""
fi
echo "DATABASE_URL=postgres://postgres@127.0.0.1:$port/$db"
