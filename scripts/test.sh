#!/usr/bin/env bash
# Runs every check and test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
started=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "setup"
scripts/setup.sh

# Downloads and an installer that waits on the network or on one crate at a time: started now,
# in the background, so they overlap the compilation below instead of adding to it.
logs=$(mktemp -d)
# A failing step ends the script: the installers must not outlive it, writing into `$logs`.
# The throwaway PostgreSQL cluster of the store's tests is stopped (and removed) at exit too.
pg_dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; scripts/postgres.sh stop "$pg_dir" || true; rm -rf "$logs"' EXIT
scripts/install-wasm-bindgen.sh >"$logs/wasm-bindgen" 2>&1 &
wasm_bindgen_pid=$!
scripts/install-envoy.sh >"$logs/envoy" 2>&1 &
envoy_pid=$!
# Installs Debian's postgresql if need be; the URL (with the cluster's password) goes to
# `$pg_dir/url`, not to the log.
scripts/postgres.sh start "$pg_dir" >/dev/null 2>"$logs/postgres" &
postgres_pid=$!
background() { # name pid: waits for a background installer, shows its output, fails with it
  local status=0
  wait "$2" || status=$?
  sed "s/^/[$1] /" "$logs/$1"
  if ((status != 0)); then echo "test.sh: installing $1 failed" >&2; exit "$status"; fi
}

step "format"
cargo fmt --all --check

step "clippy (host; all features, so the benchmarks are linted too)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# Each wasm crate on its target, which lints the engine under each one's features: the Envoy
# filter (wasip1, Rust crypto), the component (wasip2, the host's crypto), the JS SDK (browsers).
step "Envoy filter for wasm32-wasip1 (clippy)"
cargo clippy -p portcullis-envoy -p portcullis-envoy-floor --locked --target wasm32-wasip1 -- -D warnings

step "engine component for wasm32-wasip2 (clippy)"
cargo clippy -p portcullis-component --locked --target wasm32-wasip2 -- -D warnings

step "JS SDK for wasm32-unknown-unknown (clippy)"
cargo clippy -p portcullis-js --locked --target wasm32-unknown-unknown -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "tests (unit, integration, Cedar corpus, Wycheproof, conformance native/component/HTTP, service, store on SQLite and PostgreSQL, doc tests)"
background postgres "$postgres_pid"
PORTCULLIS_TEST_POSTGRES=$(cat "$pg_dir/url")
export PORTCULLIS_TEST_POSTGRES
cargo test --workspace --locked

step "engine without its built-in crypto (as the component and the JS SDK build it)"
cargo test -p portcullis-engine --no-default-features --locked

# The CLIs as `cargo test` just built them (for the integration tests): `cargo build -p ...`
# would resolve other dependency features and build them again.
bin=$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)
export PORTCULLIS_BIN="$bin/portcullis" CONFORMANCE_BIN="$bin/portcullis-conformance"

step "TechFin policy tests"
"$PORTCULLIS_BIN" test policies/techfin

step "JS SDK: wasm build, Node (conformance, Cedar corpus, SDK, types), headless Chromium"
background wasm-bindgen "$wasm_bindgen_pid"
bindings/js/test.sh

step "Envoy filter end to end (real Envoy 1.40, real OpenID provider)"
background envoy "$envoy_pid"
bindings/envoy/test.sh

step "decision service end to end (real OpenID provider; tests/idp installed by the step above)"
node --test --test-concurrency=1 host/tests/e2e/*.test.mjs

step "done"
# Benchmarks are not part of CI (they need an optimised build of every dependency, ~10 minutes
# here): `scripts/bench.sh` runs them, `BENCH_QUICK=1 scripts/bench.sh` is the smoke run.
