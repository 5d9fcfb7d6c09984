#!/usr/bin/env bash
# The Envoy filter's end-to-end suite: builds portcullis_envoy.wasm (PROFILE, default
# wasm-test: no fat LTO), installs Envoy 1.40 (.tools/) and the OpenID provider's npm
# packages (tests/idp), builds the CLIs the tests call, then runs
# bindings/envoy/test/*.test.mjs with node's test runner against a real Envoy and a real IdP.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*"; }

step "build the filter (profile ${PROFILE:-wasm-test})"
PROFILE="${PROFILE:-wasm-test}" bindings/envoy/build.sh

step "install Envoy"
envoy=$(scripts/install-envoy.sh)
version=$("$envoy" --version)
echo "${version//$'\n'/ }"

step "install the OpenID provider (tests/idp)"
(cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)

# PORTCULLIS_BIN and CONFORMANCE_BIN: already built CLIs (scripts/test.sh passes the ones its
# `cargo test` built); otherwise they are built here.
step "portcullis and portcullis-conformance CLIs (bundles, conformance export)"
if [[ -x "${PORTCULLIS_BIN:-}" && -x "${CONFORMANCE_BIN:-}" ]]; then
  echo "given: $PORTCULLIS_BIN, $CONFORMANCE_BIN"
else
  cargo build -q -p portcullis -p portcullis-conformance --locked
  export PORTCULLIS_BIN="$root/target/debug/portcullis" CONFORMANCE_BIN="$root/target/debug/portcullis-conformance"
fi

step "end-to-end tests (real Envoy, real IdP)"
ENVOY_BIN="$envoy" node --test --test-concurrency=1 bindings/envoy/test/*.test.mjs
