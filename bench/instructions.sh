#!/usr/bin/env bash
# Instructions per redirect, counted by valgrind (callgrind), for the working tree
# against a git revision: a measure that a busy or shared machine cannot disturb, since
# it counts instructions, not seconds.
#
#   BENCH_BASE=HEAD~3 bash bench/instructions.sh
#   BENCH_BASE=main BENCH_REQUESTS=20000 bash bench/instructions.sh
#
# Each build serves, under callgrind, a warm-up plus BENCH_REQUESTS (10,000) requests
# on one keep-alive connection, twice: once to a cached code (the hot path: a 302 and
# a counted click) and once to unknown codes that the negative cache answers after
# the first miss (404). Instructions are counted only between the warm-up and the end
# of the measured requests, so start-up and the first requests are left out (counters
# zeroed after the warm-up, dumped after the measured requests); background work that runs meanwhile (click flushes,
# the analytics pipeline) is in, as it is part of what a redirect costs. Reported:
# instructions per request for each build and the ratio new / base.
#
# Needs valgrind and python3. The base is built as bench/compare.sh builds it
# (bench/out/base/, kept between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${BENCH_REQUESTS:-10000}
BASE_REV=${BENCH_BASE:?set BENCH_BASE to the git revision to compare against}
WORK=$ROOT/bench/out/instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 1; }

echo "== building release (working tree and $BASE_REV)"
cargo build --release --quiet
NEW=$ROOT/target/release/hop
BASE_SHA=$(git rev-parse --verify "$BASE_REV^{commit}")
BASE_TREE=$ROOT/bench/out/base/tree
if [ -d "$BASE_TREE" ]; then
  git -C "$BASE_TREE" checkout --quiet --detach "$BASE_SHA"
else
  git worktree add --quiet --detach "$BASE_TREE" "$BASE_SHA"
fi
(cd "$BASE_TREE" && CARGO_TARGET_DIR=$ROOT/bench/out/base/target cargo build --release --quiet)
BASE=$ROOT/bench/out/base/target/release/hop

# count BINARY NAME MODE: instructions per request of one build in one mode.
count() {
  local binary=$1 name=$2 mode=$3 data=$WORK/data-$2-$3 port
  mkdir -p "$data"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local key
  key=$("$binary" keys create --name bench --admin --data-dir "$data" | tail -n 1)
  HOP_LOG_LEVEL=warn HOP_RATE_LIMIT_REDIRECT_PER_MINUTE=1000000000 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind-$name-$mode.out" \
    "$binary" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$WORK/hop-$name-$mode.log" 2>&1 &
  local pid=$!
  python3 - "$port" "$key" "$REQUESTS" "$mode" "$pid" <<'PY'
import http.client, json, subprocess, sys, time
port, key, requests, mode, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
deadline = time.time() + 120
while True:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz"); conn.getresponse().read(); break
    except OSError:
        if time.time() > deadline: sys.exit("hop did not start")
        time.sleep(0.5)
conn.request("POST", "/api/v1/links", json.dumps({"url": "https://example.com/target"}),
             {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
code = json.loads(conn.getresponse().read())["code"]
path = "/" + code if mode == "hot" else "/zz404zz"
expected = 302 if mode == "hot" else 404
def run(n):
    for _ in range(n):
        conn.request("GET", path)
        response = conn.getresponse(); response.read()
        if response.status != expected: sys.exit(f"{path} answered {response.status}")
run(500)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
run(requests)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
PY
  kill -TERM "$pid"
  wait "$pid" || true
  local total
  # The dump taken after the measured requests (the file at exit holds the rest).
  total=$(awk '/^summary:|^totals:/ { print $2; exit }' "$WORK/callgrind-$name-$mode.out.1")
  awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }'
}

declare -A PER
for mode in hot miss; do
  for build in base new; do
    binary=$BASE
    [ "$build" = new ] && binary=$NEW
    PER[$build-$mode]=$(count "$binary" "$build" "$mode")
    echo "   $build $mode: ${PER[$build-$mode]} instructions per request"
  done
done

{
  echo "# hop: instructions per request (callgrind)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'). new: $(git rev-parse --short HEAD)$([ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock)" ] && echo ' + uncommitted changes'); base: $(git rev-parse --short "$BASE_SHA") ($BASE_REV). $REQUESTS requests on one keep-alive connection after 500 unmeasured."
  echo
  echo "| request | base | new | new / base |"
  echo "| --- | ---: | ---: | ---: |"
  for mode in hot miss; do
    label="cached redirect (302)"
    [ "$mode" = miss ] && label="unknown code, negative cache (404)"
    echo "| $label | ${PER[base-$mode]} | ${PER[new-$mode]} | $(awk -v a="${PER[new-$mode]}" -v b="${PER[base-$mode]}" 'BEGIN { printf "%.3f", a / b }') |"
  done
} >"$WORK/results.md"
cp "$WORK/results.md" "$ROOT/bench/out/instructions-results.md"
cat "$WORK/results.md"
