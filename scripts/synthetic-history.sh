#!/usr/bin/env bash
# Builds a synthetic, deterministic git history of Debian's Linux 6.12.117 for `lab bisect`
# (the tarball has no kernel git history, and this machine has no network):
#
#   scripts/synthetic-history.sh OUTDIR
#
# makes OUTDIR/linux, a bare git repository whose branch `main` holds 48 commits:
#   0      the pristine tree of /usr/src/linux-source-6.12.tar.xz (sha256 checked first)
#   1      patches/futex-race-amplifiers + patches/waitqueue-race-amplifiers (inert until a
#          knob is set, so the history is still "good")
#   19     patches/bad-futex-no-spurious-retry, applied as is (first bad commit for the futex tests)
#   33     patches/bad-waitqueue-signal-before-condition (first bad commit for the pipe tests)
#   41     patches/bad-epoll-warn-exclusive (first bad commit for epoll_exclusive_herd: a kernel
#          WARNING on every run, for a crash bisection)
#   others harmless: comment-only edits to .c files built in the lab's x86_64 and arm64
#          configs, Kconfig help text, Documentation
# plus OUTDIR/history.json (every commit, the special ones, good and bad) and
# OUTDIR/synthetic-6.12.toml, a kernel definition (`[git]`) for lab.
#
# Same inputs, same commit ids: fixed names, emails and dates, no signing, no user or system
# git config, LC_ALL=C. The objects are written by one `git fast-import` stream (no index, no
# checkout of 86k files): about 20 s of CPU reading lab's pristine unpacked tree from its cache
# (read only) when present, 30 s streaming the tarball through xz otherwise; 25-40 s wall on a
# quiet 2-core machine, more when it is busy.
# Idempotent: if OUTDIR/linux already holds the tip these inputs (this script, the patch sets,
# the tarball) produced, it prints the tip and exits 0. It only ever replaces an OUTDIR/linux
# that it made itself (marked in the repository's config).
#
# Exit codes: 0 done; 2 usage, missing or wrong tarball, a patch that no longer applies;
# 3 anything else that broke (git, python, the self-checks).
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

SHA256=585a4a074597aefa2b1a68ada83a3184ba351c127544dea80618bbcceaa3961f
TARBALL=${LAB_SYNTHETIC_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
TOP_DIR=linux-source-6.12
# git's tree id of the pristine tarball: a lab cache that drifted from the tarball (or a
# conversion bug) is caught here instead of silently changing every commit id.
ROOT_TREE=23481b65e33b461f4934938716acfba8fe6d61dd
NCOMMITS=48
AMP_SETS=(futex-race-amplifiers waitqueue-race-amplifiers)
BAD_FUTEX_SET=bad-futex-no-spurious-retry
BAD_FUTEX_INDEX=19
BAD_WQ_SET=bad-waitqueue-signal-before-condition
BAD_WQ_INDEX=33
BAD_EPOLL_SET=bad-epoll-warn-exclusive
BAD_EPOLL_INDEX=41

die() { local code=$1; shift; echo "synthetic-history: error: $*" >&2; exit "$code"; }
log() { echo "synthetic-history: $*" >&2; }

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi

SCRIPT=$(realpath "${BASH_SOURCE[0]}")
LAB_ROOT=$(dirname "$(dirname "$SCRIPT")")
PATCHES=$LAB_ROOT/patches
command -v python3 > /dev/null || die 2 "python3 is missing: run \`make setup\`"
command -v xz > /dev/null || die 2 "xz is missing: run \`make setup\`"

# Only this script's settings: no user or system config, no inherited repository.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES \
  GIT_COMMON_DIR GIT_NAMESPACE GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_AUTHOR_DATE \
  GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL GIT_COMMITTER_DATE
g() { git -c core.autocrlf=false -c commit.gpgSign=false -c gc.auto=0 "$@"; }

[[ -f $TARBALL ]] || die 2 "kernel source tarball $TARBALL is missing: run \`make setup\` (it installs linux-source-6.12)"
mkdir -p "$1" || die 2 "cannot create $1"
OUTDIR=$(cd "$1" && pwd -P)
REPO=$OUTDIR/linux
HISTORY=$OUTDIR/history.json
KERNEL_DEF=$OUTDIR/synthetic-6.12.toml
exec 9> "$OUTDIR/.synthetic-history.lock"
flock 9

SECONDS=0
got=$(sha256sum "$TARBALL" | cut -d' ' -f1)
[[ $got == "$SHA256" ]] || die 2 "$TARBALL has sha256 $got, expected $SHA256: reinstall the pinned linux-source-6.12 with \`make setup\`"

# The patch files, in series order, for every set the history uses.
series_files() {
  local set=$1 line
  [[ -f $PATCHES/$set/series ]] || die 2 "patch set $PATCHES/$set has no series file"
  while read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    line=${line%"${line##*[![:space:]]}"}
    [[ -z $line ]] && continue
    [[ -f $PATCHES/$set/$line ]] || die 2 "$PATCHES/$set/series lists $line, which does not exist"
    echo "$PATCHES/$set/$line"
  done < "$PATCHES/$set/series"
}
# (A command substitution, not a process substitution, so that `die` in it stops the script.)
list=$(for set in "${AMP_SETS[@]}"; do series_files "$set"; done)
mapfile -t AMP_PATCHES <<< "$list"
list=$(series_files "$BAD_FUTEX_SET")
mapfile -t BAD_FUTEX_PATCHES <<< "$list"
list=$(series_files "$BAD_WQ_SET")
mapfile -t BAD_WQ_PATCHES <<< "$list"
list=$(series_files "$BAD_EPOLL_SET")
mapfile -t BAD_EPOLL_PATCHES <<< "$list"
for p in "${AMP_PATCHES[@]}" "${BAD_FUTEX_PATCHES[@]}" "${BAD_WQ_PATCHES[@]}" "${BAD_EPOLL_PATCHES[@]}"; do
  [[ -n $p ]] || die 2 "a patch set used by the synthetic history has an empty series"
  [[ $p != *[[:space:]]* ]] || die 2 "patch path $p has white space in it"
done

# Everything the commit ids depend on.
INPUTS=$({
  echo "$SHA256"
  cat "$SCRIPT"
  for p in "${AMP_PATCHES[@]}" -- "${BAD_FUTEX_PATCHES[@]}" -- "${BAD_WQ_PATCHES[@]}" -- \
    "${BAD_EPOLL_PATCHES[@]}"; do
    if [[ $p == -- ]]; then echo "--"; else printf '%s\n' "${p#"$PATCHES"/}"; cat "$p"; fi
  done
} | sha256sum | cut -d' ' -f1)

write_kernel_def() {
  python3 - "$KERNEL_DEF" "$REPO" "$NCOMMITS" "$BAD_FUTEX_INDEX" "$BAD_FUTEX_SET" \
    "$BAD_WQ_INDEX" "$BAD_WQ_SET" "$BAD_EPOLL_INDEX" "$BAD_EPOLL_SET" <<'PY'
import json, os, sys
path, repo, n, bf, bf_set, bw, bw_set, be, be_set = sys.argv[1:10]
text = f"""# A synthetic {n}-commit history of Linux 6.12.117 for `lab bisect`, made by
# scripts/synthetic-history.sh (see kernels/README.md and history.json next to this file).
# Commit {bf} applies patches/{bf_set}, commit {bw}
# patches/{bw_set}, commit {be}
# patches/{be_set}; everything else builds a good kernel.
format-version = 1
description = "Synthetic history of Linux 6.12.117: {n} commits, bad futex at {bf}, bad wait queue at {bw}, epoll WARNING (a kernel crash) at {be}"

[git]
repo = {json.dumps(repo)}
ref = "main"
"""
tmp = path + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.replace(tmp, path)
PY
}

# Idempotent fast path: the recorded tip for exactly these inputs is what the repository holds.
if [[ -f $HISTORY && -d $REPO ]]; then
  recorded=$(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(d.get("inputs", ""), d.get("bad", ""))' "$HISTORY" 2> /dev/null || true)
  tip=$(g -C "$REPO" rev-parse --verify -q refs/heads/main 2> /dev/null || true)
  if [[ -n $tip && $recorded == "$INPUTS $tip" ]]; then
    write_kernel_def
    log "$REPO is up to date ($NCOMMITS commits on main)"
    echo "$tip"
    exit 0
  fi
fi
MARK=synthetic-history.made-by
if [[ -e $REPO ]]; then
  [[ -n $(g -C "$REPO" config --get "$MARK" 2> /dev/null || true) ]] ||
    die 2 "$REPO exists and was not made by this script: move it away or choose another OUTDIR"
  log "$REPO does not hold the history of these inputs: rebuilding it from scratch"
fi

CACHE=${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lab}
PRISTINE=$CACHE/src/tar-${SHA256:0:12}/$TOP_DIR
NEW=$OUTDIR/.linux.new
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH" "$NEW"' EXIT

# One fast-import stream: the root tree from a directory or the tarball, then every commit.
import_history() {
  local kind=$1 from=$2
  rm -rf "$NEW"
  g init -q --bare -b main "$NEW"
  g -C "$NEW" config "$MARK" scripts/synthetic-history.sh
  set +e
  python3 - "$kind" "$from" "$TOP_DIR" "$(mktemp -d -p "$SCRATCH")" "$NCOMMITS" \
    "$BAD_FUTEX_INDEX" "$BAD_WQ_INDEX" "$BAD_EPOLL_INDEX" "${#AMP_PATCHES[@]}" "${AMP_PATCHES[@]}" \
    "${#BAD_FUTEX_PATCHES[@]}" "${BAD_FUTEX_PATCHES[@]}" \
    "${#BAD_WQ_PATCHES[@]}" "${BAD_WQ_PATCHES[@]}" \
    "${#BAD_EPOLL_PATCHES[@]}" "${BAD_EPOLL_PATCHES[@]}" 3>&1 1>&2 <<'PY' |
import os, stat, subprocess, sys, tarfile

kind, src, top, scratch, ncommits, bad_futex, bad_wq, bad_epoll = sys.argv[1:9]
ncommits, bad_futex, bad_wq, bad_epoll = int(ncommits), int(bad_futex), int(bad_wq), int(bad_epoll)
rest = sys.argv[9:]
sets = []
while rest:
    n = int(rest[0])
    sets.append(rest[1:1 + n])
    rest = rest[1 + n:]
amp_patches, bad_futex_patches, bad_wq_patches, bad_epoll_patches = sets
bad = {bad_futex: bad_futex_patches, bad_wq: bad_wq_patches, bad_epoll: bad_epoll_patches}
out = os.fdopen(3, "wb", buffering=1 << 20)

IDENT = b"Lab Synthetic History <synthetic-history@lab.invalid>"
T0 = 1735725600  # 2025-01-01 10:00:00 UTC; commit i is dated T0 + i hours


# Every git this runs stays out of any repository around the scratch folder.
env = dict(os.environ, GIT_CEILING_DIRECTORIES=scratch)


def fail(code, msg):
    print(f"synthetic-history: error: {msg}", file=sys.stderr)
    sys.exit(code)


# The harmless steps, in turn: (kind, path, subject prefix, what a bisect step rebuilds).
# Every .c file here is built in the lab's x86_64 and arm64 configs. fs/pipe.c and fs/eventpoll.c
# are also touched by bad sets (bad-waitqueue-signal-before-condition, bad-epoll-warn-exclusive),
# and the comments land at their ends, far below those sets' hunks: every bad set applies at
# the same place as on the pristine tree.
# The bad commits take no harmless step: the one after a bad commit takes the next entry.
HARMLESS = [
    ("c", "kernel/futex/core.c", "futex", "kernel/futex/core.o"),
    ("c", "fs/pipe.c", "fs/pipe", "fs/pipe.o"),
    ("doc", "Documentation/locking/futex-requeue-pi.rst", "Documentation/locking", None),
    ("c", "kernel/sched/core.c", "sched/core", "kernel/sched/core.o"),
    ("c", "kernel/futex/syscalls.c", "futex", "kernel/futex/syscalls.o"),
    ("kconfig", "init/Kconfig", "init/Kconfig", "\t  run glibc-based applications correctly.\n"),
    ("c", "fs/read_write.c", "fs", "fs/read_write.o"),
    ("c", "kernel/sched/completion.c", "sched/completion", "kernel/sched/build_utility.o"),
    ("doc", "Documentation/scheduler/completion.rst", "Documentation/scheduler", None),
    ("c", "kernel/futex/pi.c", "futex/pi", "kernel/futex/pi.o"),
    ("c", "fs/eventpoll.c", "epoll", "fs/eventpoll.o"),
    ("c", "kernel/sched/fair.c", "sched/fair", "kernel/sched/fair.o"),
    ("c", "fs/select.c", "fs/select", "fs/select.o"),
    ("doc", "Documentation/locking/robust-futexes.rst", "Documentation/locking", None),
    ("c", "kernel/futex/requeue.c", "futex/requeue", "kernel/futex/requeue.o"),
    ("kconfig", "kernel/Kconfig.preempt", "sched/preempt", "\t  require real-time guarantees.\n"),
    ("c", "fs/eventfd.c", "eventfd", "fs/eventfd.o"),
    ("c", "kernel/sched/wait_bit.c", "sched/wait_bit", "kernel/sched/build_utility.o"),
    ("c", "fs/open.c", "fs/open", "fs/open.o"),
    ("doc", "Documentation/locking/locktypes.rst", "Documentation/locking", None),
    ("c", "fs/signalfd.c", "signalfd", "fs/signalfd.o"),
    ("c", "fs/timerfd.c", "timerfd", "fs/timerfd.o"),
]


def patch_paths(patch):
    """Paths a patch reads or writes, and the mode of each file it creates."""
    paths, modes, new, header = [], {}, None, False
    with open(patch, "rb") as f:
        for line in f:
            if line.startswith(b"diff --git "):
                new, header = None, True
            elif line.startswith(b"@@"):
                header = False
            elif header and line.startswith(b"new file mode "):
                new = line.split()[-1].decode()
            elif header and line.startswith((b"--- ", b"+++ ")):
                p = line[4:].rstrip(b"\n").split(b"\t")[0].decode()
                if p != "/dev/null":
                    p = p.split("/", 1)[1]
                    if p not in paths:
                        paths.append(p)
                    if line.startswith(b"+++ ") and new:
                        modes[p] = new
    return paths, modes


def mailinfo(patch):
    """The patch's own subject and message, as `git am` would take them."""
    msg = os.path.join(scratch, "msg")
    with open(patch, "rb") as f:
        info = subprocess.run(["git", "mailinfo", msg, os.devnull], stdin=f, cwd=scratch,
                              env=env, capture_output=True, check=True).stdout.decode()
    subject = next(l[len("Subject: "):] for l in info.splitlines() if l.startswith("Subject: "))
    body = open(msg, encoding="utf-8").read().strip()
    return subject, body


def set_name(patch):
    return os.path.basename(os.path.dirname(patch))


# The plan: one entry per commit after the root, each a subject, a body and an action.
plan = []
h = 0
for i in range(1, ncommits):
    if i == 1:
        subjects = "\n".join(f"  {mailinfo(p)[0]}" for p in amp_patches)
        names = " and ".join(dict.fromkeys(f"patches/{set_name(p)}" for p in amp_patches))
        plan.append(("futex, sched/wait: Add the race amplifiers (debug knobs, off by default)",
                     f"Applies {names}:\n\n{subjects}\n\nEvery knob is 0 by default, so "
                     "this kernel behaves like the pristine one: the history is still good.",
                     ("patches", amp_patches)))
    elif i in bad:
        ps = bad[i]
        subject, body = mailinfo(ps[0])
        body = (body + "\n\n" if body else "") + (
            f"Synthetic history: applies patches/{set_name(ps[0])}, a known-bad positive control.")
        plan.append((subject, body, ("patches", ps)))
    else:
        kind_, path, prefix, arg = HARMLESS[h % len(HARMLESS)]
        h += 1
        if kind_ == "c":
            subject = f"{prefix}: Comment-only change in {os.path.basename(path)} (synthetic step {i})"
            body = (f"No functional change: a bisect step at this commit rebuilds {arg} and "
                    "relinks.")
            text = (f"\n/*\n * Synthetic history, step {i}: a comment-only change with no functional\n"
                    f" * effect, so that a bisect step rebuilds {arg} and little else.\n */\n")
            plan.append((subject, body, ("append", path, text)))
        elif kind_ == "doc":
            subject = f"{prefix}: Documentation-only change in {os.path.basename(path)} (synthetic step {i})"
            body = "No change to the kernel build."
            text = f"\n.. Synthetic history step {i} - a documentation-only change.\n"
            plan.append((subject, body, ("append", path, text)))
        else:
            subject = f"{prefix}: Help text only change (synthetic step {i})"
            body = "Kconfig help text only: the resulting .config, and so the build, is unchanged."
            text = f"\t  (Synthetic history, step {i}: help text only.)\n"
            plan.append((subject, body, ("after", path, arg, text)))

wanted = set()
for _, _, action in plan:
    if action[0] == "patches":
        for p in action[1]:
            wanted.update(patch_paths(p)[0])
    else:
        wanted.add(action[1])

# The root commit: every file of the pristine tree as a blob with a mark.
orig = {}  # path -> (mode, content) of the files the plan edits
entries = []  # (mode, mark, path)
marks = {}


def blob(path, mode, data):
    mark = len(entries) + 1
    out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
    out.write(data)
    out.write(b"\n")
    entries.append((mode, mark, path))
    marks[path] = mark
    if path in wanted:
        orig[path] = (mode, data)


def git_mode(st_mode):
    # git keeps only the owner's execute bit (canon_mode() in cache.h).
    return "100755" if st_mode & stat.S_IXUSR else "100644"


if kind == "dir":
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        names = sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))])
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, src)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                blob(rel, "120000", os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    blob(rel, git_mode(st.st_mode), f.read())
            else:
                fail(3, f"{full} is neither a file nor a symlink")
else:
    xz = subprocess.Popen(["xz", "-dc", src], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=xz.stdout, mode="r|") as tar:
        for m in tar:
            name = m.name.rstrip("/")
            if name == top or m.isdir():
                continue
            if not name.startswith(top + "/"):
                fail(3, f"{src}: {m.name} is outside {top}/")
            rel = name[len(top) + 1:]
            if m.issym():
                blob(rel, "120000", m.linkname.encode())
            elif m.islnk():
                target = m.linkname[len(top) + 1:]
                entries.append((entries[marks[target] - 1][0], marks[target], rel))
                marks[rel] = marks[target]
            elif m.isreg():
                blob(rel, git_mode(m.mode), tar.extractfile(m).read())
            else:
                fail(3, f"{src}: {m.name} is neither a file nor a link")
    if xz.wait() != 0:
        fail(3, f"xz -dc {src} failed")

missing = sorted(wanted - set(orig))
for p in missing:
    # Only a file a patch creates may be missing from the pristine tree.
    if not any(p in patch_paths(q)[1] for _, _, a in plan if a[0] == "patches" for q in a[1]):
        fail(2, f"{p} is not in the pristine tree: update HARMLESS in this script")


def commit(i, subject, body, files):
    msg = (subject + "\n\n" + body + "\n").encode()
    when = b"%d +0000" % (T0 + 3600 * i)
    out.write(b"commit refs/heads/main\nauthor %s %s\ncommitter %s %s\ndata %d\n"
              % (IDENT, when, IDENT, when, len(msg)))
    out.write(msg)
    for line in files:
        out.write(line)
    out.write(b"\n")


root_msg = ("Linux 6.12.117 (Debian linux-source-6.12, 6.12.117-1~deb12u1)",
            f"The pristine tree of linux-source-6.12.tar.xz, sha256\n{os.environ['SYNTH_SHA256']}.")
commit(0, *root_msg, [b"M %s :%d %s\n" % (m.encode(), k, p.encode()) for m, k, p in entries])
del entries, marks

state = dict(orig)  # path -> (mode, content) or None once deleted
for i, (subject, body, action) in enumerate(plan, start=1):
    changed = {}
    if action[0] == "append":
        mode, data = state[action[1]]
        if not data.endswith(b"\n"):
            fail(3, f"{action[1]} does not end with a newline")
        changed[action[1]] = (mode, data + action[2].encode())
    elif action[0] == "after":
        _, path, anchor, text = action
        mode, data = state[path]
        if data.count(anchor.encode()) != 1:
            fail(3, f"{path}: the anchor {anchor!r} is not there exactly once")
        # After the anchor and the lines earlier steps added there, so they read in order.
        at = data.index(anchor.encode()) + len(anchor)
        while data.startswith(b"\t  (Synthetic history, step ", at):
            at = data.index(b"\n", at) + 1
        changed[path] = (mode, data[:at] + text.encode() + data[at:])
    else:
        for patch in action[1]:
            # `git apply` (no fuzz, offsets allowed) in a scratch tree of the touched files.
            work = os.path.join(scratch, f"apply-{i}-{os.path.basename(patch)}")
            paths, new_modes = patch_paths(patch)
            for p in paths:
                cur = changed.get(p, state.get(p))
                if cur is not None:
                    os.makedirs(os.path.dirname(os.path.join(work, p)), exist_ok=True)
                    with open(os.path.join(work, p), "wb") as f:
                        f.write(cur[1])
                    os.chmod(os.path.join(work, p), 0o755 if cur[0] == "100755" else 0o644)
            os.makedirs(work, exist_ok=True)
            r = subprocess.run(["git", "apply", "--whitespace=nowarn", patch], cwd=work, env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(2, f"{patch} does not apply at step {i} of the synthetic history:\n"
                        f"{r.stderr.strip()}")
            for p in paths:
                full = os.path.join(work, p)
                if os.path.lexists(full):
                    with open(full, "rb") as f:
                        changed[p] = (new_modes.get(p) or git_mode(os.lstat(full).st_mode), f.read())
                else:
                    changed[p] = None
    files = []
    for p in sorted(changed):
        if changed[p] is None:
            files.append(b"D %s\n" % p.encode())
        else:
            mode, data = changed[p]
            files.append(b"M %s inline %s\ndata %d\n%s\n" % (mode.encode(), p.encode(), len(data), data))
        state[p] = changed[p]
    commit(i, subject, body, files)

out.write(b"done\n")
out.close()
PY
  g -C "$NEW" -c pack.compression=1 fast-import --quiet --done --depth=0
  local rc=("${PIPESTATUS[@]}")
  set -e
  [[ ${rc[0]} -eq 0 ]] || exit "${rc[0]}"
  [[ ${rc[1]} -eq 0 ]] || die 3 "git fast-import failed (exit ${rc[1]})"
}

export SYNTH_SHA256=$SHA256
if [[ -f $CACHE/src/tar-${SHA256:0:12}/.complete && -d $PRISTINE &&
  $(cat "$CACHE/src/tar-${SHA256:0:12}/.complete") == "$SHA256" ]]; then
  log "importing the pristine tree from lab's cache ($PRISTINE, read only)"
  import_history dir "$PRISTINE"
  if [[ $(g -C "$NEW" rev-parse "main~$((NCOMMITS - 1))^{tree}") != "$ROOT_TREE" ]]; then
    log "warning: $PRISTINE differs from the tarball (it was modified): using the tarball instead"
    import_history tar "$TARBALL"
  fi
else
  log "importing the pristine tree from $TARBALL"
  import_history tar "$TARBALL"
fi

# Self-checks: the shape of the history and the three bad commits.
mapfile -t SHAS < <(g -C "$NEW" rev-list --reverse refs/heads/main)
[[ ${#SHAS[@]} -eq $NCOMMITS ]] || die 3 "self-check failed: main has ${#SHAS[@]} commits, not $NCOMMITS"
[[ $(g -C "$NEW" rev-parse "${SHAS[0]}^{tree}") == "$ROOT_TREE" ]] ||
  die 3 "self-check failed: the root tree of $TARBALL is not $ROOT_TREE"
patch_id() { g -C "$NEW" patch-id --stable | cut -d' ' -f1 | sort | tr '\n' ' '; }
for spec in "$BAD_FUTEX_INDEX ${BAD_FUTEX_PATCHES[*]}" "$BAD_WQ_INDEX ${BAD_WQ_PATCHES[*]}" \
  "$BAD_EPOLL_INDEX ${BAD_EPOLL_PATCHES[*]}"; do
  read -r idx patches <<< "$spec"
  # shellcheck disable=SC2086 # a list of paths without spaces
  want=$(cat $patches | patch_id)
  have=$(g -C "$NEW" diff-tree -p --no-commit-id "${SHAS[$idx]}" | patch_id)
  [[ -n $want && $want == "$have" ]] ||
    die 3 "self-check failed: commit $idx (${SHAS[$idx]}) does not carry exactly the diff of $patches"
done
# The bad change is in the bad commit's file and not in its parent's.
count() { g -C "$NEW" show "${SHAS[$1]}:$2" | grep -c -F -e "$3" || true; }
expect_count() {
  local got
  got=$(count "$1" "$2" "$3")
  [[ $got == "$4" ]] || die 3 "self-check failed: commit $1 has $got lines with \"$3\" in $2, expected $4"
}
expect_count $((BAD_FUTEX_INDEX - 1)) kernel/futex/waitwake.c 'KNOWN-BAD' 0
expect_count "$BAD_FUTEX_INDEX" kernel/futex/waitwake.c 'KNOWN-BAD' 1
retries=$(count $((BAD_FUTEX_INDEX - 1)) kernel/futex/waitwake.c 'goto retry;')
expect_count "$BAD_FUTEX_INDEX" kernel/futex/waitwake.c 'goto retry;' $((retries - 1))
expect_count $((BAD_WQ_INDEX - 1)) fs/pipe.c 'KNOWN-BAD' 0
expect_count "$BAD_WQ_INDEX" fs/pipe.c 'KNOWN-BAD' 1
expect_count $((BAD_EPOLL_INDEX - 1)) fs/eventpoll.c 'KNOWN-BAD' 0
expect_count "$BAD_EPOLL_INDEX" fs/eventpoll.c 'KNOWN-BAD' 1

rm -f "$HISTORY"
rm -rf "$REPO"
mv "$NEW" "$REPO"
TIP=${SHAS[$((NCOMMITS - 1))]}

g -C "$REPO" log --reverse --format='%H %s' refs/heads/main > "$SCRATCH/log"
python3 - "$SCRATCH/log" "$HISTORY" "$INPUTS" "$REPO" "$BAD_FUTEX_INDEX" "$BAD_FUTEX_SET" \
  "$BAD_WQ_INDEX" "$BAD_WQ_SET" "$BAD_EPOLL_INDEX" "$BAD_EPOLL_SET" <<'PY'
import json, os, sys
log, path, inputs, repo, bf, bf_set, bw, bw_set, be, be_set = sys.argv[1:11]
commits = []
for i, line in enumerate(open(log, encoding="utf-8").read().splitlines()):
    sha, subject = line.split(" ", 1)
    commits.append({"index": i, "sha": sha, "subject": subject})
special = lambda i, s: {"index": int(i), "sha": commits[int(i)]["sha"], "patch_set": s}
doc = {
    "format_version": 1,
    "inputs": inputs,
    "repo": repo,
    "branch": "main",
    "commits": commits,
    "amplifiers": {"index": 1, "sha": commits[1]["sha"]},
    "bad_futex": special(bf, bf_set),
    "bad_waitqueue": special(bw, bw_set),
    "bad_epoll": special(be, be_set),
    "good": commits[1]["sha"],
    "bad": commits[-1]["sha"],
}
with open(path + ".tmp", "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
PY
write_kernel_def

log "built $REPO ($NCOMMITS commits on main) in ${SECONDS} s: bad futex at $BAD_FUTEX_INDEX, bad wait queue at $BAD_WQ_INDEX, epoll WARNING at $BAD_EPOLL_INDEX"
log "kernel definition: $KERNEL_DEF; commit list: $HISTORY"
echo "$TIP"
