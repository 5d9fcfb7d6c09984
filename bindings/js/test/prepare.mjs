// Makes every artifact the tests need, fresh: compiled bundles, the conformance export, the
// playground's bundle and sample tokens. test.sh runs it before `node --test`.

import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { compiledBundle, conformanceExport, repoRoot, requestFactsBundle } from "./support.mjs";

const started = performance.now();
const document = conformanceExport({ fresh: true });
for (const dir of new Set(document.cases.map((c) => c.bundle))) compiledBundle(dir, { fresh: true });
compiledBundle("policies/techfin", { fresh: true });
requestFactsBundle({ fresh: true });
execFileSync(process.execPath, [join(repoRoot, "examples/browser/prepare.mjs")], { stdio: "inherit" });
console.log(`test artifacts ready: ${document.cases.length} conformance cases (${((performance.now() - started) / 1000).toFixed(1)}s)`);
