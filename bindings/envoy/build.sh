#!/usr/bin/env bash
# Builds the Envoy filter: bindings/envoy/portcullis_envoy.wasm (wasm32-wasip1).
#   bindings/envoy/build.sh                 `envoy` profile (release at opt-level 3, fat LTO;
#                                           ~6 minutes from scratch on 2 cores)
#   PROFILE=release bindings/envoy/build.sh     opt-level "s": ~10 MiB less Envoy memory, fresh
#                                               tokens ~20% more CPU (Cargo.toml)
#   PROFILE=wasm-test bindings/envoy/build.sh   no LTO, for the end-to-end tests
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
profile="${PROFILE:-envoy}"
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
cargo build -p portcullis-envoy --target wasm32-wasip1 --profile "$profile" --locked
cp "target/wasm32-wasip1/$profile/portcullis_envoy.wasm" bindings/envoy/portcullis_envoy.wasm
ls -l bindings/envoy/portcullis_envoy.wasm >&2
