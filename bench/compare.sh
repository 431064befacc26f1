#!/usr/bin/env bash
# Two hops head to head, in alternating rounds, with nginx measured in the same run:
# the working tree ("new") against a git revision ("base"), or the working tree
# against itself with other settings.
#
#   BENCH_BASE=HEAD~2 bash bench/compare.sh
#   BENCH_BASE=main BENCH_ROUNDS=5 BENCH_DURATION=8 BENCH_LINKS=200000 bash bench/compare.sh
#   BENCH_NEW_ENV="HOP_BLOCKLIST_FILES=/tmp/list.txt" bash bench/compare.sh
#
# Settings (environment):
#   BENCH_BASE                 the revision to compare against (default: the working
#                              tree itself, for comparing settings)
#   BENCH_NEW_ENV, BENCH_BASE_ENV   HOP_* settings for each side, space-separated
#   BENCH_LABEL                what the comparison is, for the report
#   BENCH_ROUNDS=3             rounds; each round runs every scenario on both builds
#   BENCH_DURATION=6           seconds of wrk per measured scenario
#   BENCH_LINKS=100000         links each build's store holds before the rounds
#   BENCH_BROWSER=1            cold redirects carry browser headers, so visits are
#                              humans stored with breakdowns (bench/random_codes.lua)
#
# Scenarios, each build in a fresh process every round: hot (one cached code, clicks
# counted), cold (random codes over BENCH_LINKS links, cache < 5 % of them), create
# (POST /api/v1/links, 64 connections). Each build gets a store of its own, populated
# through its own API, so a base from before a migration is compared fairly. The base
# is built in a detached worktree under bench/out/base/ with its own target directory,
# kept between runs so a second comparison against the same base builds nothing.
# Pinning, CPU accounting and wrk are as in run.sh (bench/lib.sh). The verdict is the
# ratio of medians, new / base, by server CPU per request (lower is better) and by
# requests per second: on a shared machine one run can be 15 % off, a median of
# alternating rounds much less.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
BASE_REV=${BENCH_BASE:-}
read -r -a NEW_ENV <<<"${BENCH_NEW_ENV:-}"
read -r -a BASE_ENV <<<"${BENCH_BASE_ENV:-}"
LABEL=${BENCH_LABEL:-new against base}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-6}
LINKS=${BENCH_LINKS:-100000}
CONNECTIONS=64
SERVER_CPU=0
CLIENT_CPU=1
SETTLE_SECONDS=1.5
COLD_CACHE_BYTES=$((LINKS * 5 / 100 * 240))

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare
NEW_HOP=$HOP
NEW_COMMIT=$COMMIT

if [ -n "$BASE_REV" ]; then
  log "building the base ($BASE_REV) in bench/out/base"
  BASE_SHA=$(git rev-parse --verify "$BASE_REV^{commit}") || die "no such revision: $BASE_REV"
  BASE_TREE=$BENCH/out/base/tree
  if [ -d "$BASE_TREE" ]; then
    git -C "$BASE_TREE" checkout --quiet --detach "$BASE_SHA"
  else
    git worktree add --quiet --detach "$BASE_TREE" "$BASE_SHA"
  fi
  (cd "$BASE_TREE" && CARGO_TARGET_DIR=$BENCH/out/base/target cargo build --release --quiet)
  BASE_HOP=$BENCH/out/base/target/release/hop
  BASE_NAME="$(git rev-parse --short "$BASE_SHA") ($BASE_REV)"
else
  BASE_HOP=$NEW_HOP
  BASE_NAME="$NEW_COMMIT"
fi
note "base: $("$BASE_HOP" --version), $BASE_NAME, settings: ${BASE_ENV[*]:-(defaults)}"
note "new: $NEW_COMMIT, settings: ${NEW_ENV[*]:-(defaults)}"

# Each build's own store and key, populated through its own API.
declare -A STORE KEYS HOTS BINARY SETTINGS
BINARY[new]=$NEW_HOP
BINARY[base]=$BASE_HOP
SETTINGS[new]="${NEW_ENV[*]}"
SETTINGS[base]="${BASE_ENV[*]}"
# start_build BUILD [SETTING...]: start_hop with the side's own settings.
start_build() {
  local build=$1 side
  shift
  read -r -a side <<<"${SETTINGS[$build]}"
  start_hop "${side[@]}" "$@"
}
start_nginx
for build in new base; do
  HOP=${BINARY[$build]}
  DATA=$WORK/data-$build
  mkdir -p "$DATA"
  STORE[$build]=$DATA
  KEYS[$build]=$("$HOP" keys create --name bench --admin --data-dir "$DATA" | tail -n 1)
  [ -n "${KEYS[$build]}" ] || die "$build: hop keys create printed no key"
  start_build "$build"
  HOTS[$build]=$(curl -sf --max-time 5 -X POST "http://127.0.0.1:$HOP_PORT/api/v1/links" \
    -H "Authorization: Bearer ${KEYS[$build]}" -H 'Content-Type: application/json' \
    -d '{"url":"https://example.com/target"}' | sed -n 's/.*"code" *: *"\([^"]*\)".*/\1/p')
  [ -n "${HOTS[$build]}" ] || die "$build: could not create the hot link"
  log "$build: populating to $LINKS links"
  round=0
  while [ "$(links_stored)" -lt "$LINKS" ]; do
    round=$((round + 1))
    [ "$round" -le 50 ] || die "$build: only $(links_stored) links after 50 rounds"
    run_wrk "populate-$build-$round" "http://127.0.0.1:$HOP_PORT/api/v1/links" 10 \
      "$BENCH/create.lua" "${KEYS[$build]}" "populate-$build-$round"
    check_creates "populate-$build-$round"
  done
  sql "SELECT code FROM links" >"$WORK/codes-$build.txt"
  note "$build: $(links_stored) links"
done
stop_hop

log "nginx baseline"
measure nginx "$NGINX_WORKER" "http://127.0.0.1:$NGINX_PORT/"

for round in $(seq "$ROUNDS"); do
  # Alternate which build goes first, so neither always runs on a warmer machine.
  order=(new base)
  [ $((round % 2)) -eq 0 ] && order=(base new)
  for build in "${order[@]}"; do
    log "round $round of $ROUNDS: $build"
    HOP=${BINARY[$build]}
    DATA=${STORE[$build]}
    start_build "$build"
    measure "hot-$build-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/${HOTS[$build]}"
    measure "create-$build-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/api/v1/links" \
      "$BENCH/create.lua" "${KEYS[$build]}" "create-$build-$round"
    check_creates "create-$build-$round"
    RPS[create-$build-$round]=$(calc "$W_CREATED / $W_SECONDS" 0)
    start_build "$build" HOP_CACHE_MAX_BYTES="$COLD_CACHE_BYTES"
    measure "cold-$build-$round" "$HOP_PID" "http://127.0.0.1:$HOP_PORT/" \
      "$BENCH/random_codes.lua" "$WORK/codes-$build.txt"
  done
done
stop_hop

{
  echo "# hop: $LABEL"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'). new: $NEW_COMMIT, ${NEW_ENV[*]:-default settings}; base: $BASE_NAME, ${BASE_ENV[*]:-default settings}."
  echo "Servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU (1 thread, $CONNECTIONS connections), $DURATION s per scenario, $ROUNDS rounds, $LINKS links per store, cold cache $COLD_CACHE_BYTES bytes."
  echo
  echo "| scenario | req/s | p99 ms | server CPU µs/req | server CPU % | wrk CPU % | requests | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${SCENARIOS[@]}"; do
    echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${SRV_PCT[$name]} | ${WRK_PCT[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "| scenario | base req/s | new req/s | new/base req/s | base µs/req | new µs/req | new/base CPU |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for scenario in hot cold create; do
    b_rps=$(median "$scenario-base" RPS)
    n_rps=$(median "$scenario-new" RPS)
    b_cpu=$(median "$scenario-base" CPU_US)
    n_cpu=$(median "$scenario-new" CPU_US)
    echo "| $scenario | $b_rps | $n_rps | $(calc "$n_rps / $b_rps" 3) | $b_cpu | $n_cpu | $(calc "$n_cpu / $b_cpu" 3) |"
  done
  echo
  echo "nginx (fixed 302): ${RPS[nginx]} req/s, ${CPU_US[nginx]} µs/req."
} >"$WORK/results.md"
cp "$WORK/results.md" "$BENCH/out/compare-results.md"
log "results (also in bench/out/compare-results.md)"
cat "$WORK/results.md"
