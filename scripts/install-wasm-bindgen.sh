#!/usr/bin/env bash
# Installs wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock
# (the generated glue and the module's custom section are versioned together) into
# ~/.cargo/bin. Idempotent: does nothing when that version is already installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
if [[ -z "$version" ]]; then echo "install-wasm-bindgen.sh: wasm-bindgen is not in Cargo.lock" >&2; exit 1; fi
installed=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$installed" != "$version" ]]; then
  echo "install-wasm-bindgen.sh: installing wasm-bindgen-cli $version (found: ${installed:-none})"
  # `--locked` first. wasm-bindgen-cli's own lock file can name a crate version the registry
  # no longer serves (0.2.130 locks webpki-roots 1.0.11); then resolve afresh, still pinned to
  # the same CLI version.
  # `--force`: cargo's record of installed packages can outlive the binaries (or name another
  # build of them); the version check above is what counts.
  cargo install --force wasm-bindgen-cli --version "$version" --locked \
    || cargo install --force wasm-bindgen-cli --version "$version"
fi
