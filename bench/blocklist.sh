#!/usr/bin/env bash
# The cost of a 1,000,000-entry target blocklist: the same build with and without it,
# over HTTP, on hot redirects (never checked), cold redirects (checked at every cache
# fill) and creates (checked on every create). The target: within 5 % of no blocklist.
# By default it counts instructions per request under callgrind (bench/instructions.sh),
# which a busy machine cannot disturb; BENCH_WALL=1 measures server CPU per request in
# alternating wrk rounds instead (bench/compare.sh), for a quiet machine.
#
#   bash bench/blocklist.sh
#   BENCH_REQUESTS=2000 bash bench/blocklist.sh
#   BENCH_WALL=1 BENCH_BLOCKLIST_ENTRIES=100000 BENCH_ROUNDS=5 bash bench/blocklist.sh
#
# The list is half plain names and half hosts-file lines, none of them a target the
# benchmark links point at (so every check walks the whole name: the worst case).
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${BENCH_BLOCKLIST_ENTRIES:-1000000}
mkdir -p bench/out
LIST=$PWD/bench/out/blocklist-$ENTRIES.txt
if [ ! -s "$LIST" ]; then
  awk -v n="$ENTRIES" 'BEGIN {
    srand(7)
    for (i = 0; i < n; i++) {
      name = sprintf("%x%d.%s.%s", int(rand() * 2^31), i, (i % 3 ? "phish" : "ads"), (i % 2 ? "example" : "test"))
      if (i % 2) print name; else print "0.0.0.0 " name
    }
  }' >"$LIST"
fi
echo "blocklist: $LIST ($(wc -l <"$LIST") lines, $(du -h "$LIST" | cut -f1))"
if [ -n "${BENCH_WALL:-}" ]; then
  BENCH_LABEL="a $ENTRIES-entry blocklist (new) against none (base)" \
    BENCH_NEW_ENV="HOP_BLOCKLIST_FILES=$LIST" exec bash bench/compare.sh
fi
BENCH_MODES="hot cold create" BENCH_NEW_ENV="HOP_BLOCKLIST_FILES=$LIST" \
  exec bash bench/instructions.sh
