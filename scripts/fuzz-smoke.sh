#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target in fuzz/ for a short time and fails on any crash
# (panic, abort, sanitizer report, timeout or out-of-memory). scripts/test calls it with the
# defaults (20 s per target); docs/reliability.md ("Fuzzing") records the long run made with
#
#   FUZZ_SECONDS_PER_TARGET=900 FUZZ_PARALLEL=2 scripts/fuzz-smoke.sh
#
# Settings (environment):
#   FUZZ_SECONDS_PER_TARGET  how long each target runs (default 20)
#   FUZZ_PARALLEL            how many targets run at once (default 1)
#   FUZZ_TARGETS             space-separated subset of targets (default: all)
#   FUZZ_SUMMARY             also write the Markdown summary table to this file
#
# The working corpus grows in fuzz/corpus/<target>/ (not committed); the committed seeds in
# fuzz/seeds/<target>/ are read as a second corpus directory. A crash leaves its input in
# fuzz/artifacts/<target>/; reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
#
# libFuzzer needs -Zsanitizer and -Cpasses flags that only nightly accepts; RUSTC_BOOTSTRAP=1
# lets the stable toolchain take them (the project has no nightly toolchain).
set -euo pipefail
# The whole script is one block, parsed before it runs: editing the file during a long run cannot
# change what the run does.
{
cd "$(dirname "$0")/.."

seconds_per_target="${FUZZ_SECONDS_PER_TARGET:-20}"
parallel="${FUZZ_PARALLEL:-1}"
export RUSTC_BOOTSTRAP=1

# libFuzzer is C++: libfuzzer-sys compiles it with the system C++ compiler.
command -v c++ >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

(cd fuzz && cargo fmt --check)
all_targets=$(cargo fuzz list)
targets="${FUZZ_TARGETS:-$all_targets}"
echo "fuzz: building ${targets//$'\n'/ }"
# shellcheck disable=SC2086
for target in $targets; do
  cargo fuzz build "$target"
done
# cargo fuzz builds where cargo would: $CARGO_TARGET_DIR when set (CI sets it), else fuzz/target.
binary_dir="${CARGO_TARGET_DIR:-fuzz/target}/x86_64-unknown-linux-gnu/release"
for target in $targets; do
  if [ ! -x "$binary_dir/$target" ]; then
    echo "fuzz: the built target $target is not at $binary_dir/$target" >&2
    exit 1
  fi
done

log_dir=fuzz/artifacts/logs
mkdir -p "$log_dir"

run_one() {
  local target=$1
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  # -rss_limit_mb and -timeout turn runaway memory or a hang into a failure with an input;
  # -print_final_stats gives the executions and rates the summary reports.
  "$binary_dir/$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
    -max_total_time="$seconds_per_target" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" >"$log_dir/$target.log" 2>&1
}

declare -A status
pending=()
for target in $targets; do
  run_one "$target" &
  pending+=("$!:$target")
  if [ ${#pending[@]} -ge "$parallel" ]; then
    entry=${pending[0]}
    pending=("${pending[@]:1}")
    if wait "${entry%%:*}"; then status[${entry#*:}]=ok; else status[${entry#*:}]=CRASH; fi
  fi
done
for entry in "${pending[@]}"; do
  if wait "${entry%%:*}"; then status[${entry#*:}]=ok; else status[${entry#*:}]=CRASH; fi
done

stat() { grep -m1 "^stat::$2:" "$log_dir/$1.log" | awk '{print $2}' || true; }
summary="| target | seconds | executions | exec/s | corpus (inputs) | cov | ft | result |
|---|---|---|---|---|---|---|---|"
failed=0
for target in $targets; do
  last=$(grep -E '^#[0-9]+' "$log_dir/$target.log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  summary+="
| $target | $seconds_per_target | $(stat "$target" number_of_executed_units) | $(stat "$target" average_exec_per_sec) | $corpus | ${cov:-?} | ${ft:-?} | ${status[$target]} |"
  if [ "${status[$target]}" != ok ]; then
    failed=1
    echo "fuzz: $target FAILED; the end of its log ($log_dir/$target.log):"
    tail -40 "$log_dir/$target.log"
    ls "fuzz/artifacts/$target/"
  fi
done
echo "$summary"
if [ -n "${FUZZ_SUMMARY:-}" ]; then echo "$summary" >"$FUZZ_SUMMARY"; fi
if [ "$failed" -ne 0 ]; then
  echo "fuzz: at least one target crashed"
  exit 1
fi
echo "fuzz: every target ran ${seconds_per_target}s without a crash"
exit 0
}
