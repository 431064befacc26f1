#!/usr/bin/env bash
# Cold redirects on PostgreSQL under each plan cache mode, alternating in one run so
# that a busy machine disturbs each mode alike. hop's default is force_generic_plan
# (src/store/postgres/mod.rs); a plan_cache_mode in database_url's options overrides it.
#
#   bash bench/pg_plans.sh                          # machine's server, 2 rounds
#   BENCH_DATABASE_URL=postgres://u@host/db BENCH_ROUNDS=3 bash bench/pg_plans.sh
#
# A database of its own is created on the server and dropped at the end. Links are
# made with bench/bulk.lua for 8 s (~600k on this machine); then, per mode, a fresh hop
# with a 1 MB cache (well under 1 % of the links) serves bench/random_codes.lua for
# 5 s: hop on CPU 0, wrk on CPU 1 with 64 connections, PostgreSQL not pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
ROUNDS=${BENCH_ROUNDS:-2}
PORT=${BENCH_PORT:-18556}
cargo build --release --quiet
HOP=$PWD/target/release/hop
DB=hop_bench_plans_$$
psql -qAt "$ADMIN" -c "CREATE DATABASE $DB"
BASE=${ADMIN%/*}/$DB
DIR=$(mktemp -d)
PID=""
finish() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  psql -qAt "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
  rm -rf "$DIR"
}
trap finish EXIT
KEY=$(HOP_DATABASE_URL=$BASE "$HOP" keys create --name bench --admin --data-dir "$DIR" | tail -n 1)
start() {
  HOP_DATABASE_URL="$1" HOP_LOG_LEVEL=warn HOP_RATE_LIMIT_ADMIN_PER_MINUTE=1000000000 \
    HOP_RATE_LIMIT_REDIRECT_PER_MINUTE=1000000000 HOP_CACHE_MAX_BYTES=1000000 \
    taskset -c 0 "$HOP" serve --listen "127.0.0.1:$PORT" --data-dir "$DIR" >>"$DIR/hop.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && return; sleep 0.1; done
  echo "hop did not start; see $DIR/hop.log" >&2
  exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
start "$BASE"
taskset -c 1 wrk -t1 -c8 -d8s -s bench/bulk.lua "http://127.0.0.1:$PORT/api/v1/links/bulk" -- "$KEY" >/dev/null
stop
psql -qAt "$BASE" -c "SELECT code FROM links" >"$DIR/codes.txt"
echo "links: $(wc -l <"$DIR/codes.txt")"
for round in $(seq "$ROUNDS"); do
  for mode in force_generic_plan auto force_custom_plan; do
    start "$BASE?options=-c%20plan_cache_mode%3D$mode"
    rate=$(taskset -c 1 wrk -t1 -c64 -d5s -s bench/random_codes.lua "http://127.0.0.1:$PORT/" -- "$DIR/codes.txt" |
      awk '/^Requests\/sec/ { print $2 }')
    stop
    echo "round $round  plan_cache_mode=$mode  cold redirects/s $rate"
  done
done
