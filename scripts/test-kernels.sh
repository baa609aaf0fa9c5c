#!/usr/bin/env bash
# Builds, one after the other and at the host's full width, the kernels that the test files
# share, before `cargo test` starts: `scripts/test-kernels.sh [LAB]`.
#
# Why: cargo runs two tests at a time. On an empty cache, two tests that need the same base
# kernel compiled the same ~1,000 files twice, side by side, each at half speed. Built here
# first, every later kernel of the tests is an artifact hit or a ccache hit for all but the
# files its patches touch: the synthetic git history's kernels share these objects (kbuild's
# O= trees use relative paths, see kernel/build.rs).
#
#   x86_64 base                                   every test file
#   arm64  base                                   vm.rs, gate.rs (the arm64-only break)
#
# No test kernel of `make test` changes a widely included header, so no other kernel is a
# near-full rebuild: the wait-queue positive control changes fs/pipe.c (see its README), and
# the one shipped candidate that changes include/linux/wait.h (sched-wait-abort-exclusive-wait)
# is left to `make selftest` and `make lab`.
#
# On a warm cache each line is a cache hit of well under a second. Exit status: lab build's.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${1:-target/release/lab}
phase=./scripts/phase.sh
$phase kernel-x86_64-base "$lab" build --arch x86_64
$phase kernel-arm64-base "$lab" build --arch arm64
