#!/usr/bin/env bash
# Sustained cold redirects over many links: does a redirect cost more the longer hop
# runs, as its visits pile up? One hop process serves BENCH_ROUNDS back-to-back rounds
# of uniformly random codes (analytics on, cache < 5 % of the links); each round's
# server CPU per redirect is reported, and the verdict is last round / first round
# (target ≤ 1.1). With BENCH_COMPARE_OFF=1 the same rounds run again on a fresh
# process with analytics off, and the report adds on/off per round.
#
#   bash bench/steady.sh                                   # 1M links, 10 rounds of 10 s
#   BENCH_LINKS=200000 BENCH_ROUNDS=5 BENCH_DURATION=5 bash bench/steady.sh
#   BENCH_BROWSER=0 bash bench/steady.sh                   # wrk's bare requests (bots)
#
# Settings (environment):
#   BENCH_LINKS=1000000    links in the store before the rounds
#   BENCH_ROUNDS=10        consecutive rounds on one process
#   BENCH_DURATION=10      seconds per round
#   BENCH_BROWSER=1        requests carry browser headers: visits are humans, stored
#                          with every breakdown (bench/random_codes.lua)
#   BENCH_COMPARE_OFF=0    also run the rounds with analytics_enabled = false
#   BENCH_HOP_ENV          HOP_* settings for every hop of the run, space-separated
#   BENCH_DATABASE_URL     PostgreSQL instead of SQLite (bench/lib.sh)
# Pinning, CPU accounting and wrk are as in run.sh (bench/lib.sh); nginx answering a
# fixed 302 is measured first with the same script, as the ceiling of this client.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
LINKS=${BENCH_LINKS:-1000000}
ROUNDS=${BENCH_ROUNDS:-10}
DURATION=${BENCH_DURATION:-10}
export BENCH_BROWSER=${BENCH_BROWSER:-1}
COMPARE_OFF=${BENCH_COMPARE_OFF:-0}
read -r -a HOP_ENV <<<"${BENCH_HOP_ENV:-}"
CONNECTIONS=64
SERVER_CPU=0
CLIENT_CPU=1
SETTLE_SECONDS=1.5
COLD_CACHE_BYTES=$((LINKS * 5 / 100 * 240))
POPULATE_TIMEOUT=1800

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare

KEY=$("$HOP" keys create --name bench --admin --data-dir "$DATA" | tail -n 1)
[ -n "$KEY" ] || die "hop keys create printed no key"
start_nginx
start_hop

log "populating to $LINKS links"
deadline=$((SECONDS + POPULATE_TIMEOUT))
round=0
while [ "$(links_stored)" -lt "$LINKS" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "only $(links_stored) of $LINKS links after ${POPULATE_TIMEOUT}s"
  round=$((round + 1))
  run_wrk "populate-$round" "http://127.0.0.1:$HOP_PORT/api/v1/links" 30 \
    "$BENCH/create.lua" "$KEY" "populate-$round"
  check_creates "populate-$round"
  note "round $round: $(links_stored) links stored"
done
sql "SELECT code FROM links" >"$CODES"
[ "$(http_status "http://127.0.0.1:$HOP_PORT/$(head -n 1 "$CODES")")" = 302 ] ||
  die "a stored code does not answer 302"

log "nginx baseline"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/" "$BENCH/random_codes.lua" "$CODES"

# rounds LABEL [SETTING...]: BENCH_ROUNDS rounds on one fresh hop process.
rounds() {
  local label=$1
  shift
  start_hop HOP_CACHE_MAX_BYTES="$COLD_CACHE_BYTES" "${HOP_ENV[@]}" "$@"
  for round in $(seq "$ROUNDS"); do
    measure "$label-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" \
      "$BENCH/random_codes.lua" "$CODES"
  done
  note "$label: $(clicks_stored) clicks stored, database $(du -sm "$DATA" | cut -f1) MB"
  stop_hop
}

log "$ROUNDS rounds of $DURATION s, analytics on"
rounds on
if [ "$COMPARE_OFF" = 1 ]; then
  log "$ROUNDS rounds of $DURATION s, analytics off"
  rounds off HOP_ANALYTICS_ENABLED=false
fi

{
  echo "# hop: $ROUNDS consecutive cold rounds over $LINKS links"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $COMMIT, $BACKEND. hop on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU (1 thread, $CONNECTIONS connections), $DURATION s per round, cache $COLD_CACHE_BYTES bytes, browser headers: $BENCH_BROWSER, settings: ${HOP_ENV[*]:-defaults}."
  echo
  echo "nginx (fixed 302, same script): ${RPS[nginx]} req/s"
  echo
  echo "| round | on: req/s | on: CPU µs/redirect | on: p99 ms |$([ "$COMPARE_OFF" = 1 ] && echo ' off: req/s | off: CPU µs/redirect | on/off req/s |')"
  echo "|---|---|---|---|$([ "$COMPARE_OFF" = 1 ] && echo '---|---|---|')"
  for round in $(seq "$ROUNDS"); do
    line="| $round | ${RPS[on-$round]} | ${CPU_US[on-$round]} | ${P99[on-$round]} |"
    if [ "$COMPARE_OFF" = 1 ]; then
      line="$line ${RPS[off-$round]} | ${CPU_US[off-$round]} | $(calc "${RPS[on-$round]} / ${RPS[off-$round]}") |"
    fi
    echo "$line"
  done
  echo
  echo "CPU per redirect, last round / first, analytics on: $(calc "${CPU_US[on-$ROUNDS]} / ${CPU_US[on-1]}") (target ≤ 1.1)"
} | tee "$WORK/report.md"
note "report: $WORK/report.md"
