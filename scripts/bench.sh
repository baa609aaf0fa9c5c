#!/usr/bin/env bash
# `make bench`: lab's performance figures, measured in one run on this machine, printed as
# ratios against each other (timings on a shared machine are noisy: compare within a run).
#   - base build, one-file variant rebuild, cache hit (x86_64)
#   - boot-to-READY and boot-to-SSH per arch (median of 3 boots)
#   - lab compare's time to verdict for three comparisons on both arches, fresh (no stored
#     runs reused), and the runs per side adaptive stopping used against the fixed-n design
#     with the same error rates
#   - lab gate on the two shipped candidates as one series, both arches (warm ccache)
#   - the bisection simulations: Bayesian search against syzbot's fixed 10-runs policy, with
#     the model's assumptions broken (flaky good commits, boot-to-boot spread)
#   BENCH_COMPARE=0 skips the comparisons and the gate (they take minutes each).
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${LAB:-target/release/lab}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d[0][sys.argv[2]])" "$1" "$2"; }

echo "bench: kernel builds (x86_64)"
t0=$(now); $LAB -q build --arch x86_64 --json > "$tmp/base.json"; t1=$(now)
base_s=$(secs "$t0" "$t1"); base_cached=$(field "$tmp/base.json" cached)
cold_s=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{json.load(open(d[0]['manifest']))['build-seconds']:.1f}\")" "$tmp/base.json")

# A variant that is new every time: a comment in kernel/futex/waitwake.c, so the figure is a
# real one-file rebuild and never a cache hit.
mkdir -p "$tmp/variant"
stamp=$(date +%s%N)
cat > "$tmp/variant/0001-bench.patch" <<PATCH
From: lab bench <lab@example.org>
Subject: [PATCH] futex: bench variant $stamp

Signed-off-by: lab bench <lab@example.org>
---
--- a/kernel/futex/waitwake.c
+++ b/kernel/futex/waitwake.c
@@ -1,3 +1,4 @@
 // SPDX-License-Identifier: GPL-2.0-or-later
+/* lab bench variant $stamp */
 
 #include <linux/plist.h>
PATCH
t0=$(now); $LAB -q build --arch x86_64 --patches "$tmp/variant/0001-bench.patch" --json > "$tmp/variant.json"; t1=$(now)
variant_s=$(secs "$t0" "$t1"); variant_compiled=$(field "$tmp/variant.json" compiled)
t0=$(now); $LAB -q build --arch x86_64 --json > "$tmp/hit.json"; t1=$(now)
hit_s=$(secs "$t0" "$t1"); hit_cached=$(field "$tmp/hit.json" cached)

echo "bench: boots (3 per arch, TCG unless KVM probes fine)"
declare -A ready ssh
for arch in x86_64 arm64; do
  r=(); s=()
  for i in 1 2 3; do
    $LAB -q run --arch "$arch" --test futex_errno --duration 200ms --seed "$i" --json > "$tmp/run-$arch-$i.json" || true
    read -r a b < <(python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
b=d[0]['manifest']['boots'][0]
print(b.get('ready_ms') or 'nan', b.get('ssh_ms') or 'nan')" "$tmp/run-$arch-$i.json")
    r+=("$a"); s+=("$b")
  done
  ready[$arch]=$(printf '%s\n' "${r[@]}" | sort -g | sed -n 2p)
  ssh[$arch]=$(printf '%s\n' "${s[@]}" | sort -g | sed -n 2p)
done

compare_rows=()
if [ "${BENCH_COMPARE:-1}" != 0 ]; then
  for pair in "base bad-futex-no-spurious-retry" "base futex-lockless-wakeup-revert" "base base"; do
    set -- $pair
    echo "bench: lab compare $1 $2 (both arches, fresh runs)"
    rc=0; $LAB -q compare "$1" "$2" --arch all --fresh --json > "$tmp/cmp-$2.json" || rc=$?
    compare_rows+=("$1" "$2" "$tmp/cmp-$2.json" "$rc")
  done
fi

gate_line=""
if [ "${BENCH_COMPARE:-1}" != 0 ]; then
  echo "bench: lab gate on the two shipped candidates (both arches)"
  mkdir -p "$tmp/gate"
  cp patches/futex-lockless-wakeup-revert/0001-*.patch "$tmp/gate/0001-futex-revert.patch"
  cp patches/sched-wait-abort-exclusive-wait/0001-*.patch "$tmp/gate/0002-abort-exclusive-wait.patch"
  t0=$(now); rc=0; $LAB -q gate "$tmp/gate" --arch all --json > "$tmp/gate.json" || rc=$?; t1=$(now)
  gate_line="  gate, two shipped candidates, both arches: $(secs "$t0" "$t1") s, verdict $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "$tmp/gate.json" 2>/dev/null || echo '?') (exit $rc)"
fi

python3 - "$base_s" "$base_cached" "$cold_s" "$variant_s" "$variant_compiled" "$hit_s" "$hit_cached" \
  "${ready[x86_64]}" "${ssh[x86_64]}" "${ready[arm64]}" "${ssh[arm64]}" <<'PY'
import sys
(base_s, base_cached, cold_s, variant_s, compiled, hit_s, hit_cached,
 rx, sx, ra, sa) = sys.argv[1:]
f = float
print()
print("lab bench (one run, this machine)")
print(f"  base build x86_64        {f(base_s):8.2f} s  ({'cache hit' if base_cached == 'True' else 'built'}; the cold build took {f(cold_s):.1f} s)")
print(f"  one-file variant rebuild {f(variant_s):8.2f} s  ({compiled} compile steps)")
print(f"  cache hit                {f(hit_s):8.2f} s  (cached={hit_cached})")
print(f"  ratio cold build / variant rebuild   {f(cold_s) / f(variant_s):8.1f}x")
print(f"  ratio variant rebuild / cache hit    {f(variant_s) / max(f(hit_s), 1e-3):8.1f}x")
print(f"  boot to READY  x86_64 {f(rx) / 1000:6.2f} s   arm64 {f(ra) / 1000:6.2f} s   (median of 3)")
print(f"  boot to SSH    x86_64 {f(sx) / 1000:6.2f} s   arm64 {f(sa) / 1000:6.2f} s")
print(f"  ratio arm64 / x86_64 boot-to-SSH     {f(sa) / f(sx):8.2f}x")
PY
if [ ${#compare_rows[@]} -gt 0 ]; then
  python3 - "${compare_rows[@]}" <<'PY'
import json, sys
args = sys.argv[1:]
rows = [args[i:i + 4] for i in range(0, len(args), 4)]
print("  compare (both arches, fresh)        verdict       to verdict   runs/side used  fixed-n  saved")
first = None
for a, b, path, rc in rows:
    try:
        r = json.load(open(path))
    except Exception as e:
        print(f"  {a} vs {b}: no report (exit {rc}): {e}")
        continue
    t = r["time_to_verdict_s"]
    first = first or t
    used, fixed = r["runs_per_side_used"], r["runs_per_side_fixed_n"]
    saved = f"{100 * (1 - used / fixed):.0f}%" if fixed else "-"
    print(f"  {a + ' vs ' + b:36} {r['overall']:13} {t:7.0f} s   {used:14}  {fixed:7}  {saved:>5}   (exit {rc})")
    for q in r["questions"]:
        if q["question"]["kind"] == "metric" or q["verdict"]["verdict"] != "no-difference":
            v = q["verdict"]["verdict"]
            d = q["decision"]
            iv = d.get("interval")
            ivs = f"[{iv['lower']:.3f}, {iv['upper']:.3f}]" if iv else ""
            name = q["question"].get("name", "failure-rate")
            print(f"      {q['arch']:7} {q['test']:22} {name:20} {v:13} {ivs}")
if first:
    for a, b, path, rc in rows[1:]:
        try:
            t = json.load(open(path))["time_to_verdict_s"]
            print(f"  ratio time to verdict {b} / {rows[0][1]}: {t / first:.2f}x")
        except Exception:
            pass
PY
fi
[ -n "$gate_line" ] && echo "$gate_line"
echo "  bisection simulations (Bayesian search against 10 runs a step in one boot, bad if 2 or more fail;"
echo "  the second table: true ε (good commits failing) and κ (spread of the detection rate between boots),"
echo "  q = 0.3, 64 commits; conf-wrong = ended confident on a wrong commit):"
cargo test -q --release -p lab --lib bisect::simulation -- --nocapture --test-threads=1 2>&1 |
  grep -E '^ +(p|ε|0\.[0-9]+|0) |worst|right' || true
echo "  compare simulations through the whole analysis path (boot effects, drift, quantised ties):"
cargo test -q --release -p lab --lib compare::simulation::compare_error_rates_table -- --ignored --nocapture --test-threads=1 2>&1 |
  grep -E '^  ' || true
# The fault campaign's table (`make faults`, scripts/faults.py) is too long to run here; the
# newest one is shown with its date, so that bench output and the campaign travel together.
table=$(ls "${LAB_CACHE_DIR:-$HOME/.cache/lab}"/faults/table-*.txt 2>/dev/null |
  awk -F'table-' '{ print $NF + 0, $0 }' | sort -n | tail -1 | cut -d' ' -f2-)
if [ -n "$table" ] && [ -f "$table" ]; then
  echo "  fault campaign (make faults), last run $(date -u -r "$table" +%Y-%m-%dT%H:%MZ):"
  sed 's/^/    /' "$table"
else
  echo "  fault campaign: none run yet on this cache (make faults)"
fi
