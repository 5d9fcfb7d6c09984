#!/usr/bin/env bash
# Builds the npm package into bindings/js/pkg/ (gitignored):
#   portcullis.js + portcullis.d.ts   the public API (hand-written, js/)
#   portcullis_js.js, *_bg.wasm       the wasm-bindgen module (`--target web`: one ES module for
#                                     browsers, Vite and Node 20+; portcullis.js reads the .wasm
#                                     from disk in Node, fetches it elsewhere)
# Usage: bindings/js/build.sh [--dev]   (--dev: unoptimised dev-profile build, for iterating)
#        PROFILE=wasm-test bindings/js/build.sh   (release code without fat LTO: what test.sh
#                                                 builds; minutes faster, a larger .wasm)
# The default is the workspace's release profile (fat LTO, opt-level "s"); another opt-level is
# one environment variable away, e.g. CARGO_PROFILE_RELEASE_OPT_LEVEL=3 (faster, larger) or "z"
# (smaller, slower); BENCHMARKS.md has the measurements.
# Idempotent: scripts/install-wasm-bindgen.sh installs wasm-bindgen-cli (the exact version of
# the wasm-bindgen crate in Cargo.lock) only when the installed one differs.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

profile="${PROFILE:-release}"
if [[ "${1:-}" == "--dev" ]]; then profile=dev; fi

"$root/scripts/install-wasm-bindgen.sh"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# No wasm-opt: measured on this module (BENCHMARKS.md), Debian's binaryen (wasm-opt 108) makes
# the module 10% smaller raw but 6% larger gzip-compressed, which is what users download, and it
# breaks wasm-bindgen's externref table (the module then fails to instantiate). So it is not used.

# Its own target directory: the release wasm build (fat LTO) then never invalidates, or waits
# on, the workspace's other builds, and a different opt-level (below) does not thrash them.
target_dir="${CARGO_TARGET_DIR:-$root/target/js}"
export CARGO_TARGET_DIR="$target_dir"
cargo build -p portcullis-js --target wasm32-unknown-unknown --profile "$profile" --locked
# Cargo names the dev profile's directory "debug".
wasm="$target_dir/wasm32-unknown-unknown/${profile/#dev/debug}/portcullis_js.wasm"

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
