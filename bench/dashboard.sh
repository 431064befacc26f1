#!/usr/bin/env bash
# Dashboard pages with a big store: server-side render time and page weight.
#
#   bash bench/dashboard.sh                         # 1M links, 10 s per page
#   BENCH_LINKS=100000 BENCH_DURATION=5 bash bench/dashboard.sh
#
# One user owns BENCH_LINKS links (bulk API, 1,000 per request); signed in with a
# password, wrk (4 connections, on CPU 1) asks for each page with the session cookie
# while hop runs on CPU 0: the links page (first page, a later page by cursor, a tag
# filter, a text search that finds the newest links, one that finds nothing and so
# reads every link), a link's page and the create form. Target (issue 11): every
# page < 30 ms p99 with 1M links; the links page's whole weight (HTML, CSS, JS)
# < 150 KB. BENCH_DATABASE_URL runs it on PostgreSQL (bench/lib.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
LINKS=${BENCH_LINKS:-1000000}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=4
SERVER_CPU=0
CLIENT_CPU=1
SETTLE_SECONDS=1.5
POPULATE_TIMEOUT=1800

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
bench_prepare

PASSWORD="bench dashboard password"
"$HOP" users add bench-user --data-dir "$DATA" >/dev/null
echo "$PASSWORD" | "$HOP" users passwd bench-user --data-dir "$DATA" >/dev/null
KEY=$("$HOP" keys create --user bench-user --name bench --data-dir "$DATA" | tail -n 1)
[ -n "$KEY" ] || die "hop keys create printed no key"
BENCH_LIMITS+=(HOP_RATE_LIMIT_USER_PER_MINUTE=1000000000)
start_hop
BASE=http://127.0.0.1:$HOP_PORT

log "populating to $LINKS links (bulk, 1,000 a request)"
deadline=$((SECONDS + POPULATE_TIMEOUT))
populate_start=$SECONDS
CONNECTIONS=8
stored=$(links_stored)
while [ "$stored" -lt "$LINKS" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "only $stored of $LINKS links after ${POPULATE_TIMEOUT}s"
  run_wrk "populate" "$BASE/api/v1/links/bulk" 20 "$BENCH/bulk.lua" "$KEY"
  stored=$(links_stored)
  note "$stored links stored"
done
CONNECTIONS=4
note "populate took $((SECONDS - populate_start)) s"
# A few links with a tag and a rare word, for the filter and the search.
for i in $(seq 1 30); do
  curl -sf -o /dev/null -X POST "$BASE/api/v1/links" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' \
    -d "{\"url\":\"https://example.com/needle/$i\",\"tags\":[\"needle\"],\"title\":\"needle $i\"}" ||
    die "could not create the tagged links"
done

log "signing in"
COOKIE=$(curl -s -o /dev/null -D - -X POST "$BASE/app/login" -H "Origin: $BASE" \
  --data-urlencode "name=bench-user" --data-urlencode "password=$PASSWORD" |
  awk -F'[:;] *' 'tolower($1) == "set-cookie" { print $2 }')
[ -n "$COOKIE" ] || die "signing in gave no cookie"
page() { curl -sf -H "Cookie: $COOKIE" "$BASE$1"; }
CURSOR=$(page "/app/links" | grep -o 'cursor=[^"&]*' | head -1 | sed 's/cursor=//')
[ -n "$CURSOR" ] || die "the links page has no next page"
CODE=$(sql "SELECT code FROM links ORDER BY id DESC LIMIT 1")

declare -A PAGES=(
  [links]="/app/links"
  [links-page-2]="/app/links?cursor=$CURSOR"
  [links-tag]="/app/links?tag=needle"
  [links-search]="/app/links?q=needle"
  [links-search-miss]="/app/links?q=no-such-words"
  [link]="/app/links/$CODE"
  [new]="/app/links/new"
)
ORDER=(links links-page-2 links-tag links-search links-search-miss link new)
for name in "${ORDER[@]}"; do
  log "GET ${PAGES[$name]}"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "$BASE${PAGES[$name]}")" = 200 ] ||
    die "${PAGES[$name]} did not answer 200"
  measure "$name" "$HOP_PID" "$BASE" "$BENCH/page.lua" "$COOKIE" "${PAGES[$name]}"
  FAILED=$(awk '/^bench-lua failed=/ { split($2, a, "="); print a[2] }' "$WORK/wrk/$name.txt")
  [ "${FAILED:-1}" -eq 0 ] || die "$name: $FAILED answers were not 200"
done

HTML=$(page "/app/links" | wc -c)
CSS=$(curl -sf "$BASE/app/assets/app.css" | wc -c)
JS=$(curl -sf "$BASE/app/assets/app.js" | wc -c)
WEIGHT=$((HTML + CSS + JS))
stop_hop

{
  echo "# hop dashboard benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hop built from $COMMIT; $stored links of one user; hop on CPU $SERVER_CPU, wrk ($CONNECTIONS connections) on CPU $CLIENT_CPU, $DURATION s per page."
  echo
  echo "| page | req/s | p99 ms | server CPU µs/req | requests | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for name in "${ORDER[@]}"; do
    echo "| $name \`${PAGES[$name]}\` | ${RPS[$name]} | ${P99[$name]} | ${CPU_US[$name]} | ${REQS[$name]} | ${ERRS[$name]} |"
  done
  echo
  echo "Links page weight: HTML $HTML + CSS $CSS + JS $JS = **$WEIGHT bytes** uncompressed (target < 150 KB)."
} >"$WORK/report.md"
cat "$WORK/report.md"
note "report: $WORK/report.md"
