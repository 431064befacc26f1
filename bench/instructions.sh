#!/usr/bin/env bash
# Instructions per redirect, counted by valgrind (callgrind), for the working tree
# against a git revision: a measure that a busy or shared machine cannot disturb, since
# it counts instructions, not seconds.
#
#   BENCH_BASE=HEAD~3 bash bench/instructions.sh
#   BENCH_BASE=main BENCH_REQUESTS=20000 bash bench/instructions.sh
#   BENCH_NEW_ENV="HOP_BLOCKLIST_FILES=/tmp/list.txt" BENCH_MODES="hot cold create" \
#     bash bench/instructions.sh        # one build, two settings (no BENCH_BASE)
#
# Each build serves, under callgrind, a warm-up plus BENCH_REQUESTS (10,000) requests
# on one keep-alive connection, twice: once to a cached code (the hot path: a 302 and
# a counted click) and once to unknown codes that the negative cache answers after
# the first miss (404). BENCH_MODES adds `cold` (each request a different code that
# is not cached yet: a store read, then a 302) and `create` (a durable POST
# /api/v1/links). Instructions are counted only between the warm-up and the end
# of the measured requests, so start-up and the first requests are left out (counters
# zeroed after the warm-up, dumped after the measured requests); background work that runs meanwhile (click flushes,
# the analytics pipeline) is in, as it is part of what a redirect costs. Reported:
# instructions per request for each build and the ratio new / base.
#
# Needs valgrind and python3. The base is built as bench/compare.sh builds it
# (bench/out/base/, kept between runs). Without BENCH_BASE the base is the working
# tree's build too, and BENCH_NEW_ENV / BENCH_BASE_ENV (space-separated VAR=value)
# say what differs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${BENCH_REQUESTS:-10000}
BASE_REV=${BENCH_BASE:-}
MODES=${BENCH_MODES:-hot miss}
read -r -a NEW_ENV <<<"${BENCH_NEW_ENV:-}"
read -r -a BASE_ENV <<<"${BENCH_BASE_ENV:-}"
if [ -z "$BASE_REV" ] && [ ${#NEW_ENV[@]} -eq 0 ] && [ ${#BASE_ENV[@]} -eq 0 ]; then
  echo "set BENCH_BASE (a git revision) or BENCH_NEW_ENV / BENCH_BASE_ENV (settings)" >&2
  exit 1
fi
WORK=$ROOT/bench/out/instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 1; }

echo "== building release (working tree${BASE_REV:+ and $BASE_REV})"
cargo build --release --quiet
NEW=$ROOT/target/release/hop
if [ -n "$BASE_REV" ]; then
  BASE_SHA=$(git rev-parse --verify "$BASE_REV^{commit}")
  BASE_TREE=$ROOT/bench/out/base/tree
  if [ -d "$BASE_TREE" ]; then
    git -C "$BASE_TREE" checkout --quiet --detach "$BASE_SHA"
  else
    git worktree add --quiet --detach "$BASE_TREE" "$BASE_SHA"
  fi
  (cd "$BASE_TREE" && CARGO_TARGET_DIR=$ROOT/bench/out/base/target cargo build --release --quiet)
  BASE=$ROOT/bench/out/base/target/release/hop
  BASE_LABEL="$(git rev-parse --short "$BASE_SHA") ($BASE_REV)"
else
  BASE=$NEW
  BASE_LABEL="the same build"
fi

# count BINARY NAME MODE [VAR=value...]: instructions per request of one build in one
# mode, with those settings.
count() {
  local binary=$1 name=$2 mode=$3 data=$WORK/data-$2-$3 port
  shift 3
  mkdir -p "$data"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local key
  key=$("$binary" keys create --name bench --admin --data-dir "$data" | tail -n 1)
  env "$@" HOP_LOG_LEVEL=warn HOP_RATE_LIMIT_REDIRECT_PER_MINUTE=1000000000 \
    HOP_RATE_LIMIT_ADMIN_PER_MINUTE=1000000000 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind-$name-$mode.out" \
    "$binary" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$WORK/hop-$name-$mode.log" 2>&1 &
  local pid=$!
  python3 - "$port" "$key" "$REQUESTS" "$mode" "$pid" <<'PY'
import http.client, json, subprocess, sys, time
port, key, requests, mode, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
deadline = time.time() + 300
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
cold = []
if mode == "cold":
    # Links made (and not yet visited) before the measurement, 500 at a time.
    while len(cold) < requests + 500:
        body = {"links": [{"url": f"https://example.com/cold/{len(cold) + i}"} for i in range(500)]}
        conn.request("POST", "/api/v1/links/bulk", json.dumps(body),
                     {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        cold += [item["link"]["code"] for item in answer["results"]]
done = 0
def run(n):
    global done
    for _ in range(n):
        if mode == "create":
            conn.request("POST", "/api/v1/links", json.dumps({"url": f"https://example.com/new/{done}"}),
                         {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            expected = 201
        else:
            path = "/" + cold[done] if mode == "cold" else "/" + code if mode == "hot" else "/zz404zz"
            conn.request("GET", path)
            expected = 404 if mode == "miss" else 302
        response = conn.getresponse(); response.read()
        if response.status != expected: sys.exit(f"{mode} request answered {response.status}")
        done += 1
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
for mode in $MODES; do
  for build in base new; do
    if [ "$build" = new ]; then
      PER[$build-$mode]=$(count "$NEW" "$build" "$mode" "${NEW_ENV[@]}")
    else
      PER[$build-$mode]=$(count "$BASE" "$build" "$mode" "${BASE_ENV[@]}")
    fi
    echo "   $build $mode: ${PER[$build-$mode]} instructions per request"
  done
done

{
  echo "# hop: instructions per request (callgrind)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'). new: $(git rev-parse --short HEAD)$([ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock)" ] && echo ' + uncommitted changes')${NEW_ENV[*]:+ with ${NEW_ENV[*]}}; base: $BASE_LABEL${BASE_ENV[*]:+ with ${BASE_ENV[*]}}. $REQUESTS requests on one keep-alive connection after 500 unmeasured."
  echo
  echo "| request | base | new | new / base |"
  echo "| --- | ---: | ---: | ---: |"
  for mode in $MODES; do
    case $mode in
      hot) label="cached redirect (302)" ;;
      miss) label="unknown code, negative cache (404)" ;;
      cold) label="uncached redirect, a store read (302)" ;;
      create) label="durable create (201)" ;;
    esac
    echo "| $label | ${PER[base-$mode]} | ${PER[new-$mode]} | $(awk -v a="${PER[new-$mode]}" -v b="${PER[base-$mode]}" 'BEGIN { printf "%.3f", a / b }') |"
  done
} >"$WORK/results.md"
cp "$WORK/results.md" "$ROOT/bench/out/instructions-results.md"
cat "$WORK/results.md"
