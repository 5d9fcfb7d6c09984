#!/usr/bin/env bash
# The README's main command: the TechFin scenario through the decision engine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p portcullis --locked -- demo --bundle policies/techfin
