#!/usr/bin/env python3
"""lab's fault campaign: `make faults` (100 faults) and `make test` (a small one).

It runs the real lab binary on real kernels and guests, injects faults at seeded random
points, and checks what lab did about each one:

  left behind  QEMU, make or compiler processes of the campaign still alive once lab has
               exited (its warden included): must be 0
  runs lost    test outcomes that were in the results store before the fault and are not
               there (or not reused by the resumed session) after it: must be 0
  misreported  an infrastructure fault that came out as a test failure, a kernel crash, a
               hang, or a regression: must be 0
  exit         lab's exit code, against the documented one (README, "Exit codes")

Everything runs in a scratch cache (`--work`, default `faults/scratch` in lab's cache) so
that no fault touches the user's results store or artifacts. It borrows the user's cache read-only: the
unpacked kernel trees by symlink, the kernels and guest images by hard link (lab replaces
files by rename, never in place, so a corrupted scratch file never reaches the original).
The kernels the campaign boots must be built already (`make lab`, or `make test`'s
kernels phase); a missing one is built in the scratch cache first.

Usage: scripts/faults.py [--faults N] [--seed S] [--lab PATH] [--work DIR] [--only K,...]
Exit status: 0 when every fault was handled (all three columns 0, exit codes as
documented), 1 otherwise, 2 on bad usage or a campaign that could not set itself up.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INFRA = "infra"  # fault class whose every outcome must be an infra error
GUEST = "guest"  # fault class whose outcome is a result about the kernel (crash, hang)
LIFE = "lifecycle"  # signals to lab, make killed, races: must resume or fail cleanly

# Exit codes (README, "Exit codes"): 0 ok, 1 result, 2 usage, 3 infra; 130/143 after
# SIGINT/SIGTERM; -9 is a SIGKILL as Popen reports it.
SIG_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}
SIG_NAME = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGKILL: "SIGKILL"}

# Patch sets that touch only kernel/futex/waitwake.c: switching between them recompiles
# one file and relinks, so a build runs make for tens of seconds, long enough to be hit.
SWITCH_SETS = ["futex-lockless-wakeup-revert", "bad-futex-no-spurious-retry"]
PROCESS_NAMES = ("qemu-system", "make", "cc1", "gcc", "ld", "ccache", "as", "sh", "lab")


def log(msg):
    print(f"faults: {msg}", file=sys.stderr, flush=True)


class Campaign:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lab = Path(args.lab).resolve()
        self.real = Path(
            os.environ.get("LAB_CACHE_DIR")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lab"
        )
        self.work = Path(args.work or self.real / "faults" / "scratch").resolve()
        self.cache = self.work / "cache"
        self.rows = []
        self.injected = 0
        self.journal = self.work / "faults.jsonl"
        self.mounts = []

    # ----- set-up -------------------------------------------------------------------------

    def setup(self):
        # The kernel work trees (and their object trees) are kept from one campaign to the
        # next: they only make builds incremental. Everything else starts anew.
        kept = self.work.parent / (self.work.name + ".work-trees")
        if (self.cache / "work").is_dir() and not kept.exists():
            os.rename(self.cache / "work", kept)
        if self.work.exists():
            self.kill_leftovers()
            shutil.rmtree(self.work)
        self.cache.mkdir(parents=True)
        if kept.is_dir():
            os.rename(kept, self.cache / "work")
        if os.stat(self.real).st_dev != os.stat(self.work).st_dev:
            die(2, f"--work {self.work} must be on the same file system as {self.real}")
        (self.cache / "src").symlink_to(self.real / "src")
        for d, how in [("artifacts", "link"), ("images", "link"), ("debs", "copy"),
                       ("guest", "copy"), ("kselftest", "copy"), ("memo", "copy"),
                       ("calibration", "copy")]:
            src = self.real / d
            if not src.exists():
                continue
            flag = "-al" if how == "link" else "-a"
            subprocess.run(["cp", flag, str(src), str(self.cache / d)], check=True)
        self.env = dict(os.environ, LAB_CACHE_DIR=str(self.cache), LAB_TOML=str(REPO / "lab.toml"))
        self.env.pop("LAB_LOG", None)
        # The kernels every episode needs, in the scratch cache (hits when `make lab` ran).
        for a in (["--arch", "x86_64"], ["--arch", "arm64"]):
            r = self.lab_run(["build", *a, "--quiet"], timeout=3600)
            if r.returncode != 0:
                die(2, f"cannot build the base kernel ({' '.join(a)}): {r.stderr[-2000:]}")
        self.series_dir = self.work / "series-candidate"
        self.series_dir.mkdir()
        for p in sorted((REPO / "patches/futex-lockless-wakeup-revert").glob("*.patch")):
            shutil.copy(p, self.series_dir / p.name)

    def lab_cmd(self, args):
        return [str(self.lab), *args]

    def lab_run(self, args, timeout=1800, env=None):
        return subprocess.run(self.lab_cmd(args), env=env or self.env, cwd=REPO, timeout=timeout,
                              capture_output=True, text=True)

    def spawn(self, args, env=None):
        # Its own session: our signals go to lab alone, as a user's kill(1) would.
        return subprocess.Popen(self.lab_cmd(args), env=env or self.env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    # ----- observation --------------------------------------------------------------------

    def ours(self):
        """Live processes of the campaign other than this script: by command line or cwd."""
        needle = str(self.work)
        me = os.getpid()
        found = []
        for e in os.listdir("/proc"):
            if not e.isdigit() or int(e) == me:
                continue
            pid = int(e)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                state = stat.rsplit(") ", 1)[1].split()[0]
                if state in ("Z", "X"):
                    continue
                comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except (OSError, IndexError):
                continue
            if needle in cmd or cwd.startswith(needle):
                found.append((pid, comm))
        return found

    def left_behind(self, grace=6.0):
        """Processes of the campaign still alive `grace` seconds after lab exited (the
        warden's own grace is 2 s); they are killed so the next episode starts clean."""
        deadline = time.time() + grace
        left = self.ours()
        while left and time.time() < deadline:
            time.sleep(0.25)
            left = self.ours()
        if left:
            log(f"left behind: {left}")
            self.kill_leftovers()
        return len(left)

    def kill_leftovers(self):
        for pid, _ in self.ours():
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except OSError:
                pass

    def store(self):
        return self.cache / "results.db"

    def outcome_ids(self):
        p = self.store()
        if not p.exists():
            return set()
        try:
            c = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
            ids = {r[0] for r in c.execute("SELECT id FROM outcomes")}
            c.close()
            return ids
        except sqlite3.Error as e:
            log(f"store unreadable: {e}")
            return set()

    def session_outcomes(self, kind):
        """(session id, its stored outcomes) of the newest session of `kind`."""
        c = sqlite3.connect(f"file:{self.store()}?mode=ro", uri=True, timeout=30)
        row = c.execute("SELECT max(id) FROM sessions WHERE kind = ?", (kind,)).fetchone()
        sid = row[0] if row else None
        n = 0
        if sid is not None:
            n = c.execute("SELECT count(*) FROM outcomes o JOIN runs r ON o.run_id = r.id "
                          "WHERE r.session_id = ?", (sid,)).fetchone()[0]
        c.close()
        return sid, n

    def integrity(self):
        c = sqlite3.connect(f"file:{self.store()}?mode=ro", uri=True, timeout=30)
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
        c.close()
        return ok == "ok"

    def qemus(self):
        return [pid for pid, comm in self.ours() if comm.startswith("qemu-system")]

    def qemu_boot_dir(self, pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        for i, a in enumerate(argv):
            if a == b"-initrd":
                return Path(argv[i + 1].decode()).parent
        return None

    def qemu_ssh_port(self, pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().decode(errors="replace")
        mark = "hostfwd=tcp:127.0.0.1:"
        if mark not in text:
            return None
        return int(text.split(mark, 1)[1].split("-", 1)[0])

    def wait_ready_qemu(self, proc, timeout=300):
        """A QEMU of the campaign whose guest printed READY; None if lab ended first."""
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            for q in self.qemus():
                d = self.qemu_boot_dir(q)
                try:
                    if d and "LAB/1 READY" in (d / "console.log").read_text(errors="replace"):
                        return q
                except OSError:
                    pass
            time.sleep(0.2)
        return None

    def guest_ssh(self, qemu, command):
        d, port = self.qemu_boot_dir(qemu), self.qemu_ssh_port(qemu)
        key = d / "keys" / "client_key" if d else None
        if not key or not key.exists() or not port:
            return False
        try:
            r = subprocess.run(
                ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
                capture_output=True, timeout=20)
            return r.returncode in (0, 255)  # 255: the session died with what it did
        except subprocess.TimeoutExpired:
            return True  # the link went down under our own session, as it should

    # ----- bookkeeping --------------------------------------------------------------------

    def row(self, fault, verb, cls, code, expected, left=0, lost=0, misreported=0, note="",
            also=True):
        """One injected fault. `also`: whatever else the fault demands held (the same
        command finished after an interrupt, with the same answer)."""
        ok = code in expected and left == 0 and lost == 0 and misreported == 0 and also
        r = dict(fault=fault, verb=verb, cls=cls, code=code, expected=sorted(expected),
                 left=left, lost=lost, misreported=misreported, ok=ok, note=note)
        self.rows.append(r)
        self.injected += 1
        with open(self.journal, "a") as f:
            f.write(json.dumps(r) + "\n")
        log(f"#{self.injected} {fault} / {verb}: exit {code}, left {left}, lost {lost}, "
            f"misreported {misreported} {'ok' if ok else 'NOT OK'} {note}")

    def finish(self, proc, timeout=1800):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += "\nfaults: lab did not finish in time and was killed"
        return proc.returncode, out, err

    # ----- episodes -----------------------------------------------------------------------

    def drop_scratch_artifacts(self, set_name):
        for m in (self.cache / "artifacts").glob("*/manifest.json"):
            try:
                man = json.loads(m.read_text())
            except (OSError, ValueError):
                continue
            sets = {p["set"] for p in man.get("patches", [])}
            if man.get("arch") == "x86_64" and sets == {set_name}:
                shutil.rmtree(m.parent)

    def build_signal(self, sig):
        s = self.rng.choice(SWITCH_SETS)
        self.drop_scratch_artifacts(s)
        args = ["build", "--arch", "x86_64", "--patches", s, "--quiet"]
        p = self.spawn(args)
        # Wait until make runs, then a random moment of its run.
        t0 = time.time()
        while p.poll() is None and not any(c == "make" for _, c in self.ours()):
            if time.time() - t0 > 600:
                break
            time.sleep(0.1)
        time.sleep(self.rng.uniform(0.5, 12.0))
        if p.poll() is not None:
            log(f"build of {s} ended before the {SIG_NAME[sig]}; not counted")
            return
        p.send_signal(sig)
        code, _, err = self.finish(p)
        left = self.left_behind()
        again = self.lab_run(args)
        self.row(f"{SIG_NAME[sig]} to lab", "build", LIFE, code, {SIG_EXIT[sig]}, left, 0,
                 0, f"then the same build: exit {again.returncode}",
                 also=again.returncode == 0)

    def make_killed(self):
        s = self.rng.choice(SWITCH_SETS)
        self.drop_scratch_artifacts(s)
        args = ["build", "--arch", "x86_64", "--patches", s, "--quiet"]
        p = self.spawn(args)
        make = None
        t0 = time.time()
        while p.poll() is None and make is None and time.time() - t0 < 600:
            make = next((pid for pid, c in self.ours() if c == "make"), None)
            time.sleep(0.1)
        time.sleep(self.rng.uniform(0.5, 8.0))
        if make is None or p.poll() is not None:
            log("make ended before it could be killed; not counted")
            self.finish(p)
            return
        try:
            os.killpg(os.getpgid(make), signal.SIGKILL)
        except OSError:
            pass
        code, _, err = self.finish(p)
        left = self.left_behind()
        again = self.lab_run(args)
        # A build whose make was killed failed for a reason outside the kernel: exit 3.
        self.row("make killed mid-build", "build", INFRA, code, {3}, left, 0,
                 1 if code == 1 else 0, f"then the same build: exit {again.returncode}",
                 also=again.returncode == 0)

    def run_args(self, tests="futex_errno,pipe_excl", iterations=2, duration="1s"):
        seed = self.rng.randrange(1, 1 << 30)
        return ["run", "--arch", "x86_64", "--tests", tests, "--iterations", str(iterations),
                "--duration", duration, "--seed", str(seed), "--json", "--quiet"]

    def run_signal(self, sig):
        args = self.run_args()
        p = self.spawn(args)
        if self.wait_ready_qemu(p) is None:
            self.finish(p)
            log("the run ended before its guest was up; not counted")
            return
        time.sleep(self.rng.uniform(0.0, 12.0))
        before = self.outcome_ids()
        if p.poll() is not None:
            log("the run ended before the signal; not counted")
            return
        p.send_signal(sig)
        code, _, _ = self.finish(p)
        left = self.left_behind()
        again = self.lab_run(args)
        after = self.outcome_ids()
        self.row(f"{SIG_NAME[sig]} to lab", "run", LIFE, code, {SIG_EXIT[sig]}, left,
                 len(before - after), 0,
                 f"then the same run: exit {again.returncode}; {len(before)} outcomes kept",
                 also=again.returncode == 0)

    def run_with_guest_faults(self, kinds):
        """One `lab run`; each fault in `kinds` hits the guest of the test then running."""
        # 6-second tests: a fault 0.5-3 s after READY lands inside a test, not between two.
        args = self.run_args(tests="futex_errno", iterations=len(kinds) + 1, duration="6s")
        p = self.spawn(args)
        done = []
        for kind in kinds:
            q = self.wait_ready_qemu(p)
            if q is None:
                break
            time.sleep(self.rng.uniform(0.5, 3.0))
            injected = True
            if kind == "qemu-killed":
                os.kill(q, signal.SIGKILL)
            elif kind == "sshd-killed":
                injected = self.guest_ssh(q, "killall dropbear")
            elif kind == "guest-panic":
                injected = self.guest_ssh(q, "echo c > /proc/sysrq-trigger")
            elif kind == "link-down":
                injected = self.guest_ssh(q, "busybox ip link set eth0 down")
            elif kind == "guest-hang":
                os.kill(q, signal.SIGSTOP)
            if not injected:
                log(f"{kind}: could not reach the guest to inject it; not counted")
                continue
            done.append(kind)
            # The next fault waits for the next guest.
            t0 = time.time()
            while q in self.qemus() and time.time() - t0 < 400:
                time.sleep(0.2)
        code, out, err = self.finish(p)
        left = self.left_behind()
        try:
            outcomes = [o for r in json.loads(out) for o in r["outcomes"]]
        except (ValueError, KeyError, TypeError):
            outcomes = []
        kinds_seen = [o["kind"] for o in outcomes]
        infra = sum(k in ("qemu-killed", "sshd-killed", "link-down") for k in done)
        panics = done.count("guest-panic")
        hangs = done.count("guest-hang")
        # What the faults may produce: one infra error per infra fault, one crash per
        # panic, one hang per hang; everything else must pass.
        bad = (max(0, kinds_seen.count("fail"))
               + max(0, kinds_seen.count("kernel-crash") - panics)
               + max(0, kinds_seen.count("hang") - hangs)
               + max(0, infra - kinds_seen.count("infra-error")))
        expected = {1} if panics or hangs else {3}
        for k in done:
            cls = GUEST if k in ("guest-panic", "guest-hang") else INFRA
            self.row(k, "run", cls, code, expected, left, 0, bad,
                     f"outcomes {','.join(kinds_seen)}")
            left = 0  # counted once per invocation
            bad = 0

    def compare_with_signals(self, sigs):
        seed = self.rng.randrange(1, 1 << 30)
        args = ["compare", "base", "base", "--arch", "x86_64", "--tests", "futex_errno",
                "--duration", "500ms", "--budget", "150s", "--seed", str(seed), "--json"]
        first = True
        pending = []
        reuse_due = 0
        for sig in sigs:
            p = self.spawn(args + (["--fresh"] if first else []))
            first = False
            if self.wait_ready_qemu(p) is None:
                self.finish(p)
                log("compare ended before its first guest; not counted")
                return
            time.sleep(self.rng.uniform(5.0, 45.0))
            if p.poll() is not None:
                log("compare ended before the signal; not counted")
                continue
            sid, n_before = self.session_outcomes("compare")
            before = self.outcome_ids()
            p.send_signal(sig)
            code, _, _ = self.finish(p)
            left = self.left_behind()
            after = self.outcome_ids()
            pending.append(dict(fault=f"{SIG_NAME[sig]} to lab", verb="compare", cls=LIFE,
                                code=code, expected={SIG_EXIT[sig]}, left=left,
                                lost=len(before - after), misreported=0,
                                note=f"session {sid}: {n_before} outcomes stored"))
            reuse_due = n_before
        # The same command finishes it, reusing every stored run, with no regression.
        p = self.spawn(args)
        q = self.wait_ready_qemu(p)
        qkill = False
        if q is not None and self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(1.0, 4.0))
            try:
                os.kill(q, signal.SIGKILL)
                qkill = True
            except OSError:
                pass
        code, out, err = self.finish(p)
        left = self.left_behind()
        try:
            rep = json.loads(out)
        except ValueError:
            rep = {}
        reused = rep.get("reused_runs", 0)
        overall = rep.get("overall", "?")
        lost = max(0, reuse_due - reused)
        mis = 1 if overall == "regression" else 0
        resumed = "resuming comparison" in err
        note = (f"the same command: exit {code}, resumed {resumed}, reused {reused} runs, "
                f"overall {overall}, infra errors {rep.get('infra_errors')}")
        log(note)
        # The resume is charged to the last signal: every stored run reused, a verdict, and
        # no regression between a kernel and itself.
        for i, r in enumerate(pending):
            last = i == len(pending) - 1
            if last:
                r.update(lost=r["lost"] + lost, misreported=mis, note=r["note"] + "; " + note,
                         also=resumed and code in (0, 1))
            self.row(**r)
        if qkill:
            self.row("qemu-killed", "compare", INFRA, code, {0},
                     left, 0, mis + (0 if (rep.get("infra_errors") or 0) >= 1 else 1), note)

    def bisect_signal(self, sig):
        series = REPO / "orchestrator/tests/fixtures/gate/series-bad-futex"
        args = ["bisect", "--series", str(series), "--test", "futex_errno", "--arch", "x86_64",
                "--seed", "7"]
        p = self.spawn(args)
        if self.wait_ready_qemu(p, timeout=900) is None:
            self.finish(p)
            log("bisect ended before its first guest; not counted")
            return
        time.sleep(self.rng.uniform(1.0, 12.0))
        if p.poll() is not None:
            log("bisect ended before the signal; not counted")
            return
        before = self.outcome_ids()
        p.send_signal(sig)
        code, _, _ = self.finish(p)
        left = self.left_behind()
        again = self.lab_run([*args, "--json"], timeout=3600)
        after = self.outcome_ids()
        try:
            culprit = json.loads(again.stdout)["conclusion"]["culprit"]
        except (ValueError, KeyError, TypeError):
            culprit = None
        ok_again = again.returncode == 0 and culprit == 3
        self.row(f"{SIG_NAME[sig]} to lab", "bisect", LIFE, code, {SIG_EXIT[sig]}, left,
                 len(before - after), 0 if ok_again else 1,
                 f"then the same bisect: exit {again.returncode}, culprit {culprit}")

    def gate_signal(self, sig):
        args = ["gate", str(self.series_dir), "--arch", "x86_64", "--budget", "90s", "--json"]
        p = self.spawn(args)
        time.sleep(self.rng.uniform(3.0, 60.0))
        if p.poll() is not None:
            log("gate ended before the signal; not counted")
            return
        before = self.outcome_ids()
        p.send_signal(sig)
        code, _, _ = self.finish(p)
        left = self.left_behind()
        again = self.lab_run(args, timeout=1800)
        after = self.outcome_ids()
        try:
            verdict = json.loads(again.stdout)["verdict"]
        except (ValueError, KeyError, TypeError):
            verdict = None
        self.row(f"{SIG_NAME[sig]} to lab", "gate", LIFE, code, {SIG_EXIT[sig]}, left,
                 len(before - after), 0 if (again.returncode == 0 and verdict == "pass") else 1,
                 f"then the same gate: exit {again.returncode}, verdict {verdict}")

    def damaged_artifact(self, how):
        # The scratch copy of the x86_64 base: a file of it truncated or with bytes flipped.
        key = self.base_key()
        entry = self.cache / "artifacts" / key
        name = self.rng.choice(["bzImage", "vmlinux", "System.map"])
        data = bytearray((entry / name).read_bytes())
        if how == "truncated":
            data = data[: self.rng.randrange(1, len(data))]
        else:
            at = self.rng.randrange(0, len(data))
            data[at] ^= 0xFF
        tmp = entry / (name + ".fault")
        tmp.write_bytes(bytes(data))
        os.replace(tmp, entry / name)  # a new inode: the user's cache keeps the original
        args = self.run_args(tests="futex_errno", iterations=1)
        rr = self.lab_run(args, timeout=1800)
        left = self.left_behind()
        # Rebuilt before the boot: a whole new entry under the same key, the damaged one set
        # aside, and lab said so. The run booted that key.
        rebuilt = verify_entry(entry)
        aside = any((self.cache / "artifacts").glob(f".damaged-{key}-*"))
        said = "damaged" in rr.stderr
        try:
            ran = json.loads(rr.stdout)[0]["manifest"]["kernel-key"] == key
        except (ValueError, KeyError, IndexError, TypeError):
            ran = False
        mis = 0 if (rebuilt and aside and said and ran) else 1
        self.row(f"artifact {how}", "run", INFRA, rr.returncode, {0}, left, 0, mis,
                 f"{name}: rebuilt {rebuilt}, set aside {aside}, said so {said}")

    def full_cache(self):
        """A cache on a 200 MiB tmpfs with what `lab run` of the x86_64 base needs, warmed by
        one run (the guest image); made once per campaign."""
        mnt = self.work / "full"
        if (mnt / "images").is_dir():
            return mnt
        mnt.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mnt)], check=True)
        self.mounts.append(mnt)
        (mnt / "src").symlink_to(self.real / "src")
        key = self.base_key()
        (mnt / "artifacts").mkdir()
        shutil.copytree(self.cache / "artifacts" / key, mnt / "artifacts" / key)
        for d in ("debs", "guest", "memo", "calibration"):
            if (self.cache / d).exists():
                shutil.copytree(self.cache / d, mnt / d, symlinks=True)
        r = self.lab_run(self.run_args(tests="futex_errno", iterations=1),
                         env=dict(self.env, LAB_CACHE_DIR=str(mnt)))
        if r.returncode != 0:
            raise RuntimeError(f"the tmpfs cache does not run: {r.stderr[-500:]}")
        return mnt

    def base_key(self):
        r = self.lab_run(["build", "--arch", "x86_64", "--json", "--quiet"])
        return json.loads(r.stdout)[0]["key"]

    def cache_full(self):
        mnt = self.full_cache()
        for d in ("runs",):
            shutil.rmtree(mnt / d, ignore_errors=True)
        for f in ("results.db", "results.db-wal", "results.db-shm", "filler"):
            (mnt / f).unlink(missing_ok=True)
        free = self.rng.choice([64 << 10, 512 << 10, 2 << 20, 8 << 20])
        with open(mnt / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        size = os.path.getsize(mnt / "filler")
        os.truncate(mnt / "filler", max(0, size - free))
        r = self.lab_run(self.run_args(tests="futex_errno", iterations=2),
                         env=dict(self.env, LAB_CACHE_DIR=str(mnt)))
        left = self.left_behind()
        try:
            kinds = [o["kind"] for rep in json.loads(r.stdout) for o in rep["outcomes"]]
        except (ValueError, KeyError, TypeError):
            kinds = []
        wrong = sum(k in ("fail", "kernel-crash", "hang") for k in kinds)
        clear = r.returncode != 3 or "No space left on device" in r.stderr or "disk is full" in r.stderr
        self.row("cache file system full", "run", INFRA, r.returncode, {0, 3}, left, 0,
                 wrong + (0 if clear else 1),
                 f"{free >> 10} KiB free: outcomes {','.join(kinds) or 'none'}"
                 + ("" if clear else f"; unclear: {r.stderr[-300:]!r}"))

    def store_fault(self, how):
        db = self.store()
        if not db.exists():
            self.lab_run(self.run_args(tests="futex_errno", iterations=1))
        before = self.outcome_ids()
        backup = self.work / "results.db.backup"
        holder = None
        if how == "corrupted":
            # Checkpoint the WAL first, so that the file is the whole store, then save it.
            c = sqlite3.connect(db)
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.close()
            shutil.copy(db, backup)
            with open(db, "r+b") as f:
                f.seek(self.rng.randrange(0, 100))
                f.write(os.urandom(64))
        else:
            holder = sqlite3.connect(db, timeout=30, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
        args = self.run_args(tests="futex_errno", iterations=1)
        r = self.lab_run(args, timeout=1800)
        left = self.left_behind()
        said = "results.db" in r.stderr or "store" in r.stderr
        # The run's outcomes must be somewhere: its folder keeps them.
        kept = 0
        try:
            for rep in json.loads(r.stdout):
                f = Path(rep["dir"]) / "results.jsonl"
                kept += sum(1 for _ in open(f)) if f.exists() else 0
        except (ValueError, KeyError, TypeError, OSError):
            pass
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        else:
            shutil.copy(backup, db)
            for ext in ("-wal", "-shm"):
                Path(str(db) + ext).unlink(missing_ok=True)
        after = self.outcome_ids()
        lost = len(before - after) + (1 if kept == 0 else 0)
        self.row(f"results.db {how}", "run", INFRA, r.returncode, {0, 3}, left, lost,
                 0 if said else 1, f"said so {said}; {kept} outcomes kept in the run folder")

    def concurrent_builds(self):
        s = self.rng.choice(SWITCH_SETS)
        self.drop_scratch_artifacts(s)
        args = ["build", "--arch", "x86_64", "--patches", s, "--json", "--quiet"]
        ps = [self.spawn(args) for _ in range(2)]
        res = [self.finish(p) for p in ps]
        left = self.left_behind()
        keys = set()
        for _, out, _ in res:
            try:
                keys.add(json.loads(out)[0]["key"])
            except (ValueError, KeyError, IndexError, TypeError):
                keys.add(None)
        whole = all(k and verify_entry(self.cache / "artifacts" / k) for k in keys)
        codes = sorted(c for c, _, _ in res)
        self.row("two builds of one kernel at once", "build", LIFE, max(codes), {0}, left, 0,
                 0 if (len(keys) == 1 and whole and codes == [0, 0]) else 1,
                 f"exits {codes}, keys {len(keys)}, entry whole {whole}")

    def concurrent_compares(self):
        args = lambda seed: ["compare", "base", "futex-lockless-wakeup-revert", "--arch",
                             "x86_64", "--tests", "futex_errno", "--duration", "500ms",
                             "--budget", "90s", "--seed", str(seed), "--fresh", "--json"]
        before = self.outcome_ids()
        ps = [self.spawn(args(self.rng.randrange(1, 1 << 30))) for _ in range(2)]
        res = [self.finish(p) for p in ps]
        left = self.left_behind()
        overall = []
        for _, out, _ in res:
            try:
                overall.append(json.loads(out)["overall"])
            except (ValueError, KeyError, TypeError):
                overall.append(None)
        codes = sorted(c for c, _, _ in res)
        after = self.outcome_ids()
        sound = self.integrity()
        mis = sum(o in (None, "regression") for o in overall) + (0 if sound else 1)
        self.row("two compares on one store at once", "compare", LIFE, max(codes), {0, 1}, left,
                 len(before - after), mis, f"exits {codes}, overall {overall}, integrity {sound}")

    def missing_toolchain(self):
        shadow = self.work / "path-without-aarch64-gcc"
        if not shadow.exists():
            shadow.mkdir()
            for d in os.environ.get("PATH", "").split(":"):
                if not d or not os.path.isdir(d):
                    continue
                for n in os.listdir(d):
                    if n.startswith("aarch64-linux-gnu-") or (shadow / n).exists():
                        continue
                    (shadow / n).symlink_to(Path(d) / n)
        env = dict(self.env, PATH=str(shadow))
        verb = self.rng.choice(["build", "run"])
        args = (["build", "--arch", "arm64", "--patches", self.rng.choice(SWITCH_SETS)]
                if verb == "build" else
                ["run", "--arch", "arm64", "--patches", self.rng.choice(SWITCH_SETS),
                 "--tests", "futex_errno"])
        r = self.lab_run(args, env=env, timeout=600)
        left = self.left_behind()
        clear = "aarch64-linux-gnu-" in r.stderr
        self.row("missing toolchain", verb, INFRA, r.returncode, {2}, left, 0, 0 if clear else 1,
                 "names the compiler" if clear else f"unclear: {r.stderr[-300:]!r}")

    def patch_stops_applying(self):
        d = self.work / f"stale-{self.injected}"
        d.mkdir()
        src = sorted((REPO / "patches/futex-lockless-wakeup-revert").glob("*.patch"))[0]
        lines = src.read_text().splitlines(keepends=True)
        # A context line of a hunk (after the first @@), never a line of the message.
        first_hunk = next(i for i, l in enumerate(lines) if l.startswith("@@"))
        context = [i for i, l in enumerate(lines)
                   if i > first_hunk and l.startswith(" ") and len(l.strip()) > 3]
        i = self.rng.choice(context)
        lines[i] = " /* this line is not in the tree */\n"
        (d / src.name).write_text("".join(lines))
        verb = self.rng.choice(["build", "gate"])
        if verb == "build":
            r = self.lab_run(["build", "--arch", "x86_64", "--patches", str(d / src.name)])
            expected, clear = {2}, "waitwake.c" in r.stderr or "does not apply" in r.stderr
        else:
            r = self.lab_run(["gate", str(d), "--arch", "x86_64", "--budget", "60s", "--json"],
                             timeout=1800)
            try:
                rep = json.loads(r.stdout)
                clear = rep["verdict"] == "fail" and any("appl" in f for f in rep["failures"])
            except (ValueError, KeyError, TypeError):
                clear = False
            expected = {1}
        left = self.left_behind()
        self.row("a patch that stops applying", verb, INFRA, r.returncode, expected, left, 0,
                 0 if clear else 1, "names it" if clear else f"unclear: {r.stderr[-300:]!r}")

    # ----- the plan -----------------------------------------------------------------------

    def plan(self, n, draw_only=False):
        """Seeded episodes until `n` faults; every kind at least once when n >= 40."""
        sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
        rng = self.rng
        everything = [
            ("build_signal", sigs), ("run_signal", sigs), ("make_killed", [None]),
            ("guest", [["qemu-killed"], ["sshd-killed"], ["guest-panic"], ["link-down"],
                       ["guest-hang"]]),
            ("compare", [sigs]), ("bisect_signal", sigs), ("gate_signal", sigs),
            ("damaged_artifact", ["truncated", "corrupted"]), ("cache_full", [None, None]),
            ("store_fault", ["corrupted", "locked"]), ("concurrent_builds", [None]),
            ("concurrent_compares", [None]), ("missing_toolchain", [None, None]),
            ("patch_stops_applying", [None, None]),
        ]
        keep = set(self.args.only.split(",")) if self.args.only else None
        if keep:
            everything = [e for e in everything if e[0] in keep]
        episodes = []
        if (n >= 40 or keep) and not draw_only:
            for name, params in everything:
                for p in params:
                    episodes.append((name, p))
        # The rest: the cheap and frequent kinds, weighted, drawn with the seed.
        cheap = [("build_signal", None), ("run_signal", None), ("make_killed", None),
                 ("guest", "fast"), ("guest", "fast"), ("guest", "fast"),
                 ("damaged_artifact", None), ("store_fault", None), ("missing_toolchain", None),
                 ("patch_stops_applying", None), ("concurrent_builds", None)]
        if keep:
            cheap = [e for e in cheap if e[0] in keep] or [(e[0], None) for e in everything]
        count = sum(len(p) if name in ("compare", "guest") else 1 for name, p in episodes)
        while count < n and cheap:
            name, p = rng.choice(cheap)
            if name in ("build_signal", "run_signal"):
                p = rng.choice(sigs)
            elif name == "guest":
                p = [rng.choice(["qemu-killed", "sshd-killed", "guest-panic"])
                     for _ in range(rng.randint(1, 3))]
            elif name == "damaged_artifact":
                p = rng.choice(["truncated", "corrupted"])
            elif name == "store_fault":
                p = rng.choice(["corrupted", "locked"])
            elif name == "compare":
                p = [rng.choice(sigs)]
            elif name in ("bisect_signal", "gate_signal"):
                p = rng.choice(sigs)
            elif name == "cache_full":
                p = None
            episodes.append((name, p))
            count += len(p) if name in ("compare", "guest") else 1
        rng.shuffle(episodes)
        return episodes

    def run(self):
        episodes = self.plan(self.args.faults)
        log(f"{len(episodes)} episodes for about {self.args.faults} faults, seed {self.args.seed}")
        self.play(episodes)
        # A fault that came too late (the command had ended) was not counted: top up with
        # more seeded episodes until the campaign has its number.
        while self.injected < self.args.faults:
            more = self.plan(self.args.faults - self.injected, draw_only=True)
            if not more:
                break
            self.play(more[:1])

    def play(self, episodes):
        for name, p in episodes:
            started = time.time()
            try:
                if name == "guest":
                    self.run_with_guest_faults(p)
                elif name == "compare":
                    self.compare_with_signals(p)
                elif p is None:
                    getattr(self, name)()
                else:
                    getattr(self, name)(p)
            except Exception as e:  # a campaign bug must not hide the rows so far
                log(f"episode {name} {p} broke: {e!r}")
                self.kill_leftovers()
            log(f"episode {name} took {time.time() - started:.0f}s")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_entry(entry):
    try:
        man = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    files = man.get("files", {})
    return bool(files) and all(sha256(entry / n) == d for n, d in files.items())


def table(rows):
    """fault x verb: how many, exit codes seen, and the three figures that must be 0."""
    groups = {}
    for r in rows:
        groups.setdefault((r["fault"], r["verb"]), []).append(r)
    head = f"{'fault':36} {'verb':8} {'n':>3} {'exit codes':14} {'expected':10} " \
           f"{'left':>4} {'lost':>4} {'misrep':>6} {'ok':>4}"
    out = [head, "-" * len(head)]
    for (fault, verb), rs in sorted(groups.items()):
        codes = ",".join(str(c) for c in sorted({r["code"] for r in rs}))
        exp = ",".join(str(c) for c in sorted({c for r in rs for c in r["expected"]}))
        out.append(f"{fault:36} {verb:8} {len(rs):3} {codes:14} {exp:10} "
                   f"{sum(r['left'] for r in rs):4} {sum(r['lost'] for r in rs):4} "
                   f"{sum(r['misreported'] for r in rs):6} {sum(r['ok'] for r in rs):4}")
    out.append("-" * len(head))
    out.append(f"{'all':36} {'':8} {len(rows):3} {'':14} {'':10} "
               f"{sum(r['left'] for r in rows):4} {sum(r['lost'] for r in rows):4} "
               f"{sum(r['misreported'] for r in rows):6} {sum(r['ok'] for r in rows):4}")
    return "\n".join(out)


def die(code, msg):
    print(f"faults: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", type=int, default=100, help="faults to inject (about)")
    ap.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    ap.add_argument("--lab", default=str(REPO / "target/release/lab"), help="the lab binary")
    ap.add_argument("--work", help="scratch folder, wiped first (default: faults/scratch in "
                    "lab's cache, which must be on the same file system for hard links)")
    ap.add_argument("--only", help="only these episode kinds (comma-separated)")
    args = ap.parse_args()
    if args.faults < 1:
        die(2, "--faults must be at least 1")
    if not Path(args.lab).is_file():
        die(2, f"no lab binary at {args.lab}: run `make build-lab` first")
    if os.geteuid() != 0:
        log("not root: the cache-full episodes (tmpfs) will fail to set up")
    c = Campaign(args)
    started = time.time()

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM ends the campaign like Ctrl-C: its lab processes (each in a session of its
    # own) are killed in `finally`, and the table so far is printed.
    signal.signal(signal.SIGTERM, stop)
    c.setup()
    try:
        c.run()
    except KeyboardInterrupt:
        log("interrupted; the table holds the faults so far")
    finally:
        c.kill_leftovers()
        for m in c.mounts:
            subprocess.run(["umount", "-l", str(m)], check=False)
    text = table(c.rows)
    summary = (f"fault campaign, seed {args.seed}: {len(c.rows)} faults in "
               f"{time.time() - started:.0f}s ({len(c.rows) - sum(r['ok'] for r in c.rows)} "
               f"not handled)")
    print(summary)
    print(text)
    saved = c.real / "faults"
    saved.mkdir(parents=True, exist_ok=True)
    # One table per campaign size, so that make test's small one never hides the last
    # `make faults` (make bench shows the largest).
    (saved / f"table-{args.faults}.txt").write_text(summary + "\n" + text + "\n")
    if c.journal.exists():
        shutil.copy(c.journal, saved / f"faults-{args.faults}.jsonl")
    sys.exit(0 if c.rows and all(r["ok"] for r in c.rows) else 1)


if __name__ == "__main__":
    main()
