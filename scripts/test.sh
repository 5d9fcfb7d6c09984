#!/usr/bin/env bash
# Runs every check and test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all --check

step "clippy (host; all features, so the benchmarks are linted too)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# One cargo invocation for the three wasm targets, so both cores stay busy. Clippy type-checks
# every line for each target (the JS SDK build below also compiles wasm32-unknown-unknown fully).
step "engine for wasm32-unknown-unknown, wasm32-wasip1, wasm32-wasip2 (clippy)"
cargo clippy -p portcullis-engine --locked \
  --target wasm32-unknown-unknown --target wasm32-wasip1 --target wasm32-wasip2 -- -D warnings

step "Envoy filter for wasm32-wasip1 (clippy)"
cargo clippy -p portcullis-envoy --locked --target wasm32-wasip1 -- -D warnings

step "engine component for wasm32-wasip2 (clippy)"
cargo clippy -p portcullis-component --locked --target wasm32-wasip2 -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "tests (unit, integration, Cedar corpus, Wycheproof, conformance native/component/HTTP, service, doc tests)"
cargo test --workspace --locked

step "TechFin policy tests"
cargo run -q -p portcullis --locked -- test policies/techfin

step "JS SDK: release wasm build, Node (conformance, Cedar corpus, SDK, types), headless Chromium"
bindings/js/test.sh

step "Envoy filter end to end (real Envoy 1.40, real OpenID provider)"
bindings/envoy/test.sh

# Benchmarks are not part of CI (they need an optimised build of every dependency, ~10 minutes
# here): `scripts/bench.sh` runs them, `BENCH_QUICK=1 scripts/bench.sh` is the smoke run.
