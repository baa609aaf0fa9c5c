# The few targets a person types. Each one does its own set-up first (idempotent).
#
#   make lab      the main job: compare each shipped candidate against base on both arches
#   make test     everything the CI runs: unit tests, real kernel builds, real QEMU boots, and
#                 the positive-control matrix on x86_64 (its positive controls and base; see
#                 TEST_SELFTEST_SKIP)
#   make bench    boot-to-ready per arch, variant rebuild time, cache hit time
#   make faults   the fault campaign: FAULTS=100 faults injected at seeded points (SEED=1)
#   make fuzz     the parsers of outside input under proptest, FUZZ_SECONDS=180 per parser
#   make selftest the positive-control matrix (ARCH=x86_64 by default; ARCH=all for both)
#   make setup    Debian packages, guest packages (arm64 via multiarch), rustup targets

CARGO ?= cargo
LAB := target/release/lab

.PHONY: setup lab test bench selftest lint build-lab clean-cache faults fuzz

ARCH ?= x86_64

setup:
	./scripts/setup.sh

build-lab: setup
	$(CARGO) build --release --locked -p lab

CANDIDATES ?= futex-lockless-wakeup-revert sched-wait-abort-exclusive-wait

lab: build-lab
	@rc=0; for c in $(CANDIDATES); do \
	  echo "== lab compare base $$c --arch all"; \
	  $(LAB) compare base $$c --arch all || { r=$$?; [ $$r -gt $$rc ] && rc=$$r; }; \
	done; exit $$rc

PHASE := ./scripts/phase.sh

# make test compiles lab once: the tests' profile (Cargo.toml's [profile.test], opt-level 1,
# debug assertions on) also builds the lab binary that the integration tests run, and the
# kernels, selftest and faults phases use that same binary. A release build on top would cost
# a cold machine another ~150 s of compiling.
TEST_LAB := target/debug/lab
# make test's selftest runs the positive controls (each bad variant must fail its tests) and
# base. It leaves out the rows whose job is "no false alarm" on a good kernel: the wait.h
# candidate (~300 s cold to build, nothing else shares it), the futex candidate (the compare
# and gate tests run it) and the amplifiers alone (the bisect tests run them at good commits);
# and the latency set's knob variants (mqueue-lat's 30-50 s runs; svsematest's stronger
# wake-up spin), whose set's own row runs.
# `make selftest` runs every row.
TEST_SELFTEST_SKIP := --skip-row sched-wait-abort-exclusive-wait \
  --skip-row futex-lockless-wakeup-revert \
  --skip-row "base + futex-race-amplifiers" --skip-row "base + waitqueue-race-amplifiers" \
  --skip-row "latency-injector (sched_lat_inject_"

test:
	$(PHASE) setup ./scripts/setup.sh
	$(PHASE) build-lab $(CARGO) test --workspace --locked --no-run
	$(PHASE) kernels ./scripts/test-kernels.sh $(TEST_LAB)
	$(PHASE) cargo-test $(CARGO) test --workspace --locked --no-fail-fast -- --test-threads=2
	$(PHASE) selftest $(TEST_LAB) selftest --arch x86_64 $(TEST_SELFTEST_SKIP)
	$(PHASE) faults ./scripts/faults.py --faults 8 --seed 1 --lab $(TEST_LAB)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

selftest: build-lab
	$(LAB) selftest --arch $(ARCH)

FAULTS ?= 100
SEED ?= 1

faults: build-lab
	./scripts/faults.py --faults $(FAULTS) --seed $(SEED) --lab $(LAB)

FUZZ_SECONDS ?= 180

fuzz: setup
	./scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build-lab
	./scripts/bench.sh

clean-cache:
	@echo "the lab cache is $${LAB_CACHE_DIR:-$$HOME/.cache/lab}; prune it with: $(LAB) cache prune --keep 20"
