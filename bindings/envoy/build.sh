#!/usr/bin/env bash
# Builds the Envoy filter: bindings/envoy/portcullis_envoy.wasm (wasm32-wasip1).
#   bindings/envoy/build.sh                 release profile (fat LTO; ~10 minutes on 2 cores)
#   PROFILE=wasm-test bindings/envoy/build.sh   no LTO, for the end-to-end tests
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
cargo build -p portcullis-envoy --target wasm32-wasip1 --profile "$profile" --locked
cp "target/wasm32-wasip1/$profile/portcullis_envoy.wasm" bindings/envoy/portcullis_envoy.wasm
ls -l bindings/envoy/portcullis_envoy.wasm >&2
