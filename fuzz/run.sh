#!/usr/bin/env bash
# Builds Corral's libFuzzer targets into build-fuzz/ and fuzzes each one (docs/fuzzing.md).
#
#   fuzz/run.sh --short            every target briefly (make test): FUZZ_SECONDS=2 per target
#   fuzz/run.sh --long             every target for FUZZ_SECONDS=300 (make fuzz)
#   fuzz/run.sh --short route      only the named targets
#
# Every run first replays fuzz/regressions/<target>/*, then fuzzes from the seed corpus
# fuzz/corpus/<target>/ (with fuzz/dict/<target>.dict when there is one) plus a working corpus
# in build-fuzz/corpus/<target>/ (kept between runs, never committed). A crash, a violated
# property, a timeout or an out-of-memory is copied to fuzz/regressions/<target>/ and makes the
# script exit 1 after the remaining targets have run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
all_targets=(route body_peek snapshot_json snapshot_binary model_name node_url request_head
  answer_usage)

mode="${1:-}"
case "$mode" in
  --short) seconds="${FUZZ_SECONDS:-2}" ;;
  --long) seconds="${FUZZ_SECONDS:-300}" ;;
  *)
    echo "usage: fuzz/run.sh --short|--long [target...]  (targets: ${all_targets[*]})" >&2
    exit 2
    ;;
esac
shift
targets=("$@")
if ((${#targets[@]} == 0)); then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
  if [[ ! -f "$root/fuzz/${t}_fuzzer.cc" ]]; then
    echo "fuzz: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done

# clang and its fuzzer runtime; the rest of the toolchain comes from scripts/install-deps.sh.
missing=()
for p in clang-14 libclang-rt-14-dev cmake make libprotobuf-dev protobuf-compiler \
  nlohmann-json3-dev libabsl-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mkdir -p "$build"
build_start=$SECONDS
cmake -S "$root/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  exit 1
}
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" >/dev/null || {
  echo "fuzz: build failed; rerun: cmake --build $build -j2" >&2
  exit 1
}
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - build_start)) s"

failed=()
for t in "${targets[@]}"; do
  bin="$build/bin/fuzz_$t"
  regressions="$root/fuzz/regressions/$t"
  seeds="$root/fuzz/corpus/$t"
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  log="$build/logs/$t.log"
  mkdir -p "$work" "$artifacts" "$build/logs" "$seeds"
  # A dictionary of the format's keywords gets the fuzzer past the keys and markers sooner.
  dict_args=()
  if [[ -f "$root/fuzz/dict/$t.dict" ]]; then dict_args=(-dict="$root/fuzz/dict/$t.dict"); fi

  # Replay: each kept input runs once; any failure means a fixed bug came back.
  if compgen -G "$regressions/*" >/dev/null; then
    if ! "$bin" -runs=1 "$regressions"/* >"$build/logs/$t.replay.log" 2>&1; then
      echo "fuzz: $t: a regression input fails again; see $build/logs/$t.replay.log" >&2
      failed+=("$t(regression)")
      continue
    fi
    echo "fuzz: $t: replayed $(find "$regressions" -type f | wc -l) regression inputs"
  fi

  start=$SECONDS
  rm -f "$artifacts"/*
  status=0
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb bounds memory on a shared machine.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict_args[@]+"${dict_args[@]}"}" \
    "$work" "$seeds" >"$log" 2>&1 ||
    status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if ((status != 0)); then
    mkdir -p "$regressions"
    for a in "$artifacts"/*; do
      [[ -f "$a" ]] || continue
      cp "$a" "$regressions/"
      echo "fuzz: $t: kept $(basename "$a") in fuzz/regressions/$t/" >&2
    done
    grep -E 'property violated|ERROR: |runtime error|SUMMARY' "$log" | head -5 >&2 || true
    echo "fuzz: $t: FAILED after $((SECONDS - start)) s (exit $status); log: $log" >&2
    failed+=("$t")
  else
    echo "fuzz: $t: ok, ${runs:-?} inputs in $((SECONDS - start)) s, corpus $(find "$work" -type f | wc -l) files"
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ok"
