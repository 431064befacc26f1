#!/usr/bin/env bash
# hop load benchmarks against an nginx baseline measured in the same run.
#
#   bash bench/run.sh                                   # full run (1,000,000 links)
#   BENCH_LINKS=50000 BENCH_DURATION=3 bash bench/run.sh  # quick run
#
# Needs: wrk, nginx, sqlite3, taskset (Debian: apt-get install wrk nginx-light sqlite3).
# Every server (nginx with one worker, hop) is pinned to CPU 0 and wrk to CPU 1, so
# both servers get the same single core. Besides requests/s and p99, each scenario
# reports the server's CPU time per request (utime+stime from /proc/PID/stat over the
# run, divided by the requests wrk completed), which is steadier than requests/s on a
# shared machine and still meaningful when wrk itself is the limit.
# Request logs are off on both sides: nginx `access_log off`, hop HOP_LOG_LEVEL=warn.
# Results go to stdout and bench/out/results.md.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_DIR=$PWD/bench
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
LINKS=${BENCH_LINKS:-1000000}
REDIRECTS_FOR_RSS=${BENCH_RSS_REDIRECTS:-1000000}
NGINX_PORT=${BENCH_NGINX_PORT:-18090}
HOP_PORT=${BENCH_HOP_PORT:-18091}
# Cache for the cold test: under 5% of the links. An entry is weighed at 300 bytes
# plus its code and URL (~350 here), so this budget holds about 3.4% of them.
COLD_CACHE_BYTES=${BENCH_COLD_CACHE_BYTES:-$((LINKS * 5 / 100 * 240))}

for tool in wrk nginx sqlite3 taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

echo "== building release"
cargo build --release --quiet
HOP=$PWD/target/release/hop

WORK=$BENCH_DIR/out/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
CLK_TCK=$(getconf CLK_TCK)
HOP_PID=""
NGINX_PID=""

cleanup() {
  [ -n "$HOP_PID" ] && kill "$HOP_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_for() {
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  exit 1
}

start_nginx() {
  cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { return 302 https://example.com/target; }
  }
}
EOF
  taskset -c 0 nginx -c "$WORK/nginx.conf" &
  NGINX_PID=$!
  wait_for "http://127.0.0.1:$NGINX_PORT/healthz-of-nginx" || true
  sleep 0.5
  NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
}

# start_hop [ENV=VALUE...]: (re)starts hop on the benchmark database.
start_hop() {
  if [ -n "$HOP_PID" ]; then
    kill -TERM "$HOP_PID"
    wait "$HOP_PID" 2>/dev/null || true
  fi
  env HOP_LOG_LEVEL=warn "$@" taskset -c 0 "$HOP" serve \
    --listen "127.0.0.1:$HOP_PORT" --data-dir "$WORK/data" 2>>"$WORK/hop.err" >>"$WORK/hop.out" &
  HOP_PID=$!
  wait_for "http://127.0.0.1:$HOP_PORT/healthz"
}

RESULTS=()
# measure NAME PID URL [LUA_SCRIPT]: runs wrk and records rps, p99 and CPU/request.
measure() {
  local name=$1 pid=$2 url=$3 script=${4:-}
  local before after out requests rps p99 cpu_us
  before=$(cpu_ticks "$pid")
  if [ -n "$script" ]; then
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" "$url")
  else
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
  fi
  after=$(cpu_ticks "$pid")
  echo "$out" >"$WORK/wrk-$name.txt"
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "$out" | grep -E "Non-2xx|Socket errors" | sed "s/^/  [$name] /"
  fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  printf "  %-22s %9s req/s  p99 %-9s  %6s us CPU/request  (%s requests)\n" \
    "$name" "$rps" "$p99" "$cpu_us" "$requests"
  RESULTS+=("$name|$rps|$p99|$cpu_us|$requests")
  eval "RPS_${name//-/_}=$rps CPU_${name//-/_}=$cpu_us REQ_${name//-/_}=$requests"
}

links_stored() { sqlite3 "$WORK/data/hop.db" "SELECT COUNT(*) FROM links"; }

echo "== starting nginx (baseline) and hop, both pinned to CPU 0; wrk on CPU 1"
start_nginx
start_hop
KEY=$(grep -o 'hop_[A-Za-z0-9]*' "$WORK/hop.err" | tail -n 1)
[ -n "$KEY" ] || { echo "bench: no admin key printed" >&2; exit 1; }
CODE=$(curl -sf -X POST "http://127.0.0.1:$HOP_PORT/api/v1/shorten" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"url": "https://example.com/target"}' | sed 's/.*"code":"\([^"]*\)".*/\1/')
echo "  hot code: $CODE"

echo "== redirects: nginx fixed 302 vs hop cached code (clicks recorded)"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/$CODE"
measure hot "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE"

echo "== creates: POST /api/v1/links, $CONNECTIONS connections, each 201 durable"
sed "s/@KEY@/$KEY/" "$BENCH_DIR/create.lua" >"$WORK/create.lua"
measure create "$HOP_PID" "http://127.0.0.1:$HOP_PORT/api/v1/links" "$WORK/create.lua"

echo "== populating to $LINKS links through the same API"
while [ "$(links_stored)" -lt "$LINKS" ]; do
  missing=$((LINKS - $(links_stored)))
  seconds=$((missing / 15000 + 1))
  [ "$seconds" -gt 120 ] && seconds=120
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" -s "$WORK/create.lua" \
    "http://127.0.0.1:$HOP_PORT/api/v1/links" >/dev/null
  echo "  $(links_stored) links stored"
done
sqlite3 "$WORK/data/hop.db" "SELECT code FROM links" >"$WORK/codes.txt"
sed "s#@CODES@#$WORK/codes.txt#" "$BENCH_DIR/random_codes.lua" >"$WORK/random_codes.lua"

echo "== cold redirects: random codes over $(wc -l <"$WORK/codes.txt") links, cache $COLD_CACHE_BYTES bytes"
start_hop HOP_CACHE_MAX_BYTES="$COLD_CACHE_BYTES"
measure cold "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$WORK/random_codes.lua"
CACHED=$(curl -sf "http://127.0.0.1:$HOP_PORT/readyz" >/dev/null && echo ok)
measure nginx-random "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/" "$WORK/random_codes.lua"

echo "== memory: default cache, $REDIRECTS_FOR_RSS+ random redirects after $LINKS links"
start_hop
served=0
while [ "$served" -lt "$REDIRECTS_FOR_RSS" ]; do
  measure rss-load "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$WORK/random_codes.lua" >/dev/null
  served=$((served + REQ_rss_load))
done
RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$HOP_PID/status")
HWM_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$HOP_PID/status")
ANON_KB=$(awk '/^RssAnon/ {print $2}' "/proc/$HOP_PID/status")
FILE_KB=$(awk '/^RssFile/ {print $2}' "/proc/$HOP_PID/status")
echo "  after $served redirects: VmRSS $((RSS_KB / 1024)) MiB (anonymous $((ANON_KB / 1024)) MiB," \
  "file-backed $((FILE_KB / 1024)) MiB: the memory-mapped database), peak $((HWM_KB / 1024)) MiB"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
{
  echo "# hop benchmark results ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s per scenario; servers on CPU 0, wrk on CPU 1."
  echo
  echo "| scenario | requests/s | p99 | server CPU per request | requests |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for row in "${RESULTS[@]}"; do
    IFS='|' read -r name rps p99 cpu requests <<<"$row"
    [ "$name" = rss-load ] && continue
    echo "| $name | $rps | $p99 | $cpu µs | $requests |"
  done
  echo
  echo "| ratio | value | target |"
  echo "| --- | ---: | --- |"
  echo "| hot / nginx, requests/s | $(ratio "$RPS_hot" "$RPS_nginx") | ≥ 0.8 |"
  echo "| nginx / hot, CPU per request | $(ratio "$CPU_nginx" "$CPU_hot") | |"
  echo "| cold / hot, requests/s | $(ratio "$RPS_cold" "$RPS_hot") | ≥ 0.5 |"
  echo "| hot / cold, CPU per request | $(ratio "$CPU_hot" "$CPU_cold") | ≥ 0.5 |"
  echo "| creates/s (64 clients, durable) | $RPS_create | ≥ 10,000 |"
  echo
  echo "Memory after $LINKS links created and $served redirects served (default cache):" \
    "VmRSS $((RSS_KB / 1024)) MiB, of which anonymous $((ANON_KB / 1024)) MiB and" \
    "file-backed $((FILE_KB / 1024)) MiB (the memory-mapped database); peak $((HWM_KB / 1024)) MiB."
} | tee "$BENCH_DIR/out/results.md"
[ -n "$CACHED" ] || true
