// The package as people install it: the tarball `pack.sh` makes (`npm pack`), installed with
// `npm install <tarball>` into a fresh project outside the repository (offline: the package has
// no dependencies), then used from that project — imported by name in Node, deciding with
// development tokens of the TechFin bundle on the default clock, and its types resolved by tsc
// through the package's `exports`. Nothing here reaches into bindings/js/pkg or the Rust build.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import { requestFactsBundle, devTokens, jsDir, npmInstall, packedTarball } from "./support.mjs";

const tsc = join(jsDir, "node_modules/typescript/bin/tsc");

let project;
let installed;

before(() => {
  const tarball = packedTarball();
  project = mkdtempSync(join(tmpdir(), "portcullis-consumer-"));
  writeFileSync(join(project, "package.json"), `${JSON.stringify({ name: "consumer", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`);
  npmInstall(project, tarball);
  installed = join(project, "node_modules/portcullis");
});

after(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

/** Run `node <file>` in the consumer project; its stdout as JSON. */
function runInProject(file, source) {
  writeFileSync(join(project, file), source);
  return JSON.parse(execFileSync(process.execPath, [file], { cwd: project, encoding: "utf8" }));
}

test("the tarball installs every file the package names, and nothing else", () => {
  const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  assert.equal(manifest.name, "portcullis");
  assert.match(manifest.version, /^\d+\.\d+\.\d+/);
  assert.deepEqual(manifest.dependencies, undefined, "no runtime dependency");
  assert.deepEqual(manifest.peerDependenciesMeta, { react: { optional: true } });
  assert.deepEqual(readdirSync(installed).sort(), [...manifest.files, "package.json"].sort());
  const consumer = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
  assert.match(consumer.dependencies.portcullis, /^file:.*portcullis-.*\.tgz$/);
  // The optional peer is not installed with it.
  assert.deepEqual(readdirSync(join(project, "node_modules")).filter((f) => !f.startsWith(".")), ["portcullis"]);
  for (const target of ["portcullis.js", "portcullis.d.ts", "react.js", "react.d.ts", "portcullis_js_bg.wasm", "portcullis_js_node_bg.wasm"]) {
    assert.ok(existsSync(join(installed, target)), target);
  }
});

test("imported by name from the project, it decides with development tokens (Node, default clock)", () => {
  const now = Math.floor(Date.now() / 1000);
  const tokens = devTokens("consumer", now, {
    analyst: { tenant: "acme", claims: { oid: "alice", roles: ["FinanceAnalyst"], department: "finance", amr: ["pwd", "mfa"] } },
    auditor: { tenant: "acme", claims: { oid: "aurora", roles: ["Auditor"] } },
  });
  writeFileSync(join(project, "fixture.json"), JSON.stringify({ bundle: JSON.parse(requestFactsBundle()), tokens }));
  const out = runInProject("main.mjs", `
import { readFileSync } from "node:fs";
import { Portcullis, TokenError } from "portcullis";
const { bundle, tokens } = JSON.parse(readFileSync("./fixture.json", "utf8"));
const pc = await Portcullis.load(bundle);
const report = (department) => ({ type: "Report", id: "acme/q3-" + department, attrs: { tenant: "acme", department } });
const decide = (token, action, resource) => pc.decide({ token, action, resource });
const out = {
  resolved: import.meta.resolve("portcullis"),
  revision: pc.revision,
  view: await decide(tokens.analyst, "view", report("finance")),
  otherDepartment: await decide(tokens.analyst, "view", report("sales")),
  export: await decide(tokens.analyst, "export", report("finance")),
  auditorExport: await decide(tokens.auditor, "export", report("finance")),
  sync: pc.decideSync({ token: tokens.auditor, action: "view", resource: report("sales") }),
  principal: await pc.authenticate(tokens.analyst),
  tokenError: await pc.authenticate("x.y.z").catch((e) => ({ isTokenError: e instanceof TokenError, code: e.code })),
};
console.log(JSON.stringify(out));
`);
  assert.equal(out.resolved, pathToFileURL(join(installed, "portcullis.js")).href, "the installed copy, not the repository's");
  assert.equal(out.revision, JSON.parse(requestFactsBundle()).revision);
  assert.equal(out.view.decision, "allow", JSON.stringify(out.view.errors));
  assert.deepEqual(out.view.reasons, ["analyst-view-own-department"]);
  assert.equal(out.otherDepartment.decision, "deny");
  assert.equal(out.export.decision, "allow", JSON.stringify(out.export.errors));
  assert.equal(out.auditorExport.decision, "deny");
  assert.equal(out.sync.decision, "allow", JSON.stringify(out.sync.errors));
  assert.equal(out.principal.id, "alice");
  assert.deepEqual(out.tokenError, { isTokenError: true, code: "token_malformed" });
});

test("`portcullis/react` is a subpath export that needs react only when imported", () => {
  const out = runInProject("react-missing.mjs", `
const resolved = import.meta.resolve("portcullis/react");
const error = await import("portcullis/react").then(() => null, (e) => ({ code: e.code, message: e.message }));
console.log(JSON.stringify({ resolved, error }));
`);
  assert.equal(out.resolved, pathToFileURL(join(installed, "react.js")).href);
  // The project has no react: the subpath asks for it, the main entry (above) never did.
  assert.equal(out.error?.code, "ERR_MODULE_NOT_FOUND");
  assert.match(out.error.message, /'react'/);
});

test("the installed types resolve through `exports` and compile strictly (tsc --noEmit)", () => {
  assert.ok(existsSync(tsc), "typescript is not installed: npm ci in bindings/js");
  // React's types are the application's: bindings/js's devDependency @types/react, linked in.
  mkdirSync(join(project, "node_modules/@types"), { recursive: true });
  symlinkSync(join(jsDir, "node_modules/@types/react"), join(project, "node_modules/@types/react"), "dir");
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: "es2022", lib: ["es2022", "dom"], module: "nodenext",
      moduleResolution: "nodenext", jsx: "react-jsx", skipLibCheck: false, types: [],
    },
    files: ["app.tsx"],
  }, null, 2));
  writeFileSync(join(project, "app.tsx"), `
import { Portcullis, type Decision, RequestError } from "portcullis";
import { Can, type Permission, PortcullisProvider, usePermission, usePortcullis } from "portcullis/react";

declare const token: string;
const report = { type: "Report", id: "acme/q3", attrs: { tenant: "acme", department: "finance" } };

export async function backend(bundle: string): Promise<boolean> {
  const pc: Portcullis = await Portcullis.load(bundle, { fetchKeys: { cooldownMs: 1000 } });
  const d: Decision = await pc.decide({ token, action: "view", resource: report });
  const now: Decision | null = pc.decideSync({ token, action: "view", resource: report });
  // @ts-expect-error: decideSync may answer null
  const sure: string = pc.decideSync({ token, action: "view", resource: report }).decision;
  console.log(sure, now?.reasons, RequestError.name);
  return d.decision === "allow";
}

function ExportButton() {
  const p: Permission = usePermission({ action: "export", resource: report });
  const engine: Portcullis | null = usePortcullis().engine;
  if (p.error !== null) return <p>{p.error.message} {engine?.revision}</p>;
  return <button disabled={!p.allowed || p.loading}>Export {p.decision?.reasons.join()}</button>;
}

export function App({ bundle }: { bundle: string }) {
  return (
    <PortcullisProvider bundle={bundle} token={token} options={{ fetchKeys: true }}>
      <Can action="view" resource={report} fallback={<p>no</p>} loading={<p>…</p>}>
        <ExportButton />
      </Can>
      {/* @ts-expect-error: a resource is required */}
      <Can action="view">never</Can>
    </PortcullisProvider>
  );
}
`);
  try {
    execFileSync(process.execPath, [tsc, "-p", project], { cwd: project, encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`);
  }
});
