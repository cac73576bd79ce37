#!/usr/bin/env bash
# Starts what clickflow needs and prints where it listens:
# - with a Docker engine: `docker compose up -d` (Kafka in KRaft mode, PostgreSQL, Grafana);
# - without one: PostgreSQL on 127.0.0.1 (installed from Debian's packages if missing)
#   and clickflow's development Kafka broker (librdkafka's in-memory mock cluster,
#   labelled as such: it keeps no data across restarts).
# Idempotent: what already runs is reused. Stop with ./stop_infrastructure.sh.
#
# Environment: PGPORT (5432), CLICKFLOW_DATA (./.data: server files, logs, broker address),
#              CLICKFLOW_DB (clickflow), TOPIC (clickstream), PARTITIONS (4),
#              CLICKFLOW_NO_DOCKER=1 to use the local path even where Docker runs,
#              CLICKFLOW_NO_KAFKA=1 to start PostgreSQL only.
set -euo pipefail
cd "$(dirname "$0")"
port=${PGPORT:-5432}
data=${CLICKFLOW_DATA:-$PWD/.data}
db=${CLICKFLOW_DB:-clickflow}
topic=${TOPIC:-clickstream}
partitions=${PARTITIONS:-4}
mkdir -p "$data"

if [ -z "${CLICKFLOW_NO_DOCKER:-}" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker compose up -d --wait postgres kafka grafana
  echo "DATABASE_URL=postgres://postgres:clickflow@127.0.0.1:$port/$db"
  echo "BROKERS=127.0.0.1:9092"
  echo "Grafana: http://127.0.0.1:3000"
  exit 0
fi

pg_bin() {
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}
as_postgres() {
  # From /: the postgres user may not reach the current directory.
  if [ "$(id -u)" = 0 ]; then (cd / && su postgres -s /bin/sh -c "$*"); else sh -c "$*"; fi
}
answers() { pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null || ! pg_bin >/dev/null; then
  echo "Installing PostgreSQL from Debian's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

if answers; then
  echo "PostgreSQL already answers on 127.0.0.1:$port" >&2
else
  bin=$(pg_bin)
  pgdata=$data/postgres
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$data"
    # The server runs as the postgres user, who may not reach a checkout under a private
    # directory (mktemp's are 0700): its files then go to that user's home.
    if ! su postgres -s /bin/sh -c "test -w '$data'"; then
      pgdata=$(getent passwd postgres | cut -d: -f6)/clickflow-$port
    fi
  fi
  echo "$pgdata" >"$data/postgres.dir"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    as_postgres "'$bin/initdb' -D '$pgdata' -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null"
  fi
  as_postgres "'$bin/pg_ctl' -D '$pgdata' -l '$pgdata.log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min\" start >/dev/null"
  echo "PostgreSQL started on 127.0.0.1:$port (files in $pgdata, log in $pgdata.log)" >&2
fi
if ! psql -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE \"$db\""
fi
echo "DATABASE_URL=postgres://postgres@127.0.0.1:$port/$db"

if [ -z "${CLICKFLOW_NO_KAFKA:-}" ]; then
  if [ -f "$data/broker.pid" ] && kill -0 "$(cat "$data/broker.pid")" 2>/dev/null && [ -s "$data/broker.addr" ]; then
    echo "Development Kafka broker already runs at $(cat "$data/broker.addr")" >&2
  else
    cargo build --release --quiet
    rm -f "$data/broker.addr"
    nohup ./target/release/clickflow broker --address-file "$data/broker.addr" --topic "$topic" --partitions "$partitions" \
      >"$data/broker.log" 2>&1 &
    echo $! >"$data/broker.pid"
    for _ in $(seq 50); do [ -s "$data/broker.addr" ] && break; sleep 0.1; done
    [ -s "$data/broker.addr" ] || { echo "the development broker did not start: see $data/broker.log" >&2; exit 1; }
    echo "Development Kafka broker (in memory, librdkafka mock cluster) at $(cat "$data/broker.addr"), topic $topic with $partitions partitions" >&2
  fi
  echo "BROKERS=$(cat "$data/broker.addr")"
fi
