# The few targets a person types. Each one does its own set-up first (idempotent).
#
#   make lab      the main job: build the default lab's kernels and run the guest suite on both arches
#   make test     everything the CI runs: unit tests, real kernel builds, real QEMU boots
#   make bench    boot-to-ready per arch, variant rebuild time, cache hit time
#   make setup    Debian packages, guest packages (arm64 via multiarch), rustup targets

CARGO ?= cargo
LAB := target/release/lab

.PHONY: setup lab test bench lint build-lab clean-cache

setup:
	./scripts/setup.sh

build-lab: setup
	$(CARGO) build --release --locked -p lab

lab: build-lab
	$(LAB) build --arch all
	$(LAB) run --arch all

test: setup
	$(CARGO) build --release --locked -p lab
	$(CARGO) test --workspace --locked -- --nocapture --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench: build-lab
	./scripts/bench.sh

clean-cache:
	@echo "the lab cache is $${LAB_CACHE_DIR:-$$HOME/.cache/lab}; prune it with: $(LAB) cache prune --keep 20"
