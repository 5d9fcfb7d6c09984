#!/usr/bin/env bash
# Builds the npm package into bindings/js/pkg/ (gitignored):
#   portcullis.js + portcullis.d.ts   the public API (hand-written, js/)
#   react.js + react.d.ts             the React binding, `portcullis/react` (hand-written, js/)
#   portcullis_js.js                  the wasm-bindgen glue (`--target web`: one ES module for
#                                     browsers, Vite and Node 20+)
#   portcullis_js_bg.wasm             the browsers' module, built for size (profile `js-web`:
#                                     opt-level "z")
#   portcullis_js_node_bg.wasm        Node's module, read from disk, built for speed (profile
#                                     `js-node`: opt-level 3)
# Both come from the same crate, features and API, so they share one glue file; the build fails
# if wasm-bindgen's glue for the two differs.
# bindings/js/pack.sh builds it and packs it into an installable tarball.
# Usage: bindings/js/build.sh [--dev]   (--dev: unoptimised dev-profile builds, for iterating)
#        PROFILE=wasm-test bindings/js/build.sh   (release code without fat LTO, one module at
#                                                 opt-level "s" for both: what test.sh builds)
# BENCHMARKS.md has the measurements behind the two opt-levels; CARGO_PROFILE_JS_WEB_OPT_LEVEL
# and CARGO_PROFILE_JS_NODE_OPT_LEVEL override them.
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
# One module per flavour (browsers, Node), each built with its cargo profile.
if [[ "$profile" == "release" ]]; then
  web_profile=js-web node_profile=js-node
else
  web_profile="$profile" node_profile="$profile"
fi
staging="$here/pkg.tmp"
rm -rf "$staging"
mkdir -p "$staging/web" "$staging/node"
build_module() {
  local flavour=$1 cargo_profile=$2
  cargo build -p portcullis-js --target wasm32-unknown-unknown --profile "$cargo_profile" --locked
  # Cargo names the dev profile's directory "debug".
  wasm-bindgen --target web --remove-name-section --remove-producers-section \
    --out-dir "$staging/$flavour" --out-name portcullis_js \
    "$target_dir/wasm32-unknown-unknown/${cargo_profile/#dev/debug}/portcullis_js.wasm"
}
build_module web "$web_profile"
if [[ "$node_profile" == "$web_profile" ]]; then
  cp -r "$staging/web/." "$staging/node/"
else
  build_module node "$node_profile"
fi
for file in portcullis_js.js portcullis_js.d.ts portcullis_js_bg.wasm.d.ts; do
  if ! cmp -s "$staging/web/$file" "$staging/node/$file"; then
    diff "$staging/web/$file" "$staging/node/$file" | head -20 >&2 || true
    echo "build.sh: the browser and Node modules need different wasm-bindgen glue ($file); they must share one" >&2
    exit 1
  fi
done
mv "$staging/node/portcullis_js_bg.wasm" "$staging/portcullis_js_node_bg.wasm"
mv "$staging/web/"* "$staging/"
rm -rf "$staging/web" "$staging/node"
cp "$here/js/portcullis.js" "$here/js/portcullis.d.ts" "$here/js/react.js" "$here/js/react.d.ts" \
  "$here/README.md" "$staging/"
crate_version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
sed "s/@VERSION@/$crate_version/" "$here/js/package.json" > "$staging/package.json"
rm -f "$staging/.gitignore"
echo "$profile" > "$staging/.profile"
rm -rf "$here/pkg"
mv "$staging" "$here/pkg"
for module in portcullis_js_bg.wasm portcullis_js_node_bg.wasm; do
  echo "build.sh: bindings/js/pkg ($profile): $module $(wc -c < "$here/pkg/$module") bytes, $(gzip -9 -c "$here/pkg/$module" | wc -c) bytes gzip -9"
done
