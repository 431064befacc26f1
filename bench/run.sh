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
#   BENCH_DATABASE_URL         run on PostgreSQL: a new database on this server (bench/lib.sh)
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

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare

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
  echo "Backend: $BACKEND."
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
