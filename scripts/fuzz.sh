#!/usr/bin/env bash
# Fuzzes the parsers that read outside input, for SECONDS each (default 180):
#
#   scripts/fuzz.sh [SECONDS]        (make fuzz FUZZ_SECONDS=...)
#
# Each target is a group of the `fuzz_*` proptests next to its parser. The script runs the
# group again and again, each time with a fresh random seed and PROPTEST_CASES cases per test
# (default 2000; proptest's own default, which `make test` uses, is 256), until the target's
# time is used up, then prints one line per target: rounds, cases per test, and failures. The
# console watcher's two properties fix their own case counts (64 and 128: each case renders
# and watches a whole console), so its cases column is rounds × 64 and × 128, not × 2000.
# A failure stops the script at once with proptest's minimal failing input on screen (and in
# the crate's proptest-regressions/ folder, which proptest replays first from then on).
# Exit status: 0 when every target ran clean, 1 on a failure, 2 when a target matched no test.
#
#   target          parser                                         input it reads
#   patches         kernel::patch (unified diffs, series files)    patches/, --series, b4 mail
#   mbox            gate::b4::mail (RFC 5322 + MIME messages)      lab gate --b4 mboxes
#   lab-toml        config (lab.toml)                              the user's lab.toml
#   kernel-def      kernel::source (kernel definitions)            kernels/*.toml
#   kconfig         kernel::kconfig (.config, Kconfig expressions) configs/, make's .config
#   console         vm::console::watcher (oops/WARN/splat reports) the guest's serial console
#   result-lines    lab-proto (LAB/1 result lines, markers)        the guest's stdout
#   tap             lab-thirdparty::ktap (TAP/KTAP)                kselftest programs
#   rt-json         lab-thirdparty::cyclictest (rt-tests --json)   cyclictest in the guest
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-180}
cases=${PROPTEST_CASES:-2000}
targets=(
  "patches|-p lab --lib|kernel::patch::tests::fuzz_"
  "mbox|-p lab --lib|gate::b4::mail::tests::fuzz_"
  "lab-toml|-p lab --lib|config::tests::fuzz_"
  "kernel-def|-p lab --lib|kernel::source::tests::fuzz_"
  "kconfig|-p lab --lib|kernel::kconfig::tests::fuzz_"
  "console|-p lab --lib|vm::console::watcher::tests::"
  "result-lines|-p lab-proto --lib|tests::fuzz_"
  "tap|-p lab-thirdparty --lib|ktap::fuzz::"
  "rt-json|-p lab-thirdparty --lib|cyclictest::fuzz::"
  "rt-pi-stress|-p lab-thirdparty --lib|pi_stress::fuzz::"
  "perf-bench|-p lab-thirdparty --lib|perf_bench::tests::fuzz_"
)
cargo test --workspace --locked --no-run -q 2>/dev/null || cargo test --workspace --locked --no-run
printf '%-13s %7s %7s %9s %6s %s\n' target seconds rounds cases/test tests result
for t in "${targets[@]}"; do
  IFS='|' read -r name pkg filter <<< "$t"
  start=$(date +%s) rounds=0 tests=0
  while (($(date +%s) - start < budget)); do
    # shellcheck disable=SC2086 # $pkg is a list of cargo arguments
    if ! out=$(PROPTEST_CASES=$cases cargo test --locked $pkg -q -- "$filter" 2>&1); then
      printf '%s\n' "$out"
      echo "fuzz: $name: FAILED in round $((rounds + 1)) (the minimal input is above)" >&2
      exit 1
    fi
    tests=$(grep -oE '[0-9]+ passed' <<< "$out" | awk '{s += $1} END {print s + 0}')
    ((tests > 0)) || { echo "fuzz: $name: the filter $filter matched no test" >&2; exit 2; }
    rounds=$((rounds + 1))
  done
  per_test=$((rounds * cases))
  [ "$name" = console ] && per_test="$((rounds * 64))/$((rounds * 128))"
  printf '%-13s %7d %7d %9s %6d %s\n' "$name" $(($(date +%s) - start)) "$rounds" \
    "$per_test" "$tests" clean
done
