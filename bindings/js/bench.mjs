// Benchmarks of the JS SDK against its peers, in one Node process (ratios measured in the same
// run; absolute numbers on a shared machine are noise). Not run in CI.
//
//   bindings/js/build.sh                                   # release package
//   (cd bindings/js/bench && npm ci)                       # peers: cedar-wasm, cedarling, jose
//   node bindings/js/bench.mjs [--quick]                   # prints a Markdown report
//   PORTCULLIS_PKG=path/to/other/pkg node bindings/js/bench.mjs   # measure another build
//
// Scenario (TechFin): an Acme analyst (Entra ID, RS256) views a finance report of her
// department → allow by `analyst-view-own-department`. Peers get the same policies, entities
// and request; cedarling's unsigned API cannot give a principal parents, so its copy of the
// policies reads the roles from a `roles` attribute instead of `principal in Role::"…"`.

import { execFileSync } from "node:child_process";
import { createPrivateKey, randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "../..");
const quick = process.argv.includes("--quick");
const peerRequire = createRequire(join(here, "bench/package.json"));
const peerUrl = (spec) => pathToFileURL(peerRequire.resolve(spec)).href;

// PORTCULLIS_PKG: another build of the package to measure (e.g. another opt-level).
const pkg = process.env.PORTCULLIS_PKG ? resolve(process.env.PORTCULLIS_PKG) : join(here, "pkg");
// test.sh leaves a build without fat LTO in pkg/; its figures are not the package's.
const builtWith = existsSync(join(pkg, ".profile")) ? readFileSync(join(pkg, ".profile"), "utf8").trim() : "?";
if (builtWith !== "release" && !process.env.PORTCULLIS_PKG) {
  throw new Error(`${pkg} was built with the "${builtWith}" profile: run bindings/js/build.sh (release) first`);
}
const { Portcullis, initialize } = await import(pathToFileURL(join(pkg, "portcullis.js")).href);
const jose = await import(peerUrl("jose"));

// ---------------------------------------------------------------------------------------------
// Helpers

const progress = (what) => process.stderr.write(`bench: ${what}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** ops/s of one timed pass of `n` calls of `fn` (sync or async). */
async function onePass(fn, n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return n / ((performance.now() - t0) / 1000);
}

/**
 * Compare `contenders` ({name: [fn, calls per pass]}) in alternating passes: after a warm-up of
 * each, every round times one pass of each in turn, so that a change of load, of V8's tiers or
 * of the heap between two measurements moves all of them. Median ops/s per name.
 */
async function alternating(contenders, { rounds, warmup }) {
  for (const [fn, n] of Object.values(contenders)) for (let i = 0; i < Math.min(n, warmup); i++) await fn();
  const rates = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, [fn, n]] of Object.entries(contenders)) rates[name].push(await onePass(fn, n));
  }
  return Object.fromEntries(Object.entries(rates).map(([name, xs]) => [name, median(xs)]));
}

/** Bytes after `gzip -9` (the target's measure; Node's zlib at level 9 comes out ~2% larger). */
const gzip9 = (bytes) => execFileSync("gzip", ["-9", "-c"], { input: bytes, maxBuffer: 1 << 28 }).length;
const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(2));
const kb = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

function compiledTechfin() {
  return execFileSync("cargo", ["run", "-q", "--locked", "-p", "portcullis", "--", "bundle", "policies/techfin", "-o", "-"],
    { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
}

// ---------------------------------------------------------------------------------------------
// The scenario

const bundle = JSON.parse(compiledTechfin());
const acme = bundle.tenants.acme.issuers[0];
const globex = bundle.tenants.globex.issuers[0];
const NOW = Math.floor(Date.now() / 1000);
const clock = () => NOW * 1000;
const acmeKey = createPrivateKey(readFileSync(join(root, "policies/techfin/dev-keys/acme-rs256.pem")));
const globexKey = createPrivateKey(readFileSync(join(root, "policies/techfin/dev-keys/globex-es256.pem")));

function acmeToken(extra = {}, issuer = acme.issuer) {
  return new jose.SignJWT({ oid: "alice", roles: ["FinanceAnalyst"], department: "finance", auth_time: NOW, jti: randomUUID(), ...extra })
    .setProtectedHeader({ alg: "RS256", kid: "acme-rs256", typ: "JWT" })
    // Entra's `sub` is pairwise, not the `oid` (equal ones, without `scp`, read as an app's token).
    .setIssuer(issuer).setAudience(acme.audiences[0]).setSubject("pairwise-sub-of-alice")
    .setIssuedAt(NOW).setNotBefore(NOW).setExpirationTime(NOW + 3600)
    .sign(acmeKey);
}

function globexToken() {
  return new jose.SignJWT({ techfin_roles: ["FinanceAnalyst"], department: "finance", jti: randomUUID() })
    .setProtectedHeader({ alg: "ES256", kid: "globex-es256", typ: "JWT" })
    .setIssuer(globex.issuer).setAudience(globex.audiences[0]).setSubject("gina")
    .setIssuedAt(NOW).setNotBefore(NOW).setExpirationTime(NOW + 3600)
    .sign(globexKey);
}

// The TechFin pack stores its reports: a request names one, and every engine holds each
// tenant's stored reports (in finance) before it decides.
const financeReport = { type: "Report", id: "acme/q3-finance" };
function storedReports(tenant) {
  const department = { type: "Department", id: `${tenant}/finance` };
  return {
    tenant, revision: 1,
    entities: [
      { uid: department, attrs: { tenant }, parents: [] },
      ...["q3", "q3-finance"].map((id) => ({ uid: { type: "Report", id: `${tenant}/${id}` }, attrs: { tenant, department: "finance" }, parents: [department] })),
    ],
  };
}
async function load(b, options) {
  const engine = await Portcullis.load(b, options);
  for (const tenant of Object.keys(b.tenants)) engine.loadTenantData(storedReports(tenant));
  return engine;
}
const request = (token) => ({ token, action: "view", resource: financeReport });

// ---------------------------------------------------------------------------------------------
// 1. Module size

progress("sizes");
// Browsers download portcullis_js_bg.wasm (built for size): the size target is about that one.
// Node reads portcullis_js_node_bg.wasm (built for speed): every timing below runs it.
const ourWasm = readFileSync(join(pkg, "portcullis_js_bg.wasm"));
const ourNodeWasm = readFileSync(join(pkg, "portcullis_js_node_bg.wasm"));
const cedarWasmPath = peerRequire.resolve("@cedar-policy/cedar-wasm/nodejs").replace(/cedar_wasm\.js$/, "cedar_wasm_bg.wasm");
const cedarlingDir = dirname(peerRequire.resolve("@janssenproject/cedarling_wasm"));
const cedarlingWasmPath = join(cedarlingDir, "cedarling_wasm_bg.wasm");
const sizes = [
  ["portcullis (this SDK), browsers' module", ourWasm],
  ["portcullis (this SDK), Node's module (read from disk; not downloaded)", ourNodeWasm],
  ["@cedar-policy/cedar-wasm 4.13.0", readFileSync(cedarWasmPath)],
  ["@janssenproject/cedarling_wasm 2.4.0", readFileSync(cedarlingWasmPath)],
].map(([name, bytes]) => [name, bytes.length, gzip9(bytes)]);

// ---------------------------------------------------------------------------------------------
// 2. Module instantiation (fresh processes: a module instantiates once per process)

progress("instantiation");
function instantiateMs(script) {
  const times = [];
  for (let i = 0; i < (quick ? 3 : 7); i++) {
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: here, encoding: "utf8" });
    times.push(Number(out.trim()));
  }
  return median(times);
}
const instantiate = {
  portcullis: instantiateMs(`const m = await import(${JSON.stringify(pathToFileURL(join(pkg, "portcullis.js")).href)});
    const t = performance.now(); await m.initialize(); console.log(performance.now() - t);`),
  cedarWasm: instantiateMs(`const t = performance.now(); await import(${JSON.stringify(peerUrl("@cedar-policy/cedar-wasm/nodejs"))});
    console.log(performance.now() - t);`),
  cedarling: instantiateMs(`const { readFile } = await import("node:fs/promises");
    const m = await import(${JSON.stringify(peerUrl("@janssenproject/cedarling_wasm"))});
    const t = performance.now(); await m.default({ module_or_path: await readFile(${JSON.stringify(cedarlingWasmPath)}) });
    console.log(performance.now() - t);`),
};

// ---------------------------------------------------------------------------------------------
// 3. Decisions with a cached token vs Cedar peers

progress("cached-token decisions");
await initialize();
const pc = await load(bundle, { now: clock });
const cachedToken = await acmeToken();
const first = await pc.decide(request(cachedToken));
if (first.decision !== "allow") throw new Error(`scenario does not allow: ${JSON.stringify(first.errors)}`);

const N = quick ? 2_000 : 10_000;
const ROUNDS = quick ? 3 : 7;
const batch = Array.from({ length: 10 }, () => ({ action: "view", resource: financeReport }));

// The browsers' module (built for size), timed here too: a copy of the package gets its own
// module instance, initialised with that module.
progress("the browsers' module");
const webCopy = mkdtempSync(join(tmpdir(), "portcullis-web-"));
cpSync(pkg, webCopy, { recursive: true });
const web = await import(pathToFileURL(join(webCopy, "portcullis.js")).href);
await web.initialize({ wasm: readFileSync(join(webCopy, "portcullis_js_bg.wasm")) });
const pcWeb = await web.Portcullis.load(bundle, { now: clock, subtle: globalThis.crypto.subtle });
pcWeb.loadTenantData(storedReports("acme"));
if ((await pcWeb.decide(request(cachedToken))).decision !== "allow") throw new Error("the browsers' module does not allow the scenario");

progress("cedar-wasm");
// cedar-wasm, stateful: the same schema and policies (shared + acme's), preparsed once.
const cedar = await import(peerUrl("@cedar-policy/cedar-wasm/nodejs"));
const policyText = bundle.policies.filter((p) => !p.tenant || p.tenant === "acme").map((p) => p.source).join("\n");
for (const answer of [cedar.preparseSchema("techfin", bundle.schema), cedar.preparsePolicySet("techfin", { staticPolicies: policyText })]) {
  if (answer.type !== "success") throw new Error(`cedar-wasm: ${JSON.stringify(answer)}`);
}
const entities = [
  { uid: { type: "User", id: "acme/alice" }, attrs: { tenant: "acme", department: "finance" }, parents: [{ type: "Role", id: "FinanceAnalyst" }] },
  { uid: { type: "Report", id: "acme/q3-finance" }, attrs: { tenant: "acme", department: "finance" }, parents: [] },
];
const cedarCall = {
  principal: { type: "User", id: "acme/alice" },
  action: { type: "Action", id: "view" },
  resource: { type: "Report", id: "acme/q3-finance" },
  context: { mfa: false, session_age: 0, scopes: [], token_type: "user" },
  entities,
  preparsedPolicySetId: "techfin",
  preparsedSchemaName: "techfin",
  validateRequest: true,
};
const cedarAnswer = cedar.statefulIsAuthorized(cedarCall);
if (cedarAnswer.type !== "success" || cedarAnswer.response.decision !== "allow") throw new Error(`cedar-wasm: ${JSON.stringify(cedarAnswer)}`);

progress("cedarling");
// cedarling, unsigned: the TechFin rule with roles as an attribute (see the header).
const cedarlingMod = await import(peerUrl("@janssenproject/cedarling_wasm"));
await cedarlingMod.default({ module_or_path: readFileSync(cedarlingWasmPath) });
const cedarlingSchema = `namespace TechFin {
  entity User = { tenant: String, department?: String, roles: Set<String> };
  entity Report = { tenant: String, department: String };
  type Session = { mfa: Bool, session_age?: Long, scopes: Set<String>, token_type: String };
  action view, export appliesTo { principal: [User], resource: Report, context: Session };
}`;
const cedarlingPolicies = {
  "analyst-view-own-department": `@id("analyst-view-own-department") permit(principal, action == TechFin::Action::"view", resource)
    when { principal.roles.contains("FinanceAnalyst") && principal has department && principal.department == resource.department };`,
  "analyst-export-own-department": `@id("analyst-export-own-department") permit(principal, action == TechFin::Action::"export", resource)
    when { principal.roles.contains("FinanceAnalyst") && principal has department && principal.department == resource.department };`,
  "auditor-view": `@id("auditor-view") permit(principal, action == TechFin::Action::"view", resource)
    when { principal.roles.contains("Auditor") && context has session_age && context.session_age < 3600 };`,
  "sensitive-actions-need-mfa": `@id("sensitive-actions-need-mfa") forbid(principal, action == TechFin::Action::"export", resource) unless { context.mfa };`,
  "no-cross-tenant": `@id("no-cross-tenant") forbid(principal, action, resource) unless { principal.tenant == resource.tenant };`,
};
const store = {
  cedar_version: "4.4.0",
  policy_stores: {
    techfin: {
      name: "TechFin",
      schema: { encoding: "none", content_type: "cedar", body: cedarlingSchema },
      policies: Object.fromEntries(Object.entries(cedarlingPolicies).map(([id, body]) => [id,
        { description: id, creation_date: "2026-01-01", policy_content: { encoding: "none", content_type: "cedar", body } }])),
      trusted_issuers: {},
    },
  },
};
const cedarling = await cedarlingMod.init({
  CEDARLING_APPLICATION_NAME: "portcullis-bench",
  CEDARLING_POLICY_STORE_LOCAL: JSON.stringify(store),
  CEDARLING_LOG_TYPE: "off",
  CEDARLING_JWT_SIG_VALIDATION: "disabled",
  CEDARLING_JWT_STATUS_VALIDATION: "disabled",
});
const cedarlingRequest = JSON.stringify({
  principal: { cedar_entity_mapping: { entity_type: "TechFin::User", id: "acme/alice" }, tenant: "acme", department: "finance", roles: ["FinanceAnalyst"] },
  action: 'TechFin::Action::"view"',
  resource: { cedar_entity_mapping: { entity_type: "TechFin::Report", id: "acme/q3-finance" }, tenant: "acme", department: "finance" },
  context: { mfa: false, session_age: 0, scopes: [], token_type: "user" },
});
const cedarlingFirst = await cedarling.authorize_unsigned(cedarlingRequest);
if (cedarlingFirst.decision !== true) throw new Error(`cedarling: ${cedarlingFirst.json_string()}`);
cedarlingFirst.free();

progress("cached-token decisions: alternating passes");
const cached = await alternating({
  portcullis: [() => pc.decide(request(cachedToken)), N],
  batch: [() => pc.decideMany({ token: cachedToken, requests: batch }), N / 10],
  web: [() => pcWeb.decide(request(cachedToken)), N / 2],
  cedarWasm: [() => cedar.statefulIsAuthorized(cedarCall), N / 4],
  cedarling: [async () => (await cedarling.authorize_unsigned(cedarlingRequest)).free(), N / 4],
}, { rounds: ROUNDS, warmup: 2_000 });
const portcullisCached = cached.portcullis;
const portcullisBatch = 10 * cached.batch;
const portcullisWebCached = cached.web;
const cedarStateful = cached.cedarWasm;
const cedarlingUnsigned = cached.cedarling;
pcWeb.dispose();
rmSync(webCopy, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------------
// 4. First decision on a fresh token vs jose's jwtVerify

progress("fresh tokens");
async function freshTokens(make, count) {
  const out = [];
  for (let i = 0; i < count; i++) out.push(await make());
  return out;
}
const FRESH = quick ? 300 : 2_000;
const FRESH_ROUNDS = 3;
const fresh = {};
for (const [alg, make, jwks, issuer, resource] of [
  ["RS256", acmeToken, bundle.tenants.acme.issuers[0].jwks, acme, financeReport],
  ["ES256", globexToken, bundle.tenants.globex.issuers[0].jwks, globex, { type: "Report", id: "globex/q3-finance" }],
]) {
  // The SDK's default in Node (node:crypto, synchronous) and WebCrypto (what browsers use).
  const engines = {
    node: await load(bundle, { now: clock }),
    webcrypto: await load(bundle, { now: clock, subtle: globalThis.crypto.subtle }),
  };
  const key = await jose.importJWK(jwks.keys[0], alg);
  const verifyOptions = { issuer: issuer.issuer, audience: issuer.audiences, currentDate: new Date(NOW * 1000) };
  // Every call gets a token nobody has seen; the three take turns, one pass each per round.
  const WARMUP = 100;
  const tokens = await freshTokens(make, 2 + 3 * (WARMUP + FRESH * FRESH_ROUNDS));
  let next = 0;
  const take = () => tokens[next++];
  for (const engine of Object.values(engines)) {
    const check = await engine.decide({ token: take(), action: "view", resource });
    if (check.decision !== "allow") throw new Error(`${alg}: ${JSON.stringify(check.errors)}`);
  }
  const rates = await alternating({
    node: [() => engines.node.decide({ token: take(), action: "view", resource }), FRESH],
    webcrypto: [() => engines.webcrypto.decide({ token: take(), action: "view", resource }), FRESH],
    jose: [() => jose.jwtVerify(take(), key, verifyOptions), FRESH],
  }, { rounds: FRESH_ROUNDS, warmup: WARMUP });
  fresh[alg] = { ours: rates.node, webcrypto: rates.webcrypto, theirs: rates.jose };
  Object.values(engines).forEach((e) => e.dispose());
}

// ---------------------------------------------------------------------------------------------
// 5. 10 vs 1,000 tenants (each with its own issuer and a tenant policy)

progress("tenants");
function manyTenants(count) {
  const b = JSON.parse(JSON.stringify(bundle));
  b.revision = "";
  for (let i = 0; i < count; i++) {
    const name = `tenant${i}`;
    b.tenants[name] = { issuers: [{ ...JSON.parse(JSON.stringify(acme)), issuer: `https://login.example/${name}/v2.0` }] };
    b.policies.push({
      file: `policies/tenants/${name}/extra.cedar`,
      tenant: name,
      source: `@id("${name}-auditors-export") permit(principal in Role::"Auditor", action == Action::"export", resource) when { resource.tenant == "${name}" && context.mfa };`,
    });
  }
  return b;
}
const loadMs = {};
const tenantEngines = {};
const tenantToken = await acmeToken({}, "https://login.example/tenant5/v2.0");
const tenantResource = { type: "Report", id: "tenant5/q3" };
for (const count of [10, 1000]) {
  const b = manyTenants(count);
  const t0 = performance.now();
  const engine = await Portcullis.load(b, { now: clock });
  loadMs[count] = performance.now() - t0;
  engine.loadTenantData(storedReports("tenant5"));
  const d = await engine.decide({ token: tenantToken, action: "view", resource: tenantResource });
  if (d.decision !== "allow") throw new Error(`tenants ${count}: ${JSON.stringify(d)}`);
  tenantEngines[count] = engine;
}
const tenantRates = await alternating(Object.fromEntries(Object.entries(tenantEngines).map(([count, engine]) =>
  [count, [() => engine.decide({ token: tenantToken, action: "view", resource: tenantResource }), N]])), { rounds: ROUNDS, warmup: 2_000 });
Object.values(tenantEngines).forEach((e) => e.dispose());

// ---------------------------------------------------------------------------------------------
// Report

const verdict = (ok) => (ok ? "met" : "**not met**");
console.log(`# JS SDK benchmarks (${new Date().toISOString().slice(0, 10)}, Node ${process.version}${quick ? ", quick run" : ""})\n`);
console.log("| module | .wasm raw | gzip -9 |\n|---|---:|---:|");
for (const [name, raw, gz] of sizes) console.log(`| ${name} | ${kb(raw)} (${raw.toLocaleString("en-US")} B) | ${kb(gz)} (${gz.toLocaleString("en-US")} B) |`);
console.log(`\nTarget ≤ 1.0 MB gzip -9 (the browsers' module): ${verdict(sizes[0][2] <= 1_000_000)}.\n`);
console.log("| module instantiation (median of fresh processes) | ms |\n|---|---:|");
console.log(`| portcullis \`initialize()\` (read + compile + instantiate) | ${instantiate.portcullis.toFixed(1)} |`);
console.log(`| cedar-wasm (nodejs target: import = read + compile + instantiate) | ${instantiate.cedarWasm.toFixed(1)} |`);
console.log(`| cedarling \`init wasm\` (compile + instantiate, bytes read before) | ${instantiate.cedarling.toFixed(1)} |`);
console.log("\n| decisions/s, cached token (one request at a time) | decisions/s | portcullis is |\n|---|---:|---:|");
console.log(`| portcullis \`decide\` (token verified and cached) | ${fmt(portcullisCached)} | |`);
console.log(`| portcullis \`decideMany\`, 10 requests per call | ${fmt(portcullisBatch)} | |`);
console.log(`| portcullis \`decide\`, the browsers' module (built for size) | ${fmt(portcullisWebCached)} | |`);
console.log(`| cedar-wasm \`statefulIsAuthorized\` (preparsed schema + policies) | ${fmt(cedarStateful)} | ${(portcullisCached / cedarStateful).toFixed(2)}× |`);
console.log(`| cedarling \`authorize_unsigned\` | ${fmt(cedarlingUnsigned)} | ${(portcullisCached / cedarlingUnsigned).toFixed(2)}× |`);
console.log(`\nTargets: ≥ 3× cedar-wasm stateful: ${verdict(portcullisCached / cedarStateful >= 3)}; ≥ 6× cedarling unsigned: ${verdict(portcullisCached / cedarlingUnsigned >= 6)}.\n`);
console.log("| first decision on a fresh token | portcullis decisions/s (node:crypto, the default in Node) | jose `jwtVerify`/s | portcullis time / jose time | portcullis with WebCrypto/s | its time / jose time |\n|---|---:|---:|---:|---:|---:|");
for (const [alg, { ours, webcrypto, theirs }] of Object.entries(fresh)) {
  console.log(`| ${alg} | ${fmt(ours)} | ${fmt(theirs)} | ${(theirs / ours).toFixed(2)}× | ${fmt(webcrypto)} | ${(theirs / webcrypto).toFixed(2)}× |`);
}
console.log(`\nTarget ≤ 1.5× jose: RS256 ${verdict(fresh.RS256.theirs / fresh.RS256.ours <= 1.5)}, ES256 ${verdict(fresh.ES256.theirs / fresh.ES256.ours <= 1.5)}.\n`);
console.log("| tenants in the bundle | load ms | decisions/s, cached token |\n|---|---:|---:|");
for (const count of [10, 1000]) console.log(`| ${count + 6} | ${loadMs[count].toFixed(0)} | ${fmt(tenantRates[count])} |`);
const slowdown = tenantRates[10] / tenantRates[1000];
console.log(`\n1,000 tenants vs 10: ${slowdown.toFixed(2)}× the time per decision (target ≤ 1.3×: ${verdict(slowdown <= 1.3)}).`);
// cedarling keeps background work alive; the report is complete.
process.exit(0);
