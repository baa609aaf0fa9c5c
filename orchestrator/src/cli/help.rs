//! The long help of every verb: examples, outcomes and exit codes, shown after the flags.

pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 regression found or gate failed; 2 usage or configuration error (bad arguments, malformed lab.toml, a patch that does not apply, a dropped config option, a missing toolchain); 3 infrastructure failure (build, boot, transport).";

pub const BUILD_EXAMPLES: &str = "Examples:
  lab build                                   base kernels for the arches in lab.toml
  lab build --arch x86_64 --patches futex-lockless-wakeup-revert
  lab build --arch all --patches futex-race-amplifiers,bad-futex-no-spurious-retry
  lab build --arch arm64 --config lockdep     add configs/lockdep.config
  lab build --kernel kernels/my-tree.toml --json

Exit codes: 0 built (or cache hit); 2 bad input (unknown arch, patch does not apply, config option dropped, missing toolchain, malformed lab.toml); 3 the build itself failed.";

pub const RUN_EXAMPLES: &str = "Examples:
  lab run --arch all                          base kernels, the whole suite, once
  lab run --arch x86_64 --tests futex_errno --iterations 20 --duration 2s
  lab run --arch x86_64 --patches futex-race-amplifiers,bad-futex-no-spurious-retry \\
          --tests futex_errno --knob futex_amp_spurious_wake_us=200
  lab run --arch arm64 --jobs 2 --iterations 4

Outcomes: pass, fail (the test saw the kernel misbehave), kernel-crash (a report on the console, with its fingerprint), hang (guest watchdog or host deadline), infra-error (the lab could not run the test; never a test failure).
Exit codes: 0 all passed; 1 a test failed, crashed or hung; 2 bad input; 3 infrastructure failure only.";

pub const SELFTEST_EXAMPLES: &str = "Rows come from patches/*/expect.toml: base (every test passes), each candidate (every test passes), each debug set with its amplifier knobs on (no false alarm), each known-bad set on top of its amplifiers (its must-fail tests fail).

Examples:
  lab selftest --arch x86_64
  lab selftest --arch all --iterations 3
  lab selftest --arch x86_64 --row bad-futex

Exit codes: 0 the matrix came out as expected; 1 a cell mismatched; 2 bad input; 3 infrastructure failure.";

pub const COMPARE_EXAMPLES: &str = "A and B are each `base`, patch-set names stacked with commas (amplifier sets first), a kernel definition (kernels/NAME.toml or a path), or `key:PREFIX` for a stored build.

Examples:
  lab compare base futex-lockless-wakeup-revert            every arch in lab.toml, the suite
  lab compare base bad-futex-no-spurious-retry --arch x86_64 --tests futex_errno
  lab compare futex-race-amplifiers futex-race-amplifiers,bad-futex-no-spurious-retry \\
          --knob futex_amp_spurious_wake_us=200 --tests futex_errno
  lab compare base base --budget 5m                        an A/A check of the lab itself
  lab compare base sched-wait-abort-exclusive-wait --html report.html --markdown cover.md
  lab compare futex-race-amplifiers futex-race-amplifiers --knob-b futex_amp_wake_delay_us=10 \\
          --tests futex_pingpong                           a latency positive control

The boot is the unit: failure rates count boots (a difference weighs runs by Rao-Scott's design effect), metrics compare the A and B boots of each batch as pairs.
Verdicts per test, arch and metric: regression, improvement, no difference (within the stated margin), inconclusive (with the boots it would likely need). A kernel crash on B only is a regression at once; one on A is \"baseline crashes\".
Exit codes: 0 no regression; 1 a regression; 2 bad input; 3 infrastructure failure before any verdict.";

pub const CALIBRATE_EXAMPLES: &str = "Examples:
  lab calibrate                                 base against itself, every arch, the suite
  lab calibrate --arch x86_64 --tests futex_pingpong --budget 5m
  lab calibrate --session 26                    from a stored comparison's runs

Per test, metric and arch: the spread between boots and within a boot (log scale), the share between boots (ICC), the runs per boot that buy the most per second, and the pairs of boots a fixed design would need to show a shift of the metric margin, or no shift beyond it. Kept in the cache as calibration/ARCH-KEY.json; `lab compare` on the same kernel says what it predicts.
Exit codes: 0 done; 2 bad input; 3 infrastructure failure.";

pub const BISECT_EXAMPLES: &str = "Examples:
  lab bisect --kernel kernels/mytree.toml --good v6.12 --bad HEAD --test futex_errno --arch x86_64
  lab bisect --kernel /tmp/hist/synthetic-6.12.toml --good <sha> --bad main --test pipe_excl \\
             --knob wq_amp_fake_signal_pct=100
  lab bisect --series patches/my-series --test futex_errno     first bad patch of a series
  lab bisect --continue                                         resume the interrupted bisection
  lab bisect --log                                              the steps of the latest bisection

lab keeps a probability for every candidate commit, updates it from every run (the test's detection rate is estimated at the bad end), picks the next commit and how many runs it gets by expected information, and stops when one commit holds --confidence. A build or boot failure, or a crash with another fingerprint than the bad end's (or --match-crash), is a skip, never bad.
Exit codes: 0 culprit found with the requested confidence; 1 finished without reaching it; 2 bad input; 3 infrastructure failure.";

pub const BISECT_STEP_EXAMPLES: &str = "Examples:
  git bisect start BAD GOOD
  git bisect run lab bisect-step --test futex_errno --runs 8 --arch x86_64

Builds the checkout in the current directory (its HEAD) with the lab's configs, boots it and runs the test --runs times.
Exit codes (git bisect run's): 0 every run passed (good); 1 a run failed (bad); 125 build or boot failure, or a crash with another fingerprint (skip); 128 lab itself could not work (git bisect stops).";

pub const WORKER_EXAMPLES: &str = "Examples (as a Slurm job runs it):
  lab worker run ~/.cache/lab/slurm/lab-buildhost-4242/batch-003/x86_64/task-0.json
  lab worker build ~/.cache/lab/slurm/lab-buildhost-4242/build-000/request.json

The controller (lab compare --engine slurm, ...) writes the job files and ingests the run folders; the worker never writes the results store.";

pub const LAVA_EXAMPLES: &str = "Examples:
  lab lava job --arch x86_64 --tests futex_errno --iterations 3 \\
      --url-base http://labhost:8000 -o job.yaml           artifacts served from lab's cache folder
  lavacli jobs submit job.yaml                              (LAVA's client; or lava-run on a dispatcher)
  lavacli jobs logs 1234 --raw > job.log
  lab lava ingest job.yaml job.log --device qemu-01 --job-id 1234

The guest's PID 1 runs the tests itself (lab.mode=run) and prints a CASE marker per test, which LAVA's monitor turns into test cases; lab reads the whole console from the log, so kernel warnings and oopses are caught and fingerprinted as on every other engine.";

pub const GATE_EXAMPLES: &str = "Examples:
  lab gate patches/futex-lockless-wakeup-revert          a directory of .patch files (or a series file)
  lab gate my-series.mbox --arch x86_64 --budget 3m
  lab gate --kernel kernels/mytree.toml --range v6.12..my-branch
  lab gate my-series --markdown cover-letter-checks.md
  b4 prep --check  (with b4.prep-perpatch-check-cmd = lab gate --b4; see README)

Per patch, in order: checkpatch.pl (errors fail, warnings are reported), the patch applies, it builds on every arch with the lab's PREEMPT_RT configs (incrementally: the series is bisectable), and no new compiler warnings in the files it touches. Then, if all of that passed, the tip is compared against base with lab compare; if it regresses, lab bisects inside the series to name the patch.
Exit codes: 0 the gate passed; 1 the gate failed; 2 bad input; 3 infrastructure failure.";

pub const RESULTS_EXAMPLES: &str = "Examples:
  lab results list                      recent comparisons and runs
  lab results show 12                   one comparison, re-rendered from the store
  lab results show 12 --format markdown
  lab results export --format json > all.json
  lab results runs --kernel 3f2a9c      stored runs of one kernel key";

pub const CACHE_EXAMPLES: &str = "Examples:
  lab cache list
  lab cache show 3f2a9c
  lab cache prune --keep 20
  lab cache prune --older-than 14d";
