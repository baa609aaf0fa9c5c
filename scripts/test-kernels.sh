#!/usr/bin/env bash
# Builds, one after the other and at the host's full width, the kernels that the test files
# share, before `cargo test` starts: `scripts/test-kernels.sh [LAB]`.
#
# Why: cargo runs two tests at a time. On an empty cache, two tests that need kernels with the
# same changed header (include/linux/wait.h) compiled the same ~1,100 files twice, side by
# side, each at half speed. Built here first, every later kernel of the tests is an artifact
# hit or a ccache hit for all but the files its patches touch: the synthetic git history's
# kernels share these objects (kbuild's O= trees use relative paths, see kernel/build.rs).
#
#   x86_64 base                                   every test file
#   x86_64 bad-waitqueue-signal-before-condition  wait.h: bisect.rs (commits 33-48), selftest
#   x86_64 sched-wait-abort-exclusive-wait        wait.h: gate.rs (the shipped candidates)
#   arm64  base                                   vm.rs, gate.rs (the arm64-only break)
#
# On a warm cache each line is a cache hit of well under a second. Exit status: lab build's.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${1:-target/release/lab}
phase=./scripts/phase.sh
$phase kernel-x86_64-base "$lab" build --arch x86_64
$phase kernel-x86_64-bad-waitqueue "$lab" build --arch x86_64 \
  --patches bad-waitqueue-signal-before-condition
$phase kernel-x86_64-sched-wait "$lab" build --arch x86_64 \
  --patches sched-wait-abort-exclusive-wait
$phase kernel-arm64-base "$lab" build --arch arm64
