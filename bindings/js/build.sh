#!/usr/bin/env bash
# Builds the npm package into bindings/js/pkg/ (gitignored):
#   portcullis.js + portcullis.d.ts   the public API (hand-written, js/)
#   portcullis_js.js, *_bg.wasm       the wasm-bindgen module (`--target web`: one ES module for
#                                     browsers, Vite and Node 20+; portcullis.js reads the .wasm
#                                     from disk in Node, fetches it elsewhere)
# Usage: bindings/js/build.sh [--dev]   (--dev: unoptimised dev-profile build, for iterating)
# The release build uses the workspace's release profile (opt-level "s"); another opt-level is
# one environment variable away, e.g. CARGO_PROFILE_RELEASE_OPT_LEVEL=3 (faster, larger) or "z"
# (smaller, slower); BENCHMARKS.md has the measurements.
# Idempotent: installs wasm-bindgen-cli (the exact version of the wasm-bindgen crate in
# Cargo.lock) only when the installed one differs. Honours CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

profile=release
if [[ "${1:-}" == "--dev" ]]; then profile=dev; fi

# wasm-bindgen's CLI must match the crate exactly (the generated glue and the module's
# custom section are versioned together).
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z "$version" ]]; then echo "build.sh: wasm-bindgen is not in Cargo.lock" >&2; exit 1; fi
installed=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$installed" != "$version" ]]; then
  echo "build.sh: installing wasm-bindgen-cli $version (found: ${installed:-none})"
  # `--locked` first. wasm-bindgen-cli's own lock file can name a crate version the registry
  # no longer serves (0.2.130 locks webpki-roots 1.0.11); then resolve afresh, still pinned to
  # the same CLI version.
  cargo install wasm-bindgen-cli --version "$version" --locked \
    || cargo install wasm-bindgen-cli --version "$version"
fi

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# No wasm-opt: measured on this module (BENCHMARKS.md), Debian's binaryen (wasm-opt 108) makes
# the module 10% smaller raw but 6% larger gzip-compressed, which is what users download, and it
# breaks wasm-bindgen's externref table (the module then fails to instantiate). So it is not used.

# Its own target directory: the release wasm build (fat LTO) then never invalidates, or waits
# on, the workspace's other builds, and a different opt-level (below) does not thrash them.
target_dir="${CARGO_TARGET_DIR:-$root/target/js}"
export CARGO_TARGET_DIR="$target_dir"
if [[ "$profile" == release ]]; then
  cargo build -p portcullis-js --target wasm32-unknown-unknown --release --locked
  wasm="$target_dir/wasm32-unknown-unknown/release/portcullis_js.wasm"
else
  cargo build -p portcullis-js --target wasm32-unknown-unknown --locked
  wasm="$target_dir/wasm32-unknown-unknown/debug/portcullis_js.wasm"
fi

staging="$here/pkg.tmp"
rm -rf "$staging"
mkdir -p "$staging"
wasm-bindgen --target web --out-dir "$staging" --out-name portcullis_js "$wasm"
cp "$here/js/portcullis.js" "$here/js/portcullis.d.ts" "$here/README.md" "$staging/"
crate_version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
sed "s/@VERSION@/$crate_version/" "$here/js/package.json" > "$staging/package.json"
rm -f "$staging/.gitignore"
echo "$profile" > "$staging/.profile"
rm -rf "$here/pkg"
mv "$staging" "$here/pkg"
size=$(wc -c < "$here/pkg/portcullis_js_bg.wasm")
gz=$(gzip -9 -c "$here/pkg/portcullis_js_bg.wasm" | wc -c)
echo "build.sh: bindings/js/pkg ($profile): portcullis_js_bg.wasm $size bytes, $gz bytes gzip -9"
