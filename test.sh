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
cargo test --workspace --locked "$@"
