// The TypeScript declarations compile under `--strict` against an application that uses every
// part of the API (test/types/usage.ts), with the DOM library and with Node's types only.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { jsDir, pkgDir } from "./support.mjs";

const tsc = join(jsDir, "node_modules/typescript/bin/tsc");

for (const config of ["tsconfig.json", "tsconfig.node.json"]) {
  test(`portcullis.d.ts compiles strictly (${config})`, () => {
    assert.ok(existsSync(tsc), "typescript is not installed: npm ci in bindings/js");
    assert.ok(existsSync(join(pkgDir, "portcullis.d.ts")), "bindings/js/pkg is not built");
    try {
      execFileSync(process.execPath, [tsc, "-p", join(jsDir, "test/types", config)], { encoding: "utf8", stdio: "pipe" });
    } catch (err) {
      assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`);
    }
  });
}

for (const file of ["portcullis.d.ts", "react.d.ts"]) {
  test(`the declarations never say \`any\` (${file})`, async () => {
    const { readFileSync } = await import("node:fs");
    const text = readFileSync(join(pkgDir, file), "utf8");
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(code, /\bany\b/);
  });
}
