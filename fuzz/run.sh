#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer coverage instrumentation on the
# stable toolchain, runs each for MARKETGATE_FUZZ_SECS seconds (default 45)
# from its seed corpus, and exits non-zero if any input crashed a target,
# naming the file that holds it. Needs cargo and a C++ compiler (libfuzzer-sys
# compiles libFuzzer); nothing else is installed.
#
#   fuzz/run.sh                 # every target
#   fuzz/run.sh jws manifest    # some
#   MARKETGATE_FUZZ_SECS=600 fuzz/run.sh sim_request
#
# Replay a crash:   fuzz/target/<triple>/release/<target> fuzz/artifacts/<target>/crash-...
# Replay a corpus:  fuzz/target/<triple>/release/<target> -runs=0 fuzz/corpus/<target>
#
# New inputs the fuzzer finds go to fuzz/target/corpus/<target> (not
# committed); crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

secs="${MARKETGATE_FUZZ_SECS:-45}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# Instrumented builds never share a target directory with normal ones.
export CARGO_TARGET_DIR="$PWD/target"

if ! command -v c++ >/dev/null && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq g++
fi

# What `cargo fuzz build -s none` passes, all stable codegen flags: libFuzzer's
# SanitizerCoverage (inline 8-bit counters, PC table, comparison tracing,
# stack depth), no sanitizer. `--target` keeps them off build scripts and
# proc macros, which are not linked with libFuzzer.
rustflags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  -Cdebug-assertions
  -Coverflow-checks
  --cfg fuzzing
)

all_targets=$(awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name *=/ { gsub(/^name *= *"|"$/, ""); print; bin = 0 }' Cargo.toml)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  read -r -d '' -a targets <<<"$all_targets" || true
fi
for target in "${targets[@]}"; do
  if ! grep -qx "$target" <<<"$all_targets"; then
    echo "unknown fuzz target '$target'; targets: $(echo $all_targets)" >&2
    exit 2
  fi
done

echo "--- building ${targets[*]} (release, instrumented, $triple)"
build_start=$SECONDS
bins=()
for target in "${targets[@]}"; do bins+=(--bin "$target"); done
# Not --locked: fuzz/Cargo.lock pins what the targets use, and cargo only adds
# what a new dependency of the main crates needs.
RUSTFLAGS="${rustflags[*]} ${RUSTFLAGS:-}" \
  cargo build --release --target "$triple" "${bins[@]}"
echo "built in $((SECONDS - build_start)) s"

mkdir -p target/logs
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "target/corpus/$target" "artifacts/$target"
  log="target/logs/$target.log"
  args=(
    -max_total_time="$secs"
    -timeout=10
    -rss_limit_mb=2048
    -print_final_stats=1
    -artifact_prefix="artifacts/$target/"
  )
  if [ -f "dict/$target.dict" ]; then args+=(-dict="dict/$target.dict"); fi
  echo "--- fuzzing $target for ${secs} s"
  status=0
  # Scratch files (the manifest target's key directory) stay under target/.
  mkdir -p target/tmp
  TMPDIR="$PWD/target/tmp" \
    "target/$triple/release/$target" "${args[@]}" "target/corpus/$target" "corpus/$target" \
    >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    # The property that failed first, then how libFuzzer ended.
    grep -m1 -A8 "panicked at" "$log" >&2 || true
    tail -12 "$log" >&2
    echo "FAILED: $target (exit $status); input: fuzz/${crash:-?}; log: fuzz/$log" >&2
    failed+=("$target")
    summary+=("$(printf '%-12s %12s execs %8s/s  CRASH fuzz/%s' "$target" "${execs:-?}" "${rate:-?}" "${crash:-?}")")
  else
    summary+=("$(printf '%-12s %12s execs %8s/s  ok' "$target" "${execs:-?}" "${rate:-?}")")
  fi
done

echo "--- executions"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
