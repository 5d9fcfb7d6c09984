#!/usr/bin/env bash
# Packs the npm package into an installable tarball, portcullis-<version>.tgz, that needs no
# Rust to install or use:
#   1. builds bindings/js/pkg with build.sh (same PROFILE and --dev), unless --no-build;
#   2. checks that every file the package.json's `files` and `exports` name is in pkg (npm
#      pack leaves a missing one out without a word);
#   3. `npm pack` into OUT (--out DIR, default bindings/js/dist/, gitignored), and prints the
#      tarball's path on the last line.
# Usage: bindings/js/pack.sh [--dev] [--no-build] [--out DIR]
# Install it with `npm install ./portcullis-<version>.tgz` (no dependencies: works offline).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/dist"
build=1
build_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) build=0 ;;
    --dev) build_args+=(--dev) ;;
    --out) out="$2"; shift ;;
    *) echo "pack.sh: unknown argument \`$1\` (usage: pack.sh [--dev] [--no-build] [--out DIR])" >&2; exit 2 ;;
  esac
  shift
done

if [[ $build -eq 1 ]]; then
  "$here/build.sh" "${build_args[@]}"
elif [[ ! -f "$here/pkg/package.json" ]]; then
  echo "pack.sh: bindings/js/pkg is not built (run without --no-build)" >&2
  exit 1
fi

node --input-type=module - "$here/pkg" <<'JS'
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
const dir = process.argv[2];
const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const targets = (value) => (typeof value === "string" ? [value] : Object.values(value ?? {}).flatMap(targets));
const named = new Set([...manifest.files, ...targets(manifest.exports), manifest.main, manifest.module, manifest.types]
  .filter(Boolean).map((f) => f.replace(/^\.\//, "")));
const missing = [...named].filter((f) => !existsSync(join(dir, f)));
const unlisted = [...named].filter((f) => f !== "package.json" && !manifest.files.includes(f));
if (missing.length > 0 || unlisted.length > 0) {
  if (missing.length > 0) console.error(`pack.sh: bindings/js/pkg lacks ${missing.join(", ")}`);
  if (unlisted.length > 0) console.error(`pack.sh: package.json names ${unlisted.join(", ")} outside \`files\``);
  process.exit(1);
}
JS

mkdir -p "$out"
out="$(cd "$out" && pwd)"
name=$(cd "$here/pkg" && npm pack --silent --pack-destination "$out" | tail -1)
echo "pack.sh: $(wc -c < "$out/$name") bytes" >&2
echo "$out/$name"
