#!/usr/bin/env bash
# Runs the default fleet scenarios in release and prints the markdown tables that
# RESULTS.md records, with wall and CPU times. Usage:
#   tests/fleet/scripts/results.sh [OUT_DIR]        # 100,000 devices
#   DEVICES=1000000 tests/fleet/scripts/results.sh  # the 1,000,000 run
#   POLICIES=ours,ours-old tests/fleet/scripts/results.sh  # a subset of the policies
# Scenarios: boot storm with and without Retry-After at 2,000/s and 500/s; outages of 30 s,
# 5 min, 30 min and 2 h (the hourly echo is in the boot storm tables).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-target/fleet-results}
devices=${DEVICES:-100000}
policies=${POLICIES:-ours,ours-old,pr-final,pr-prime,shipped-fix,aws,grpc,launchdarkly,ours16}
mkdir -p "$out"
if [ -z "${FLEET_BIN:-}" ]; then
    cargo build -q -p accessgate-fleet --release
fi
bin=${FLEET_BIN:-${CARGO_TARGET_DIR:-target}/release/fleet}
run() {
    local name=$1
    shift
    echo "### $name"
    echo
    /usr/bin/time -f "time: wall %e s, user %U s, sys %S s, max RSS %M KiB" -o "$out/$name.time" \
        "$bin" "$@" --devices "$devices" --policies "$policies" -q \
        --svg "$out/$name.svg" --csv "$out/$name.csv"
    cat "$out/$name.time"
    echo
}
run boot-storm boot-storm
run boot-storm-retry-after boot-storm --retry-after
run boot-storm-500 boot-storm --capacity 500
run boot-storm-500-retry-after boot-storm --capacity 500 --retry-after
run outage outage --outage 30s,5m,30m,2h
