# Shared by bench/run.sh and bench/api.sh: logging, arithmetic, processes, wrk runs and
# measurements. Sourced, not run. Expects ROOT, BENCH, WORK, DATA, HOP_PORT, SERVER_CPU,
# CLIENT_CPU, CONNECTIONS, DURATION and SETTLE_SECONDS to be set by the sourcing script
# before the functions that use them are called.

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

# sql QUERY: a read on the benchmark database, next to the running hop (SQLite in WAL
# mode, or the PostgreSQL database of BENCH_DATABASE_URL).
sql() {
  if [ -n "${BENCH_PG_URL:-}" ]; then
    psql -qAt -v ON_ERROR_STOP=1 "$BENCH_PG_URL" -c "$1"
  else
    sqlite3 -cmd ".timeout 10000" "$DATA/hop.db" "$1"
  fi
}
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
  if [ -n "${BENCH_PG_NAME:-}" ]; then
    psql -qAt "$BENCH_DATABASE_URL" -c "DROP DATABASE IF EXISTS $BENCH_PG_NAME WITH (FORCE)" >/dev/null 2>&1 || true
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

# median NAME TABLE: the median over $ROUNDS rounds of the scenarios NAME-1, NAME-2, ...
# in the associative array TABLE (RPS, CPU_US, ...).
median() {
  local name=$1 round values=()
  local -n table=$2
  for round in $(seq "$ROUNDS"); do
    values+=("${table[$name-$round]}")
  done
  printf '%s\n' "${values[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
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


# bench_prepare: checks the tools, clears HOP_* settings, builds hop; sets HOP,
# CLK_TCK and COMMIT.
bench_prepare() {
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
  # BENCH_DATABASE_URL (a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres):
  # the run gets a new database of its own there, dropped at the end, and every hop
  # process of the run uses it instead of SQLite.
  BACKEND=SQLite
  if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    command -v psql >/dev/null || die "psql is not installed (Debian: apt-get install -y postgresql-client)"
    local name
    name=hop_bench_$(date +%Y%m%d%H%M%S)
    psql -qAt -v ON_ERROR_STOP=1 "$BENCH_DATABASE_URL" -c "CREATE DATABASE $name" ||
      die "could not create database $name on BENCH_DATABASE_URL"
    BENCH_PG_URL=${BENCH_DATABASE_URL%/*}/$name
    BENCH_PG_NAME=$name
    export HOP_DATABASE_URL=$BENCH_PG_URL
    BACKEND="PostgreSQL ($(psql -qAt "$BENCH_DATABASE_URL" -c 'SHOW server_version'), same machine, not pinned)"
  fi
  note "backend: $BACKEND"
  NGINX_PORT=$(free_port)
  HOP_PORT=$(free_port "$NGINX_PORT")
  note "work dir $WORK"
  START_TIME=$SECONDS
}
