#!/usr/bin/env bash
# Click analytics on the hot path: the same cached redirect with analytics on and off,
# first from one browser (every visit the same visitor), then from many (every visit a
# visitor the queue has not seen: bench/visitors.lua).
#
#   bash bench/analytics.sh                   # 3 rounds, 10 s per scenario
#   BENCH_DURATION=5 BENCH_ROUNDS=1 bash bench/analytics.sh
#
# hop on CPU 0 (one core, so the pipeline's enrichment and writes compete with the
# redirects for it), wrk on CPU 1 with 64 connections and browser headers
# (bench/browser.lua), request logs off. Scenarios: nginx (fixed 302, the usual
# baseline), hot-analytics (default settings: analytics on, raw visits and rollups
# stored), hot-plain (analytics_enabled = false), then visitors-analytics and
# visitors-plain, the same with bench/visitors.lua. The target: hot-analytics keeps
# ≥ 90% of hot-plain's requests/s. Stored visits are counted afterwards: every
# redirect stored, none dropped. On and off alternate, a fresh hop each time, for
# BENCH_ROUNDS rounds (3): the ratios are of the medians, because one run on a shared
# machine can be 15% off.
# Then `cargo bench --bench analytics` (ingest rate and stats latency, in-process).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
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
# X-Forwarded-For from wrk (bench/visitors.lua) names the visitor.
TRUST=HOP_TRUSTED_PROXIES=127.0.0.1/32
start_hop "$TRUST"
CODE=$(curl -sf -X POST "http://127.0.0.1:$HOP_PORT/api/v1/links" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"url":"https://example.com/target"}' |
  sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
[ -n "$CODE" ] || die "could not create the hot link"

log "nginx baseline"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/" "$BENCH/browser.lua"

declare -A STORED
# measure_stored NAME SCRIPT: measure, then check that every visit was stored.
measure_stored() {
  local before
  before=$(sql "SELECT COALESCE(SUM(visits), 0) FROM visit_blocks")
  measure "$1" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE" "$2"
  sleep 1
  STORED[$1]=$(($(sql "SELECT COALESCE(SUM(visits), 0) FROM visit_blocks") - before))
  note "visits stored during $1: ${STORED[$1]} for ${REQS[$1]} redirects"
  [ "${STORED[$1]}" -ge "${REQS[$1]}" ] ||
    warn "$1: only ${STORED[$1]} visits stored for ${REQS[$1]} redirects (dropped?)"
}

for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS: analytics on"
  start_hop "$TRUST"
  measure_stored "hot-analytics-$round" "$BENCH/browser.lua"
  measure_stored "visitors-analytics-$round" "$BENCH/visitors.lua"
  log "round $round of $ROUNDS: analytics off"
  start_hop "$TRUST" HOP_ANALYTICS_ENABLED=false
  measure "hot-plain-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE" "$BENCH/browser.lua"
  measure "visitors-plain-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/$CODE" "$BENCH/visitors.lua"
done
stop_hop

declare -A MED_RPS MED_CPU
for name in hot-analytics visitors-analytics hot-plain visitors-plain; do
  MED_RPS[$name]=$(median "$name" RPS)
  MED_CPU[$name]=$(median "$name" CPU_US)
done
RATIO_RPS=$(calc "${MED_RPS[hot-analytics]} / ${MED_RPS[hot-plain]}" 3)
RATIO_CPU=$(calc "${MED_CPU[hot-plain]} / ${MED_CPU[hot-analytics]}" 3)
VRATIO_RPS=$(calc "${MED_RPS[visitors-analytics]} / ${MED_RPS[visitors-plain]}" 3)
VRATIO_CPU=$(calc "${MED_CPU[visitors-plain]} / ${MED_CPU[visitors-analytics]}" 3)

log "in-process: cargo bench --bench analytics (pinned to CPU $SERVER_CPU)"
taskset -c "$SERVER_CPU" cargo bench --quiet --bench analytics 2>/dev/null | tee "$WORK/analytics-bench.txt"

{
  echo "# hop analytics benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hop built from $COMMIT; servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU (1 thread, $CONNECTIONS connections, browser headers), $DURATION s per scenario, $ROUNDS rounds."
  echo
  echo "| scenario | req/s | p99 ms | server CPU µs/req | server CPU % | wrk CPU % | requests | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${SCENARIOS[@]}"; do
    echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${SRV_PCT[$name]} | ${WRK_PCT[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "Medians over the rounds (req/s; server CPU µs/req):"
  for name in hot-analytics hot-plain visitors-analytics visitors-plain; do
    echo "- $name: ${MED_RPS[$name]}; ${MED_CPU[$name]}"
  done
  echo
  echo "Analytics on / off, one visitor: **$RATIO_RPS** by req/s, **$RATIO_CPU** by CPU per request (target ≥ 0.9)."
  echo "Analytics on / off, a new visitor each request: **$VRATIO_RPS** by req/s, **$VRATIO_CPU** by CPU per request."
  stored=0 served=0
  for name in "${!STORED[@]}"; do
    stored=$((stored + STORED[$name]))
    served=$((served + REQS[$name]))
  done
  echo "Visits stored with analytics on: $stored for $served redirects."
  echo
  echo '```'
  cat "$WORK/analytics-bench.txt"
  echo '```'
} >"$WORK/results.md"
cp "$WORK/results.md" "$BENCH/out/analytics-results.md"
log "results (also in bench/out/analytics-results.md)"
cat "$WORK/results.md"
