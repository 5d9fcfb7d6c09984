#!/usr/bin/env bash
# The README's main command: the TechFin scenario through the decision service (the engine
# component in wasmtime, over HTTP on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
# The portcullis binary embeds the engine component, built for wasm32-wasip2.
scripts/setup.sh
cargo run -q -p portcullis --locked -- demo --bundle policies/techfin
