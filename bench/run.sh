#!/usr/bin/env bash
# hop load benchmarks, with an nginx baseline measured in the same run on the same core.
#
#   bash bench/run.sh                                      # full run: 1,000,000 links
#   BENCH_LINKS=50000 BENCH_DURATION=3 bash bench/run.sh   # quick run (about a minute)
#
# Settings (environment):
#   BENCH_DURATION=10          seconds of wrk per measured scenario
#   BENCH_CONNECTIONS=64       wrk connections (1 wrk thread: wrk has one core)
#   BENCH_LINKS=1000000        links created through the API before the cold runs
#   BENCH_RSS_REDIRECTS=1000000  random redirects served before RSS is read
#   BENCH_COLD_CACHE_BYTES     cache for the cold run; default 5% of the links x 240 B
#   BENCH_POPULATE_TIMEOUT=1800, BENCH_RSS_TIMEOUT=900   upper bounds, in seconds
#
# Scenarios, in order: nginx (fixed 302), hot (hop, one cached code), create (POST
# /api/v1/links, empty table), populate to BENCH_LINKS links, create-full (creates on
# the full table), random-default (random codes, default cache; then more of them
# until BENCH_RSS_REDIRECTS, and memory A), cold (random codes, small cache),
# nginx-random (the same random-code client against nginx), memory B (a restarted hop
# with the default cache after BENCH_RSS_REDIRECTS random redirects).
#
# Method, in short (docs/benchmarks.md has the long form):
# - Servers (nginx with one worker, hop) run on CPU 0 and wrk on CPU 1 (taskset), so
#   each server gets exactly one core and never competes with the load generator.
#   tokio sizes its worker pool from the CPU affinity, so hop runs one worker.
# - Request logs are off on both sides: nginx `access_log off`, hop HOP_LOG_LEVEL=warn.
# - Each scenario reports requests/s and p99 from wrk --latency, and the server's CPU
#   time per request: utime+stime of the server process (/proc/PID/stat, all threads,
#   exited ones included) across the run, divided by the requests wrk completed. That
#   number still compares servers when the client, not the server, is the limit.
#   wrk's own CPU use is reported too: near 100% means wrk was the bottleneck.
#
# Output: stdout, bench/out/results.md, and everything raw in bench/out/run-<time>/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
LINKS=${BENCH_LINKS:-1000000}
RSS_REDIRECTS=${BENCH_RSS_REDIRECTS:-1000000}
POPULATE_TIMEOUT=${BENCH_POPULATE_TIMEOUT:-1800}
RSS_TIMEOUT=${BENCH_RSS_TIMEOUT:-900}
# The cold run needs a cache that holds under 5% of the links. The cache weighs an
# entry at ENTRY_OVERHEAD_BYTES (src/cache.rs) plus its code and URL, ~350 bytes for
# the URLs create.lua makes, so 5% x 240 bytes per link holds about 3.5% of them. The
# share actually held is computed and printed once the links exist.
COLD_CACHE_BYTES=${BENCH_COLD_CACHE_BYTES:-$((LINKS * 5 / 100 * 240))}
SERVER_CPU=0
CLIENT_CPU=1
# hop writes counted clicks every click_flush_interval_ms (1 s by default). Waiting a
# little longer before reading the CPU counters charges the last flush to the run.
SETTLE_SECONDS=1.5

# --------------------------------------------------------------------------- helpers

log() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() {
  printf '\nbench: FAILED: %s\n' "$*" >&2
  exit 1
}
WARNINGS=()
warn() {
  printf '   WARNING: %s\n' "$*" >&2
  WARNINGS+=("$*")
}

# to_ms DURATION: wrk's "501.00us" / "11.72ms" / "1.02s" / "2.00m" in milliseconds.
to_ms() {
  awk -v t="$1" 'BEGIN {
    v = t + 0; u = t; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    if (f < 0) { print "NaN"; exit }
    printf "%.3f", v * f
  }'
}

# calc EXPR: floating-point arithmetic with awk (bash only has integers).
calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; }

# cpu_ticks PID: utime + stime of the whole process, in clock ticks. Everything up to
# the ") " that closes the command name is cut first, so utime and stime (fields 14
# and 15 of /proc/PID/stat) become fields 12 and 13.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# mem_kib FILE FIELD: a "Field: N kB" line of a /proc file, in KiB.
mem_kib() { awk -v f="$2:" '$1 == f { print $2 }' "$1"; }

# free_port [EXCLUDED]: a loopback TCP port nobody listens on (bounded tries).
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    [ "$port" = "${1:-}" ] && continue
    if [ -z "$(ss -Htln "sport = :$port")" ]; then
      echo "$port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# wait_http URL SECONDS: polls until URL answers with a status below 400.
wait_http() {
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -sf -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  return 1
}

# http_status URL: the status code of one GET, redirects not followed.
http_status() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$1" || true; }

# sql QUERY: a read on the benchmark database, next to the running hop (WAL mode).
sql() { sqlite3 -cmd ".timeout 10000" "$DATA/hop.db" "$1"; }
links_stored() { sql "SELECT COUNT(*) FROM links"; }
# Total stored clicks; "?" if the schema has changed under this script.
clicks_stored() { sql "SELECT COALESCE(SUM(clicks), 0) FROM link_clicks" 2>/dev/null || echo "?"; }

# ------------------------------------------------------------------------- processes

NGINX_PID=""
NGINX_WORKER=""
HOP_PID=""
WRK_PID=""

# running PID: true while PID exists and has not exited (an exited child that is not
# reaped yet is a zombie, state Z, and `kill -0` would still succeed on it).
running() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || true
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL; reaps the child.
stop_pid() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill -TERM "$pid" 2>/dev/null || return 0
  while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_hop() {
  if [ -n "$HOP_PID" ]; then
    stop_pid "$HOP_PID" 20
    HOP_PID=""
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # wrk runs in the background (so its CPU use can be sampled); end a run in progress.
  [ -n "$WRK_PID" ] && kill -TERM "$WRK_PID" 2>/dev/null || true
  stop_hop
  if [ -n "$NGINX_PID" ]; then
    stop_pid "$NGINX_PID" 10
    # If the master had to be killed, its worker is left behind: end it too.
    [ -n "$NGINX_WORKER" ] && kill -KILL "$NGINX_WORKER" 2>/dev/null || true
  fi
  [ "$rc" -ne 0 ] && printf 'bench: stopped (exit %s); logs in %s\n' "$rc" "${WORK:-?}" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_nginx: the baseline. Its own config, prefix, pid file, logs and temp dirs in
# the work dir, so nothing of the Debian package's configuration or default site is
# read. One worker, like hop's one core; access log off, like hop at warn level.
start_nginx() {
  local dir=$WORK/nginx
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  # nginx closes a keep-alive connection after 1000 requests by default; hop does
  # not, so let nginx keep its connections too (reconnects would cost it CPU).
  keepalive_requests 1000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { return 302 https://example.com/target; }
  }
}
EOF
  taskset -c "$SERVER_CPU" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$dir/stdout.log" 2>&1 &
  NGINX_PID=$!
  wait_http "http://127.0.0.1:$NGINX_PORT/" 10 || die "nginx did not start; see $dir/error.log"
  NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
  [ -n "$NGINX_WORKER" ] || die "no nginx worker process under master $NGINX_PID"
  note "nginx master $NGINX_PID, worker $NGINX_WORKER on CPU $(taskset -cp "$NGINX_WORKER" | awk '{print $NF}'), port $NGINX_PORT"
}

# start_hop [ENV=VALUE...]: (re)starts hop on the benchmark database, pinned to the
# server core, request logs off. Extra settings come as HOP_* environment variables.
# All load comes from one client address, so the rate limits are raised far above
# what the run can reach: the buckets are still checked on every request (their cost
# is measured) but never refuse one.
BENCH_LIMITS=(HOP_RATE_LIMIT_REDIRECT_PER_MINUTE=1000000000 HOP_RATE_LIMIT_ADMIN_PER_MINUTE=1000000000)
start_hop() {
  stop_hop
  env HOP_LOG_LEVEL=warn "${BENCH_LIMITS[@]}" "$@" taskset -c "$SERVER_CPU" "$HOP" serve \
    --listen "127.0.0.1:$HOP_PORT" --data-dir "$DATA" --base-url "http://127.0.0.1:$HOP_PORT" \
    >>"$WORK/hop.log" 2>&1 &
  HOP_PID=$!
  wait_http "http://127.0.0.1:$HOP_PORT/healthz" 30 || die "hop did not answer /healthz; see $WORK/hop.log"
  note "hop $HOP_PID on CPU $(taskset -cp "$HOP_PID" | awk '{print $NF}'), port $HOP_PORT, $(ls "/proc/$HOP_PID/task" | wc -l) threads, settings: HOP_LOG_LEVEL=warn, rate limits raised ${*:-(default cache)}"
}

# ------------------------------------------------------------------------------ wrk

# run_wrk NAME URL SECONDS [SCRIPT [SCRIPT_ARGS...]]: one wrk run on the client core.
# Output goes to $WORK/wrk/NAME.txt. WRK_CPU_PCT is wrk's own CPU use while its clock
# runs: sampled from /proc between the "Running" line (printed once the scripts' init()
# is done; stdbuf makes it appear at once) and a second before the end, so building
# the request table for a million codes in init() does not count. Fails the whole
# benchmark if wrk fails; wrk stops itself after SECONDS, the deadline is a backstop.
run_wrk() {
  local name=$1 url=$2 seconds=$3
  shift 3
  local out=$WORK/wrk/$name.txt
  local cmd=(taskset -c "$CLIENT_CPU" stdbuf -oL wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --latency)
  if [ $# -gt 0 ]; then
    cmd+=(-s "$1" "$url")
    shift
    [ $# -gt 0 ] && cmd+=(-- "$@")
  else
    cmd+=("$url")
  fi
  "${cmd[@]}" >"$out" 2>&1 &
  WRK_PID=$! # taskset and stdbuf exec, so this is wrk itself
  local deadline=$((SECONDS + seconds + 120)) c0="" c1="" t0 t1
  while ! grep -q '^Running' "$out" && running "$WRK_PID" && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.05
  done
  if running "$WRK_PID"; then
    t0=$(date +%s.%N)
    c0=$(cpu_ticks "$WRK_PID" 2>/dev/null) || c0=""
    sleep "$(calc "$seconds > 2 ? $seconds - 1 : $seconds / 2" 2)"
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$WRK_PID" 2>/dev/null) || c1=""
  fi
  while running "$WRK_PID" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  kill -KILL "$WRK_PID" 2>/dev/null || true
  if ! wait "$WRK_PID"; then
    WRK_PID=""
    cat "$out" >&2
    die "wrk failed in scenario $name (${cmd[*]})"
  fi
  WRK_PID=""
  WRK_CPU_PCT="?"
  [ -n "$c0" ] && [ -n "$c1" ] && WRK_CPU_PCT=$(calc "100 * ($c1 - $c0) / $CLK_TCK / ($t1 - $t0)" 0)
  parse_wrk "$out"
}

# parse_wrk FILE: sets W_REQUESTS, W_SECONDS, W_P99_MS, W_ERRORS (answers >= 400 plus
# socket errors), W_ERROR_TEXT, and the create script's W_CREATED / W_NON201.
parse_wrk() {
  W_REQUESTS=$(awk '/ requests in / { print $1 }' "$1")
  local runtime
  runtime=$(awk '/ requests in / { sub(",", "", $4); print $4 }' "$1")
  W_SECONDS=$(calc "$(to_ms "$runtime") / 1000" 3)
  W_P99_MS=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$1")")
  local status socket
  status=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1")
  socket=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$1")
  W_ERRORS=$((${status:-0} + ${socket:-0}))
  W_ERROR_TEXT=$(grep -E 'Non-2xx|Socket errors|bench-lua last' "$1" | sed 's/^ *//' | paste -sd ';' - || true)
  W_CREATED=$(awk '/^bench-lua created=/ { split($2, a, "="); print a[2] }' "$1")
  W_NON201=$(awk '/^bench-lua created=/ { split($3, a, "="); print a[2] }' "$1")
  [ -n "$W_REQUESTS" ] && [ "$W_REQUESTS" -gt 0 ] || die "wrk completed no requests; see $1"
}

# check_creates NAME: a create run must answer 201 to every request, or the
# links/s it reports would count failures.
check_creates() {
  [ -n "$W_CREATED" ] || die "$1: create.lua printed no counts; see $WORK/wrk/$1.txt"
  if [ "$W_NON201" -gt 0 ] || [ "$W_ERRORS" -gt 0 ]; then
    die "$1: $W_NON201 answers were not 201 and $W_ERRORS wrk errors ($W_ERROR_TEXT); see $WORK/wrk/$1.txt"
  fi
}

declare -A RPS P99 CPU_US SRV_PCT WRK_PCT REQS ERRS
SCENARIOS=()

# measure NAME PID URL [SCRIPT [SCRIPT_ARGS...]]: a measured scenario of DURATION
# seconds; records requests/s, p99, server CPU per request and both sides' CPU use.
measure() {
  local name=$1 pid=$2 url=$3
  shift 3
  local before after
  before=$(cpu_ticks "$pid")
  run_wrk "$name" "$url" "$DURATION" "$@"
  sleep "$SETTLE_SECONDS"
  after=$(cpu_ticks "$pid")
  local cpu_s
  cpu_s=$(calc "($after - $before) / $CLK_TCK" 3)
  REQS[$name]=$W_REQUESTS
  RPS[$name]=$(calc "$W_REQUESTS / $W_SECONDS" 0)
  P99[$name]=$W_P99_MS
  CPU_US[$name]=$(calc "$cpu_s * 1e6 / $W_REQUESTS" 2)
  SRV_PCT[$name]=$(calc "100 * $cpu_s / $W_SECONDS" 0)
  WRK_PCT[$name]=$WRK_CPU_PCT
  ERRS[$name]=$W_ERRORS
  SCENARIOS+=("$name")
  printf '   %-15s %8s req/s   p99 %8s ms   %7s us server CPU/request   server CPU %3s%%   wrk CPU %3s%%   %s requests\n' \
    "$name" "${RPS[$name]}" "${P99[$name]}" "${CPU_US[$name]}" "${SRV_PCT[$name]}" "${WRK_PCT[$name]}" "$W_REQUESTS"
  [ "$W_ERRORS" -eq 0 ] || warn "$name: $W_ERRORS errors: $W_ERROR_TEXT"
}

# load_until_served NAME URL TARGET: random-code load on hop until this hop process
# has served TARGET redirects in total (SERVED counts them), bounded by RSS_TIMEOUT.
load_until_served() {
  local name=$1 url=$2 target=$3 deadline=$((SECONDS + RSS_TIMEOUT)) round=0 seconds
  while [ "$SERVED" -lt "$target" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$name: only $SERVED of $target redirects within ${RSS_TIMEOUT}s"
    round=$((round + 1))
    # Guess the time from the cold rate, at least 2 s and at most 120 s per round.
    seconds=$(((target - SERVED) / ${RPS[cold]:-${RPS[random-default]:-20000}} + 2))
    [ "$seconds" -gt 120 ] && seconds=120
    run_wrk "$name-$round" "$url" "$seconds" "$BENCH/random_codes.lua" "$CODES"
    [ "$W_ERRORS" -eq 0 ] || warn "$name-$round: $W_ERRORS errors: $W_ERROR_TEXT"
    SERVED=$((SERVED + W_REQUESTS))
    note "$name round $round: +$W_REQUESTS redirects ($(calc "$W_REQUESTS / $W_SECONDS" 0)/s), $SERVED in total"
  done
}

# memory LABEL: hop's memory now, from /proc/PID/status, into MEM[LABEL] (MiB).
declare -A MEM
# VmRSS counts a file page once per mapping, and each SQLite connection maps the
# database (mmap_size) on its own, so the database's pages can count twice. Pss from
# smaps_rollup counts every page once, so it is reported next to VmRSS.
memory() {
  local status=/proc/$HOP_PID/status rollup=/proc/$HOP_PID/smaps_rollup
  local rss hwm anon file pss
  rss=$(calc "$(mem_kib "$status" VmRSS) / 1024" 1)
  hwm=$(calc "$(mem_kib "$status" VmHWM) / 1024" 1)
  anon=$(calc "$(mem_kib "$status" RssAnon) / 1024" 1)
  file=$(calc "$(mem_kib "$status" RssFile) / 1024" 1)
  pss=$(calc "$(mem_kib "$rollup" Pss) / 1024" 1)
  MEM[$1]="$rss|$hwm|$anon|$file|$pss"
  note "hop memory ($1): VmRSS $rss MiB (anonymous $anon, file-backed $file), peak VmHWM $hwm MiB, Pss $pss MiB"
}

# -------------------------------------------------------------------------- checks

for tool in cargo wrk nginx sqlite3 taskset curl ss pgrep getconf; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install -y wrk nginx-light sqlite3 curl)"
done
[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs: one for the servers, one for wrk"
# Settings left in the environment would change what is measured (HOP_CACHE_MAX_BYTES
# in particular): hop gets exactly the settings this script names.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^HOP_' || true)

log "building release"
cargo build --release --quiet
HOP=$ROOT/target/release/hop
CLK_TCK=$(getconf CLK_TCK)
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null)" ] &&
  COMMIT="$COMMIT + uncommitted changes"
note "$("$HOP" --version), built from $COMMIT"

WORK=$BENCH/out/run-$(date +%Y%m%d-%H%M%S)
DATA=$WORK/data
CODES=$WORK/codes.txt
mkdir -p "$WORK/wrk" "$DATA"
NGINX_PORT=$(free_port)
HOP_PORT=$(free_port "$NGINX_PORT")
note "work dir $WORK"
START_TIME=$SECONDS

# ------------------------------------------------------------------------ scenarios

log "starting nginx (baseline) and hop on CPU $SERVER_CPU; wrk runs on CPU $CLIENT_CPU"
start_nginx
KEY=$("$HOP" keys create --name bench --admin --data-dir "$DATA" | tail -n 1)
[ -n "$KEY" ] || die "hop keys create printed no key"
start_hop
HOT_CODE=$(curl -sf --max-time 5 -X POST "http://127.0.0.1:$HOP_PORT/api/v1/links" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"url":"https://example.com/target"}' | sed -n 's/.*"code" *: *"\([^"]*\)".*/\1/p')
[ -n "$HOT_CODE" ] || die "could not create the hot link"
[ "$(http_status "http://127.0.0.1:$HOP_PORT/$HOT_CODE")" = 302 ] || die "GET /$HOT_CODE is not a 302"
[ "$(http_status "http://127.0.0.1:$NGINX_PORT/")" = 302 ] || die "nginx GET / is not a 302"
note "hot code: $HOT_CODE"

log "redirects: nginx fixed 302 (GET /) vs hop one cached code (GET /$HOT_CODE, clicks counted)"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/"
CLICKS_BEFORE=$(clicks_stored)
measure hot "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$HOT_CODE"
CLICKS_AFTER=$(clicks_stored)
if [ "$CLICKS_BEFORE" != "?" ] && [ "$CLICKS_AFTER" != "?" ]; then
  CLICKS_HOT=$((CLICKS_AFTER - CLICKS_BEFORE))
  note "clicks stored during the hot run: $CLICKS_HOT for ${REQS[hot]} redirects"
  # wrk may stop with up to one request per connection answered but not counted.
  [ "$CLICKS_HOT" -ge "${REQS[hot]}" ] || warn "hot: only $CLICKS_HOT clicks stored for ${REQS[hot]} redirects"
else
  CLICKS_HOT="?"
  warn "could not read link_clicks to check that clicks were stored"
fi

log "creates: POST /api/v1/links, $CONNECTIONS connections, a new URL per request"
LINKS_BEFORE=$(links_stored)
measure create "$HOP_PID" "http://127.0.0.1:$HOP_PORT/api/v1/links" "$BENCH/create.lua" "$KEY" "create"
check_creates create
LINKS_AFTER=$(links_stored)
# The durable rate is 201 answers per second, cross-checked against the database.
RPS[create]=$(calc "$W_CREATED / $W_SECONDS" 0)
note "201 Created: $W_CREATED ($((LINKS_AFTER - LINKS_BEFORE)) new rows in the database) = ${RPS[create]} durable links/s"
[ $((LINKS_AFTER - LINKS_BEFORE)) -ge "$W_CREATED" ] ||
  warn "create: $W_CREATED answers were 201 but only $((LINKS_AFTER - LINKS_BEFORE)) links are in the database"

log "populating to $LINKS links with the same create load"
deadline=$((SECONDS + POPULATE_TIMEOUT))
round=0
populate_start=$SECONDS
stored=$(links_stored)
while [ "$stored" -lt "$LINKS" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "only $stored of $LINKS links after ${POPULATE_TIMEOUT}s"
  round=$((round + 1))
  seconds=$(((LINKS - stored) / (RPS[create] > 0 ? RPS[create] : 1000) + 1))
  [ "$seconds" -gt 120 ] && seconds=120
  run_wrk "populate-$round" "http://127.0.0.1:$HOP_PORT/api/v1/links" "$seconds" \
    "$BENCH/create.lua" "$KEY" "populate-$round"
  check_creates "populate-$round"
  stored=$(links_stored)
  note "round $round: $W_CREATED created ($(calc "$W_CREATED / $W_SECONDS" 0)/s), $stored links stored"
done
note "populate took $((SECONDS - populate_start)) s"

# The first create run starts on an empty table; creates are measured again now that
# the table is full, since inserts into a bigger B-tree cost more.
log "creates again, with $stored links stored"
FULL_BEFORE=$stored
measure create-full "$HOP_PID" "http://127.0.0.1:$HOP_PORT/api/v1/links" "$BENCH/create.lua" "$KEY" "create-full"
check_creates create-full
RPS[create-full]=$(calc "$W_CREATED / $W_SECONDS" 0)
stored=$(links_stored)
note "201 Created: $W_CREATED ($((stored - FULL_BEFORE)) new rows in the database) = ${RPS[create-full]} durable links/s"
[ $((stored - FULL_BEFORE)) -ge "$W_CREATED" ] ||
  warn "create-full: $W_CREATED answers were 201 but only $((stored - FULL_BEFORE)) links are in the database"
sql "SELECT code FROM links" >"$CODES"
CODE_COUNT=$(wc -l <"$CODES")
note "$CODE_COUNT codes written to $CODES"
SAMPLE=$(shuf -n 1 "$CODES")
[ "$(http_status "http://127.0.0.1:$HOP_PORT/$SAMPLE")" = 302 ] || die "GET /$SAMPLE is not a 302"

log "memory A: the same hop process (default cache) after the creates, then $RSS_REDIRECTS+ random redirects"
memory after-populate
measure random-default "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$BENCH/random_codes.lua" "$CODES"
SERVED=${REQS[random-default]}
load_until_served random-default "http://127.0.0.1:$HOP_PORT/" "$RSS_REDIRECTS"
SERVED_A=$SERVED
memory same-process

# How many entries the cold cache holds, by the cache's own weighing of an entry.
ENTRY_OVERHEAD=$(sed -n 's/.*const ENTRY_OVERHEAD_BYTES: u64 = \([0-9]*\);.*/\1/p' src/cache.rs)
ENTRY_BYTES=$(sql "SELECT CAST(AVG(LENGTH(code) + LENGTH(url)) AS INTEGER) + ${ENTRY_OVERHEAD:-300} FROM links")
COLD_ENTRIES=$((COLD_CACHE_BYTES / ENTRY_BYTES))
log "cold redirects: random codes over $CODE_COUNT links, cache $COLD_CACHE_BYTES bytes (~$COLD_ENTRIES entries at ~$ENTRY_BYTES B = $(calc "100 * $COLD_ENTRIES / $CODE_COUNT" 1)% of the links)"
start_hop HOP_CACHE_MAX_BYTES="$COLD_CACHE_BYTES"
[ "$(http_status "http://127.0.0.1:$HOP_PORT/$SAMPLE")" = 302 ] || die "GET /$SAMPLE is not a 302"
measure cold "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$BENCH/random_codes.lua" "$CODES"

log "the random-code client against nginx: how far this wrk script can go"
measure nginx-random "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/" "$BENCH/random_codes.lua" "$CODES"

log "memory B: a fresh hop with the default cache, after $RSS_REDIRECTS+ random redirects"
start_hop
SERVED=0
load_until_served rss "http://127.0.0.1:$HOP_PORT/" "$RSS_REDIRECTS"
SERVED_B=$SERVED
memory fresh-process

# --------------------------------------------------------------------------- report

# verdict VALUE OP TARGET: "met" or "NOT met", on the unrounded value.
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "NOT met" }'; }

# Two readings of each target: req/s as measured, and the capacity ratio implied by
# CPU per request (what the req/s ratio would be if both servers ran their core at
# 100%), which is the fair one when wrk, not the server, was the limit.
HOT_VS_NGINX=$(calc "${RPS[hot]} / ${RPS[nginx]}" 3)
HOT_VS_NGINX_CPU=$(calc "${CPU_US[nginx]} / ${CPU_US[hot]}" 3)
COLD_VS_HOT=$(calc "${RPS[cold]} / ${RPS[hot]}" 3)
COLD_VS_HOT_CPU=$(calc "${CPU_US[hot]} / ${CPU_US[cold]}" 3)
COLD_VS_CLIENT=$(calc "${RPS[cold]} / ${RPS[nginx-random]}" 3)
IFS='|' read -r RSS_A HWM_A ANON_A FILE_A PSS_A <<<"${MEM[same-process]}"
IFS='|' read -r RSS_B HWM_B ANON_B FILE_B PSS_B <<<"${MEM[fresh-process]}"
IFS='|' read -r RSS_P _ _ _ PSS_P <<<"${MEM[after-populate]}"

describe() {
  case $1 in
    nginx) echo "nginx, fixed 302 (GET /)" ;;
    hot) echo "hop, one cached code, clicks counted" ;;
    create) echo "hop, POST /api/v1/links from an empty table (req/s = 201s/s)" ;;
    create-full) echo "hop, POST /api/v1/links with $FULL_BEFORE links stored" ;;
    random-default) echo "hop, random codes, default cache" ;;
    cold) echo "hop, random codes, cache < 5% of links" ;;
    nginx-random) echo "nginx, same random-code wrk script" ;;
  esac
}

{
  echo "# hop benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hop built from $COMMIT."
  echo "Machine: $(nproc --all) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)."
  echo "Servers pinned to CPU $SERVER_CPU (nginx: 1 worker, access_log off; hop: HOP_LOG_LEVEL=warn, so no request logs), wrk pinned to CPU $CLIENT_CPU."
  echo "wrk: 1 thread, $CONNECTIONS connections, ${DURATION} s per scenario. $LINKS links; cold cache HOP_CACHE_MAX_BYTES=$COLD_CACHE_BYTES (~$COLD_ENTRIES entries, $(calc "100 * $COLD_ENTRIES / $CODE_COUNT" 1)% of the links)."
  echo
  echo "| scenario | what | req/s | p99 ms | server CPU µs/req | server CPU % | wrk CPU % | requests | errors |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${SCENARIOS[@]}"; do
    echo "| $name | $(describe "$name") | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${SRV_PCT[$name]} | ${WRK_PCT[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "| ratio | value | target | verdict |"
  echo "| --- | ---: | --- | --- |"
  echo "| hot / nginx, req/s | $HOT_VS_NGINX | ≥ 0.8 | $(verdict "$HOT_VS_NGINX" ">=" 0.8) |"
  echo "| hot / nginx, by CPU per request (nginx µs / hot µs) | $HOT_VS_NGINX_CPU | ≥ 0.8 | $(verdict "$HOT_VS_NGINX_CPU" ">=" 0.8) |"
  echo "| cold / hot, req/s | $COLD_VS_HOT | ≥ 0.5 | $(verdict "$COLD_VS_HOT" ">=" 0.5) |"
  echo "| cold / hot, by CPU per request (hot µs / cold µs) | $COLD_VS_HOT_CPU | ≥ 0.5 | $(verdict "$COLD_VS_HOT_CPU" ">=" 0.5) |"
  echo "| cold / nginx-random, req/s (near 1 = the wrk script is the limit) | $COLD_VS_CLIENT | | |"
  echo "| durable creates/s, $CONNECTIONS clients, empty table | ${RPS[create]} | ≥ 10000 | $(verdict "${RPS[create]}" ">=" 10000) |"
  echo "| durable creates/s, $CONNECTIONS clients, $FULL_BEFORE links stored | ${RPS[create-full]} | ≥ 10000 | $(verdict "${RPS[create-full]}" ">=" 10000) |"
  echo
  echo "Memory with the default cache (/proc/PID/status and smaps_rollup). File-backed is"
  echo "mostly the memory-mapped database; VmRSS counts it once per SQLite connection that"
  echo "maps it, Pss counts each page once."
  echo
  echo "| hop process | VmRSS MiB | peak VmHWM MiB | anonymous MiB | file-backed MiB | Pss MiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  echo "| A: created $stored links, served ${REQS[hot]} hot and $SERVED_A random redirects | $RSS_A | $HWM_A | $ANON_A | $FILE_A | $PSS_A |"
  echo "| B: restarted, then served $SERVED_B random redirects | $RSS_B | $HWM_B | $ANON_B | $FILE_B | $PSS_B |"
  echo
  echo "Process A right after the creates, before the random redirects: VmRSS $RSS_P MiB, Pss $PSS_P MiB."
  echo "Clicks stored during the hot run: $CLICKS_HOT for ${REQS[hot]} redirects."
  echo "Total time: $((SECONDS - START_TIME)) s. Raw wrk output: ${WORK#"$ROOT"/}/wrk/."
  if [ ${#WARNINGS[@]} -gt 0 ]; then
    echo
    echo "Warnings:"
    for w in "${WARNINGS[@]}"; do echo "- $w"; done
  fi
} >"$WORK/results.md"
cp "$WORK/results.md" "$BENCH/out/results.md"
log "results (also in bench/out/results.md)"
echo
cat "$WORK/results.md"
