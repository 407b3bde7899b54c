#!/usr/bin/env bash
# Runs the garbage collector's protocol simulator (sim_test.go): N seeded
# schedules (default 10,000) split over one process per core, without the
# race detector (which slows it several times), then the search for each
# hole of docs/design.md §4.7 put back. Schedules write small nodes to
# disk, so a memory file system helps: /dev/shm is used when present.
#   ./sim.sh            # 10,000 schedules, as test.sh runs it
#   ./sim.sh 1000000    # the long mode (hours)
#   CASSBACK_SIM_HOLE_LIMIT=10000 ./sim.sh   # a longer hole search, hole 5 too
#   FIRST=1000001 ./sim.sh 1000000   # other seeds
set -euo pipefail
cd "$(dirname "$0")"
n="${1:-10000}"
first="${FIRST:-1}"
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
bin="$dir/sim.test"
go test -c -o "$bin" .
# A schedule's heap is a few MiB: at the default GOGC the collector takes
# about a third of the time (400 schedules: 12.9 s at 100, 9.0 s at 400).
export GOGC="${GOGC:-400}"
procs="$(nproc 2>/dev/null || echo 2)"
per=$(((n + procs - 1) / procs))
pids=()
for ((i = 0; i < procs; i++)); do
  from=$((first + i * per))
  count=$((n - i * per < per ? n - i * per : per))
  [ "$count" -gt 0 ] || break
  "$bin" -test.run '^TestSimulator$' -sim.first "$from" -sim.schedules "$count" -test.v -test.timeout 0 &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
# Each hole put back must be found (TestSimulatorFindsHoles), split in two.
"$bin" -test.run '^TestSimulatorFindsHoles$' -sim.holes 235 -test.v &
a=$!
"$bin" -test.run '^TestSimulatorFindsHoles$' -sim.holes 1467 -test.v &
b=$!
wait $a || fail=1
wait $b || fail=1
exit $fail
