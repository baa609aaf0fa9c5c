#!/usr/bin/env bash
# Runs one phase of a make target and prints its wall time, so that a CI log says where the
# time went: `scripts/phase.sh NAME command [args...]`. The command's exit status is kept.
set -uo pipefail
name=$1
shift
start=$(date +%s)
echo "== phase $name: $*" >&2
"$@"
rc=$?
echo "== phase $name: $(( $(date +%s) - start ))s (exit $rc)" >&2
exit $rc
