#!/usr/bin/env bash
# The JS SDK's tests, idempotently on a fresh machine:
#   npm ci (committed package-lock.json) · Debian chromium (apt-get, if missing) ·
#   build.sh (PROFILE, default wasm-test: release code without fat LTO) if the package is missing,
#   was built with another profile, or is older than its sources ·
#   pack.sh --no-build (the npm tarball, into test-artifacts/pack) ·
#   test artifacts (compiled bundles, conformance export, playground samples) ·
#   node --test: conformance cases, Cedar corpus, SDK behaviour, TypeScript declarations, the
#   tarball installed into a fresh project, the playground and a React app in headless Chromium
#   (screenshots in bindings/js/test-artifacts/).
# Prints node's test summary; exits non-zero if anything failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }

step "npm dependencies"
stamp="node_modules/.package-lock.sha256"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  echo "up to date"
fi

step "chromium"
chromium_path="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$chromium_path" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "test.sh: Chromium not found at $chromium_path; install Debian's chromium (or set CHROMIUM_PATH)" >&2
    exit 1
  fi
fi
"$chromium_path" --version

profile="${PROFILE:-wasm-test}"
step "package (bindings/js/pkg, profile $profile)"
stale=""
if [[ ! -f pkg/portcullis_js_bg.wasm || ! -f pkg/portcullis_js_node_bg.wasm || "$(cat pkg/.profile 2>/dev/null)" != "$profile" ]]; then
  stale="missing or another profile"
else
  stale=$(find "$root/engine/src" "$root/engine/Cargo.toml" "$here/src" "$here/Cargo.toml" "$here/js" \
    "$here/README.md" "$root/Cargo.lock" -newer pkg/.profile -print -quit)
fi
if [[ -n "$stale" ]]; then
  echo "building ($stale)"
  PROFILE="$profile" ./build.sh
else
  echo "up to date"
fi

step "tarball (pack.sh into test-artifacts/pack)"
rm -rf test-artifacts/pack
./pack.sh --no-build --out test-artifacts/pack

step "test artifacts"
node test/prepare.mjs

step "node --test"
node --test --test-reporter=spec test/*.test.mjs
