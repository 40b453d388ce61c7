#!/usr/bin/env bash
# Runs every row of the README's performance table with `tasker bench` and
# prints each JSON result line, three runs per row (take the median).
# Usage: scripts/bench-table.sh [runs]   (a quiet machine gives stable figures)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
bin="$(mktemp -d)/tasker"
go build -o "$bin" ./cmd/tasker
work="$(mktemp -d)"
trap 'rm -rf "$work" "$(dirname "$bin")"' EXIT

row() { # name, then bench arguments
  local name=$1; shift
  for i in $(seq "$runs"); do
    printf '%s run %d: ' "$name" "$i"
    "$bin" bench "$@" -o json 2>/dev/null
  done
}

row "linear4 c=1" --shape linear4 --tasks 1000 --concurrency 1
row "linear4 c=500" --shape linear4 --tasks 10000 --concurrency 500
row "diamond c=500" --shape diamond --tasks 10000 --concurrency 500
row "fanout 1000" --shape fanout --fanout 1000 --tasks 1 --concurrency 1
row "linear4 c=500 sync=normal" --shape linear4 --tasks 10000 --concurrency 500 --sync normal

# A store that already holds 1,000,000 completed steps against an empty one,
# and the coordinator's memory after 100,000 and after 1,000,000 steps.
db="$work/big.db"
printf 'prefill 100k steps: '
"$bin" bench --db "$db" --shape linear4 --tasks 25000 --concurrency 500 -o json 2>/dev/null
printf 'prefill to 1M steps: '
"$bin" bench --db "$db" --shape linear4 --tasks 225000 --concurrency 500 -o json 2>/dev/null
row "linear4 c=500 on 1M stored steps" --db "$db" --shape linear4 --tasks 10000 --concurrency 500
