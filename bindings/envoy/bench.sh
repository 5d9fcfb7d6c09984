#!/usr/bin/env bash
# Envoy benchmark in one run (see bench/bench.mjs): no auth filter vs an empty proxy-wasm filter
# (bindings/envoy/floor) vs native jwt_authn + rbac vs Portcullis, Envoy CPU time per request as
# the main figure. Installs wrk (Debian) and Envoy.
#   bindings/envoy/bench.sh                      the filter's `envoy` build (opt-level 3, fat LTO)
#   PROFILE=wasm-test bindings/envoy/bench.sh    faster build, slower filter
#   BENCH_DURATION=10s BENCH_ROUNDS=5 BENCH_CONNECTIONS=16,64 bindings/envoy/bench.sh
#                                                (defaults: 5s per row, 3 rounds, 16 connections)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
PROFILE="${PROFILE:-envoy}" bindings/envoy/build.sh
cargo build -q -p portcullis-envoy-floor --target wasm32-wasip1 --release --locked
envoy=$(scripts/install-envoy.sh)
cargo build -q -p portcullis --locked
ENVOY_BIN="$envoy" PORTCULLIS_BIN="$root/target/debug/portcullis" node bindings/envoy/bench/bench.mjs
