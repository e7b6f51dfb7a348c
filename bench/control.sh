#!/usr/bin/env bash
# bench/control.sh BUILD_DIR — the control-plane figures of `make bench`.
#
# Runs corral-control-bench (bench/control/control_bench.cc), which starts on this machine two
# corral-sim nodes, one corral-control and ten corral-proxy processes watching it, and measures:
#   1. a change made through the Admin API (UpdateNode) until every proxy serves the new snapshot,
#      200 times, p50 and p99, seen at the proxies and seen as acks in ListProxies;
#   2. registering 1,000 more nodes (sequential CreateNode), and the time until all are probed
#      and served;
#   3. with those 1,008 nodes, a change (DisableNode / EnableNode) until every proxy serves it.
# Prints markdown rows `| figure | measured | target | holds? |` on stdout, progress on stderr.
# Every process started is stopped on exit. Takes about a minute and a half.
#
# Environment: CONTROL_BENCH_ITERATIONS (changes per figure-1 series, default 200),
# CONTROL_BENCH_FLEET_NODES (default 1000), CONTROL_BENCH_FLEET_ITERATIONS (default 20).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bench/control.sh BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
bin_dir="$build_dir/bin"
for b in corral-control-bench corral-control corral-proxy corral-sim; do
  if [[ ! -x "$bin_dir/$b" ]]; then
    echo "control.sh: $bin_dir/$b is missing; build it first" >&2
    exit 1
  fi
done

work=$(mktemp -d /tmp/corral-control-bench.XXXXXX)
bench_pid=""
cleanup() {
  local status=$?
  if [[ -n "$bench_pid" ]]; then
    # The tool kills its children when signalled, and they die with it in any case
    # (PR_SET_PDEATHSIG).
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    echo "control.sh: failed; the last lines of each log:" >&2
    for log in "$work"/*.log; do
      [[ -f "$log" ]] || continue
      echo "--- $(basename "$log")" >&2
      tail -n 5 "$log" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin_dir/corral-control-bench" --bin-dir "$bin_dir" --work-dir "$work" \
  --iterations "${CONTROL_BENCH_ITERATIONS:-200}" \
  --fleet-nodes "${CONTROL_BENCH_FLEET_NODES:-1000}" \
  --fleet-iterations "${CONTROL_BENCH_FLEET_ITERATIONS:-20}" &
bench_pid=$!
wait "$bench_pid"
bench_pid=""
