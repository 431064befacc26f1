#!/usr/bin/env bash
# Click analytics on the hot path: the same cached redirect with analytics on and off.
#
#   bash bench/analytics.sh                   # 10 s per scenario
#   BENCH_DURATION=5 bash bench/analytics.sh
#
# hop on CPU 0 (one core, so the pipeline's enrichment and writes compete with the
# redirects for it), wrk on CPU 1 with 64 connections and browser headers
# (bench/browser.lua), request logs off. Scenarios: nginx (fixed 302, the usual
# baseline), hot-analytics (default settings: analytics on, visits stored with raw rows
# and rollups), hot-plain (analytics_enabled = false). The target: hot-analytics keeps
# ≥ 90% of hot-plain's requests/s. The pipeline's own counters are checked afterwards:
# every redirect stored, none dropped.
# Then `cargo bench --bench analytics` (ingest rate and stats latency, in-process).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=64
SERVER_CPU=0
CLIENT_CPU=1
SETTLE_SECONDS=1.5

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare

KEY=$("$HOP" keys create --name bench --admin --data-dir "$DATA" | tail -n 1)
[ -n "$KEY" ] || die "hop keys create printed no key"
start_nginx
start_hop
CODE=$(curl -sf -X POST "http://127.0.0.1:$HOP_PORT/api/v1/links" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"url":"https://example.com/target"}' |
  sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
[ -n "$CODE" ] || die "could not create the hot link"

log "nginx baseline, then hop's hot redirect with analytics on"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/" "$BENCH/browser.lua"
VISITS_BEFORE=$(sql "SELECT COALESCE(SUM(visits), 0) FROM visit_blocks")
measure hot-analytics "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE" "$BENCH/browser.lua"
sleep 1
VISITS_STORED=$(($(sql "SELECT COALESCE(SUM(visits), 0) FROM visit_blocks") - VISITS_BEFORE))
note "visits stored during hot-analytics: $VISITS_STORED for ${REQS[hot-analytics]} redirects"
[ "$VISITS_STORED" -ge "${REQS[hot-analytics]}" ] ||
  warn "hot-analytics: only $VISITS_STORED visits stored for ${REQS[hot-analytics]} redirects (dropped?)"

log "hop's hot redirect with analytics off"
start_hop HOP_ANALYTICS_ENABLED=false
measure hot-plain "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE" "$BENCH/browser.lua"
stop_hop

RATIO_RPS=$(calc "${RPS[hot-analytics]} / ${RPS[hot-plain]}" 3)
RATIO_CPU=$(calc "${CPU_US[hot-plain]} / ${CPU_US[hot-analytics]}" 3)

log "in-process: cargo bench --bench analytics (pinned to CPU $SERVER_CPU)"
taskset -c "$SERVER_CPU" cargo bench --quiet --bench analytics 2>/dev/null | tee "$WORK/analytics-bench.txt"

{
  echo "# hop analytics benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hop built from $COMMIT; servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU (1 thread, $CONNECTIONS connections, browser headers), $DURATION s per scenario."
  echo
  echo "| scenario | req/s | p99 ms | server CPU µs/req | server CPU % | wrk CPU % | requests | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${SCENARIOS[@]}"; do
    echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${SRV_PCT[$name]} | ${WRK_PCT[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "Analytics on / off: **$RATIO_RPS** by req/s, **$RATIO_CPU** by CPU per request (target ≥ 0.9)."
  echo "Visits stored during hot-analytics: $VISITS_STORED for ${REQS[hot-analytics]} redirects."
  echo
  echo '```'
  cat "$WORK/analytics-bench.txt"
  echo '```'
} >"$WORK/results.md"
cp "$WORK/results.md" "$BENCH/out/analytics-results.md"
log "results (also in bench/out/analytics-results.md)"
cat "$WORK/results.md"
