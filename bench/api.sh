#!/usr/bin/env bash
# API benchmarks: bulk creates, and what authentication and rate limiting cost.
#
#   bash bench/api.sh                      # defaults: 10 s per scenario
#   BENCH_DURATION=5 bash bench/api.sh     # quicker
#
# Scenarios (hop on CPU 0, wrk on CPU 1, request logs off, as in bench/run.sh):
# - bulk: POST /api/v1/links/bulk, 1,000 links per request, 8 connections, from an
#   empty database; durable links/s = rows added to `links` / seconds.
# - get-limited / get-unlimited: GET /api/v1/links/{code} with a user's key over 1,000
#   links, rate limits checked (raised far above the load) vs off; the difference in
#   server CPU per request is what rate limiting costs over HTTP.
# - then `cargo bench --bench auth_overhead`: authentication and rate limiting timed
#   in-process against the whole routed request.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=8
SERVER_CPU=0
CLIENT_CPU=1
SETTLE_SECONDS=1.5

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare

"$HOP" users add bench-user --data-dir "$DATA" >/dev/null
KEY=$("$HOP" keys create --user bench-user --name bench --data-dir "$DATA" | tail -n 1)
[ -n "$KEY" ] || die "hop keys create printed no key"
BENCH_LIMITS+=(HOP_RATE_LIMIT_USER_PER_MINUTE=1000000000)

log "bulk creates: POST /api/v1/links/bulk, 1,000 links per request, $CONNECTIONS connections"
start_hop
BEFORE=$(links_stored)
measure bulk "$HOP_PID" "http://127.0.0.1:$HOP_PORT/api/v1/links/bulk" "$BENCH/bulk.lua" "$KEY"
FAILED=$(awk '/^bench-lua failed=/ { split($2, a, "="); print a[2] }' "$WORK/wrk/bulk.txt")
[ "${FAILED:-1}" -eq 0 ] || die "bulk: $FAILED answers were not 200"
ADDED=$(($(links_stored) - BEFORE))
BULK_RATE=$(calc "$ADDED / $W_SECONDS" 0)
note "bulk: $ADDED links stored in $W_SECONDS s = $BULK_RATE durable links/s (target 50,000)"

log "GET /api/v1/links/{code} with a user's key: rate limits checked vs off"
# 1,000 links of the user's, in one bulk request, read back by their URLs.
BODY=$(for i in $(seq 1 1000); do printf '{"url":"https://example.com/get/%d"}\n' "$i"; done | paste -sd, -)
curl -sf -o /dev/null -X POST "http://127.0.0.1:$HOP_PORT/api/v1/links/bulk" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "{\"links\":[$BODY]}" ||
  die "could not create the links to read"
CODES=$WORK/get-codes.txt
sql "SELECT code FROM links WHERE url LIKE 'https://example.com/get/%'" >"$CODES"
[ "$(wc -l <"$CODES")" -eq 1000 ] || die "expected 1,000 links to read, found $(wc -l <"$CODES")"
start_hop
measure get-limited "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$BENCH/random_codes.lua" "$CODES" /api/v1/links "$KEY"
start_hop HOP_RATE_LIMIT_USER_PER_MINUTE=0
measure get-unlimited "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" "$BENCH/random_codes.lua" "$CODES" /api/v1/links "$KEY"
LIMIT_US=$(calc "${CPU_US[get-limited]} - ${CPU_US[get-unlimited]}" 2)
note "rate limiting over HTTP: $LIMIT_US µs of ${CPU_US[get-limited]} µs per request ($(calc "100 * $LIMIT_US / ${CPU_US[get-unlimited]}" 1)%)"
stop_hop

log "in-process: cargo bench --bench auth_overhead"
cargo bench --quiet --bench auth_overhead 2>/dev/null | tee "$WORK/auth_overhead.txt"

{
  echo "# hop API benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hop built from $COMMIT; hop on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, $DURATION s per scenario."
  echo
  echo "| scenario | req/s | p99 ms | server CPU µs/req | server CPU % | requests | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${SCENARIOS[@]}"; do
    echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${SRV_PCT[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "Bulk: $ADDED links stored in $W_SECONDS s = **$BULK_RATE durable links/s** (target ≥ 50,000)."
  echo "Rate limiting over HTTP: $LIMIT_US µs per request."
  echo
  echo '```'
  cat "$WORK/auth_overhead.txt"
  echo '```'
} >"$WORK/results.md"
cp "$WORK/results.md" "$BENCH/out/api-results.md"
log "results (also in bench/out/api-results.md)"
cat "$WORK/results.md"
