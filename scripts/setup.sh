#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain. Idempotent.
set -euo pipefail
targets=(wasm32-unknown-unknown wasm32-wasip1 wasm32-wasip2)
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
for c in clippy rustfmt; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done
