#!/usr/bin/env bash
# What the Redis tier costs a cached redirect: CPU per request of one hot code on an
# embedded node (SQLite), a PostgreSQL node, and a PostgreSQL node with Redis (the
# cluster shape), measured one after the other in the same run.
#
#   bash bench/cluster_hot.sh [path/to/hop]       # default target/release/hop
#   BENCH_DURATION=5 BENCH_CONNECTIONS=64         # seconds of wrk per shape, connections
#
# hop runs on CPU 0 and wrk on CPU 1 (taskset), as in bench/run.sh; request logs off;
# the redirect limit raised to 10^9 a minute as bench/run.sh does (so the local bucket,
# or in the cluster the client's lease, is on the path). CPU per request is utime +
# stime of the hop process across the wrk run, divided by the requests wrk completed.
# Needs the machine's PostgreSQL (127.0.0.1:5432; a database of its own, dropped at
# the end) and Redis (127.0.0.1:6379; keys under a prefix of its own, which expire).
# The last shape adds the click stream: a private nats-server -js on a free port (its
# store in the bench's temporary directory), no worker (the visits wait in the stream;
# a worker is another process and its cost is benches/worker.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
HOP=${1:-target/release/hop}
DURATION=${BENCH_DURATION:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
ADMIN=postgres://postgres@127.0.0.1:5432/postgres
NAME=hop_bench_hot_$$
DATABASE=postgres://postgres@127.0.0.1:5432/$NAME
PREFIX="hopbench:hot:$$:$(date +%s%N):"
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
PID=""

NATS_PID=""

cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  [ -n "$NATS_PID" ] && kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null || true
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

psql "$ADMIN" -qc "CREATE DATABASE $NAME" >/dev/null
NATS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!

# measure LABEL [HOP_*=…]: starts hop with those settings, creates a link, runs wrk on
# its redirect; prints label, CPU µs per request, requests/s.
measure() {
  local label=$1 data port key ticks_before ticks_after requests
  shift
  data=$(mktemp -d -p "$WORK")
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  key=$(env "$@" "$HOP" keys create --name "bench$RANDOM" --admin --data-dir "$data" | tail -1)
  env HOP_LOG_LEVEL=warn HOP_RATE_LIMIT_REDIRECT_PER_MINUTE=1000000000 "$@" \
    taskset -c 0 "$HOP" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$data/log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  local code
  code=$(curl -s -X POST "http://127.0.0.1:$port/api/v1/links" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d '{"url": "https://example.com/hot"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["code"])')
  curl -s -o /dev/null "http://127.0.0.1:$port/$code"
  ticks_before=$(cpu_ticks "$PID")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/$code" >"$data/wrk"
  ticks_after=$(cpu_ticks "$PID")
  requests=$(awk '/requests in/ { print $1 }' "$data/wrk")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  awk -v l="$label" -v t=$((ticks_after - ticks_before)) -v hz="$TICKS" -v n="$requests" -v d="$DURATION" \
    'BEGIN { printf "%s\t%.2f\t%.0f\n", l, t / hz * 1e6 / n, n / d }'
}

results=$(
  measure "embedded (SQLite)"
  measure "PostgreSQL" HOP_DATABASE_URL="$DATABASE"
  measure "cluster (PostgreSQL + Redis)" HOP_DATABASE_URL="$DATABASE" \
    HOP_REDIS_URL=redis://127.0.0.1:6379/0 HOP_REDIS_PREFIX="$PREFIX"
  measure "cluster + NATS stream" HOP_DATABASE_URL="$DATABASE" \
    HOP_REDIS_URL=redis://127.0.0.1:6379/0 HOP_REDIS_PREFIX="$PREFIX" \
    HOP_NATS_URL="nats://127.0.0.1:$NATS_PORT"
)
echo "cached redirect, one code, $CONNECTIONS connections, ${DURATION}s each ($HOP):"
echo "$results" | awk -F'\t' 'NR == 1 { base = $2 }
  { printf "  %-30s %6.2f us CPU/request  %7.0f requests/s  %5.3f x embedded\n", $1, $2, $3, $2 / base }'
