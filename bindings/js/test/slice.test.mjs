// The signed-in user's data slice against a real `portcullis serve` (the debug binary, an
// SQLite store in a temporary directory, a copy of the TechFin pack that stores reports,
// departments, teams and users): `fetchData` loads what the service cuts, the SDK then decides
// the requested resources as the service does on the whole data and denies what the slice
// leaves out; in Node and in headless Chromium (the page and the service behind one origin, as
// an application deploys them); and nothing of one tenant ever reaches another tenant's user.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startServer } from "../../../examples/browser/serve.mjs";
import { serve, techfinDir, tmp } from "../../../tests/idp/harness.mjs";
import { CHROMIUM, cargoRun, devTokens, launchChromium, pkgDir, sdk } from "./support.mjs";

/**
 * A copy of policies/techfin (which stores reports, departments, divisions and folders) that
 * stores teams and users too, as `host/tests/common/mod.rs::techfin_storing_slices` makes it;
 * routes give no stored type's attributes.
 */
function techfinStoringSlices() {
  const dir = techfinDir();
  const settingsFile = join(dir, "bundle.json");
  const settings = JSON.parse(readFileSync(settingsFile, "utf8"));
  settings.data.stored.push("Team", "User");
  writeFileSync(settingsFile, JSON.stringify(settings));
  const schemaFile = join(dir, "schema.cedarschema");
  const schema = readFileSync(schemaFile, "utf8");
  const user = "entity User in [Role, Group] {";
  assert.ok(schema.includes(user), "the TechFin schema changed");
  writeFileSync(schemaFile, schema.replace(user, "entity User in [Role, Group, Team] {") + "entity Team { tenant: String };\n");
  const routesFile = join(dir, "routes.json");
  const routes = JSON.parse(readFileSync(routesFile, "utf8"));
  for (const route of routes.routes) delete route.resource.attrs;
  writeFileSync(routesFile, JSON.stringify(routes, null, 2));
  // Its policy tests give users' attributes, which a bundle storing users refuses.
  rmSync(join(dir, "tests"), { recursive: true, force: true });
  mkdirSync(join(dir, "tests"));
  return dir;
}

const NOW = Math.floor(Date.now() / 1000);
const backOffice = { oid: "b0ff1ce0-0000-4000-8000-000000000001", sub: "b0ff1ce0-0000-4000-8000-000000000001", azp: "backoffice-app", idtyp: "app", roles: ["DataWriter"] };
const tokens = () => devTokens("slice", NOW, {
  writer: { tenant: "acme", claims: backOffice },
  alice: { tenant: "acme", claims: { oid: "alice", roles: ["FinanceAnalyst"], department: "finance", amr: ["pwd", "mfa"] } },
  auditor: { tenant: "acme", claims: { oid: "audrey", roles: ["Auditor"], amr: ["pwd"] } },
  nobody: { tenant: "acme", claims: { oid: "nora", roles: [] } },
  wonka: { tenant: "wonka", claims: { oid: "willy", roles: ["FinanceAnalyst", "Auditor"], department: "finance", amr: ["pwd", "mfa"] } },
});

let service;
let t;
let bundles = {};

async function call(method, path, token, body) {
  const res = await fetch(`${service.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.text() };
}

async function write(method, path, body) {
  const answer = await call(method, `/v1/data/acme/entities/${path}`, t.writer, body);
  assert.equal(answer.status, 200, answer.body);
}

/** The service's decision on the whole data. */
async function served(token, action, id) {
  const answer = await call("POST", "/v1/decide", token, { action, resource: { type: "Report", id } });
  return JSON.parse(answer.body);
}

/** An SDK engine on the user's own tenant bundle, as a browser loads it. */
async function engineFor(token) {
  const { Portcullis } = await sdk();
  const answer = await call("GET", "/v1/bundle/tenant", token);
  assert.equal(answer.status, 200, answer.body);
  return Portcullis.load(answer.body);
}

before(async () => {
  // The binary the service runs: built (or found up to date) now.
  cargoRun("portcullis", ["--version"]);
  t = tokens();
  const dir = techfinStoringSlices();
  service = await serve(dir, ["--store", `sqlite:${join(tmp(), "data.db")}`, "--data-poll-ms", "100"]);
  const lines = [
    { uid: { type: "Department", id: "acme/risk" } },
    { uid: { type: "Department", id: "acme/finance" } },
    { uid: { type: "Team", id: "acme/analysts" } },
    { uid: { type: "User", id: "acme/alice" }, attrs: { email: "alice@acme.example" }, parents: [{ type: "Team", id: "acme/analysts" }] },
    { uid: { type: "User", id: "acme/bob" }, attrs: { email: "bob@acme.example" }, parents: [{ type: "Team", id: "acme/analysts" }] },
    { uid: { type: "Report", id: "acme/q3" }, attrs: { department: "risk" }, parents: [{ type: "Department", id: "acme/risk" }] },
    { uid: { type: "Report", id: "acme/q9" }, attrs: { department: "finance" }, parents: [{ type: "Department", id: "acme/finance" }] },
    { uid: { type: "Report", id: "acme/sales" }, attrs: { department: "sales" } },
  ];
  const imported = await call("POST", "/v1/data/acme/import", t.writer, lines.map((l) => JSON.stringify(l)).join("\n"));
  assert.equal(imported.status, 200, imported.body);
  const wonka = await call("PUT", "/v1/data/wonka/entities/Report/q3", devTokens("slice-wonka", NOW, { w: { tenant: "wonka", claims: backOffice } }).w,
    { attrs: { department: "finance" } });
  assert.equal(wonka.status, 200, wonka.body);
  bundles = { acme: (await call("GET", "/v1/bundle/tenant", t.alice)).body, wonka: (await call("GET", "/v1/bundle/tenant", t.wonka)).body };
});

after(async () => {
  await service?.stop();
});

const q3 = { type: "Report", id: "acme/q3" };

test("a report in another department is denied with no client attribute; moved and refetched, allowed", async () => {
  const pc = await engineFor(t.alice);
  const loaded = await pc.fetchData({ url: service.base, token: t.alice, resources: [q3] });
  assert.equal(loaded.tenant, "acme");
  // Her own entity and team: the report is left out (she may do nothing with it).
  assert.equal(loaded.entities, 2);
  const before = await pc.decide({ token: t.alice, action: "view", resource: q3 });
  assert.equal(before.decision, "deny");
  assert.deepEqual(before.errors.map((e) => e.code), ["data_outside_slice"]);
  assert.equal((await served(t.alice, "view", "acme/q3")).decision, "deny");

  await write("PATCH", "Report/q3", { attrs: { department: "finance" }, parents: [{ type: "Department", id: "acme/finance" }] });
  // The slice held is as of its fetch: still denied until it is fetched again.
  assert.equal((await pc.decide({ token: t.alice, action: "view", resource: q3 })).decision, "deny");
  const again = await pc.fetchData({ url: `${service.base}/`, token: t.alice, resources: [q3] });
  assert.equal(again.revision, loaded.revision + 1);
  for (const action of ["view", "export"]) {
    const decision = await pc.decide({ token: t.alice, action, resource: q3 });
    const server = await served(t.alice, action, "acme/q3");
    assert.equal(decision.decision, "allow", JSON.stringify(decision.errors));
    assert.deepEqual([decision.decision, decision.reasons, decision.dataRevision], [server.decision, server.reasons, server.data_revision]);
  }
  // Back to risk, for the other tests.
  await write("PATCH", "Report/q3", { attrs: { department: "risk" }, parents: [{ type: "Department", id: "acme/risk" }] });
  pc.dispose();
});

test("the SDK's decisions on a slice are the service's on the whole data", async () => {
  const resources = ["q3", "q9", "sales", "missing"].map((id) => ({ type: "Report", id: `acme/${id}` }));
  let compared = 0;
  for (const name of ["alice", "auditor", "nobody"]) {
    const token = t[name];
    const pc = await engineFor(token);
    await pc.fetchData({ url: service.base, token, resources });
    for (const resource of resources) {
      for (const action of ["view", "export"]) {
        const [local, server] = [await pc.decide({ token, action, resource }), await served(token, action, resource.id)];
        if (local.errors.some((e) => e.code === "data_outside_slice")) {
          // Withheld: the principal may do nothing with it, on the server either.
          assert.notEqual(server.decision, "allow", `${name} ${action} ${resource.id}`);
          assert.equal(local.decision, "deny");
        } else {
          assert.deepEqual([local.decision, [...local.reasons].sort()], [server.decision, [...server.reasons].sort()], `${name} ${action} ${resource.id}`);
          compared += 1;
        }
      }
    }
    pc.dispose();
  }
  assert.ok(compared >= 4, `${compared} decisions compared`);
});

test("fetchData's errors have stable codes and never hold the token", async () => {
  const { RequestError, TokenError } = await sdk();
  const pc = await engineFor(t.alice);
  const rejects = async (options, code) => {
    const err = await pc.fetchData({ url: "https://authz.example", token: t.alice, ...options }).then(() => null, (e) => e);
    assert.ok(err instanceof RequestError, `${code}: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.ok(!err.message.includes(t.alice), err.message);
    return err;
  };
  const answering = (status, body, headers = {}) => async () => new Response(body, { status, headers });
  await rejects({ fetch: async () => { throw new TypeError(`refused: ${t.alice}`); } }, "data_fetch");
  await rejects({ fetch: async () => ({ type: "opaqueredirect", status: 0, arrayBuffer: async () => new ArrayBuffer(0) }) }, "data_fetch");
  await rejects({ fetch: answering(200, "{}", { "content-length": String(64 << 20) }) }, "data_too_large");
  await rejects({ fetch: answering(200, "not json") }, "data_fetch");
  // A whole snapshot, or another tenant's slice: not what was asked for.
  await rejects({ fetch: answering(200, JSON.stringify({ tenant: "acme", revision: 1, entities: [] })) }, "data_fetch");
  const wonkaSlice = { tenant: "wonka", revision: 1, slice: { principal: { type: "User", id: "wonka/willy" }, resources: [] } };
  await rejects({ fetch: answering(200, JSON.stringify(wonkaSlice)) }, "data_fetch");
  // The service's code comes through; its message is scrubbed of the token were it echoed.
  const echoed = await rejects({ fetch: answering(401, JSON.stringify({ code: "unauthenticated", message: `bad ${t.alice}` })) }, "unauthenticated");
  assert.match(echoed.message, /401/);
  await rejects({ fetch: answering(403, JSON.stringify({ code: "data_other_tenant", message: "no" })) }, "data_other_tenant");
  await rejects({ fetch: answering(500, JSON.stringify({ code: "made_up", message: "x" })) }, "data_fetch");
  // Asked before any fetch: too many resources, a bad type, malformed options.
  let fetched = 0;
  const counting = async () => { fetched += 1; return new Response("{}"); };
  const many = Array.from({ length: 101 }, (_, i) => ({ type: "Report", id: `acme/r${i}` }));
  await rejects({ resources: many, fetch: counting }, "request_invalid");
  await rejects({ resources: [{ type: "not a type", id: "acme/x" }], fetch: counting }, "request_invalid");
  await rejects({ resources: "Report::\"acme/q3\"", fetch: counting }, "request_invalid");
  await rejects({ url: "", fetch: counting }, "request_invalid");
  await rejects({ extra: 1, fetch: counting }, "request_invalid");
  const refused = await pc.fetchData({ url: "https://authz.example", token: "not-a-token", fetch: counting }).then(() => null, (e) => e);
  assert.ok(refused instanceof TokenError, String(refused));
  assert.equal(fetched, 0, "nothing was fetched");
  // What the SDK asks for: its own tenant's path, resources relative to it (another tenant's
  // left out), the token in the header only, no redirect followed.
  let asked;
  const recording = async (url, init) => {
    asked = { url, init };
    return new Response("{}", { status: 503, headers: { "content-type": "application/json" } });
  };
  await rejects({ resources: [{ type: "Report", id: "acme/2026/q3 final" }, { type: "Report", id: "globex/q3" }], fetch: recording }, "data_fetch");
  assert.equal(asked.url, "https://authz.example/v1/data/acme/slice?resource=Report/2026/q3%20final");
  assert.deepEqual(asked.init, { headers: { accept: "application/json", authorization: `Bearer ${t.alice}` }, redirect: "error", cache: "no-store" });
  pc.dispose();
});

test("nothing of tenant acme reaches a wonka user's engine", async () => {
  const pc = await engineFor(t.wonka);
  // Asking for acme's report: it is not in wonka's slice query, and the slice holds only
  // wonka's facts; the decision is denied, as on the service.
  await pc.fetchData({ url: service.base, token: t.wonka, resources: [q3, { type: "Report", id: "wonka/q3" }] });
  const theirs = await pc.decide({ token: t.wonka, action: "view", resource: { type: "Report", id: "wonka/q3" } });
  assert.equal(theirs.decision, "allow", JSON.stringify(theirs.errors));
  assert.equal((await pc.decide({ token: t.wonka, action: "view", resource: q3 })).decision, "deny");
  assert.equal((await served(t.wonka, "view", "acme/q3")).decision, "deny");
  // Asking the service for acme's slice directly: refused by the tenant binding.
  const direct = await call("GET", "/v1/data/acme/slice?resource=Report/q3", t.wonka);
  assert.equal(direct.status, 403);
  assert.equal(JSON.parse(direct.body).code, "data_other_tenant");
  pc.dispose();
});

// ---------------------------------------------------------------------------------------------
// In Chromium: the page and the service behind one origin.

test("in Chromium: deny, the move, allow; and a wonka page never receives acme's data", async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  assert.ok(existsSync(join(pkgDir, "portcullis_js_bg.wasm")), "bindings/js/pkg is not built");
  const { server: files, url: filesUrl } = await startServer();
  const origin = new URL(filesUrl).origin;
  const service_ = new URL(service.base);
  // One origin: /v1/* goes to the decision service, the rest to the repository's files.
  const proxy = createServer((req, res) => {
    const upstream = req.url.startsWith("/v1/") ? service_ : new URL(origin);
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on("error", () => res.writeHead(502).end());
    req.pipe(forward);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${proxy.address().port}`;
  const browser = await launchChromium();
  const problems = [];
  try {
    const page = async (label) => {
      const p = await browser.newPage();
      const bodies = { data: [], bundles: [] };
      p.on("pageerror", (err) => problems.push(`${label}: ${err.message}`));
      p.on("response", async (r) => {
        const path = new URL(r.url()).pathname;
        const text = await r.text().catch(() => "");
        if (path.startsWith("/v1/data/")) bodies.data.push(text);
        if (path === "/v1/bundle/tenant") bodies.bundles.push(text);
      });
      await p.goto(`${base}/examples/browser/`);
      return { p, bodies };
    };
    const decideIn = (p, token, resources, action = "view") => p.evaluate(async ({ moduleUrl, token, resources, action }) => {
      const { Portcullis } = await import(moduleUrl);
      window.pc ??= await Portcullis.load(await (await fetch("/v1/bundle/tenant", { headers: { authorization: `Bearer ${token}` } })).text());
      await window.pc.fetchData({ url: location.origin, token, resources });
      const decisions = [];
      for (const resource of resources) decisions.push(await window.pc.decide({ token, action, resource }));
      return decisions.map((d) => ({ decision: d.decision, reasons: d.reasons, errors: d.errors.map((e) => e.code) }));
    }, { moduleUrl: `${base}/bindings/js/pkg/portcullis.js`, token, resources, action });

    const { p: alicePage } = await page("alice");
    let [d] = await decideIn(alicePage, t.alice, [q3]);
    assert.deepEqual(d, { decision: "deny", reasons: [], errors: ["data_outside_slice"] });
    await write("PATCH", "Report/q3", { attrs: { department: "finance" }, parents: [{ type: "Department", id: "acme/finance" }] });
    [d] = await decideIn(alicePage, t.alice, [q3]);
    assert.deepEqual(d, { decision: "allow", reasons: ["analyst-view-own-department"], errors: [] });
    await write("PATCH", "Report/q3", { attrs: { department: "risk" }, parents: [{ type: "Department", id: "acme/risk" }] });

    // A wonka user: whatever the page asks, no answer it receives holds anything of acme.
    const { p: wonkaPage, bodies } = await page("wonka");
    const decisions = await decideIn(wonkaPage, t.wonka, [q3, { type: "Report", id: "wonka/q3" }]);
    assert.deepEqual(decisions.map((x) => x.decision), ["deny", "allow"]);
    const direct = await wonkaPage.evaluate(async (token) => {
      const res = await fetch("/v1/data/acme/slice?resource=Report/q3", { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: await res.text() };
    }, t.wonka);
    assert.equal(direct.status, 403);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(bodies.data.length, 2, "the slice and the refusal");
    for (const body of bodies.data) {
      assert.ok(!/acme\/|"acme"/.test(body), `an answer to the wonka page holds acme's data: ${body.slice(0, 300)}`);
    }
    // Nor its configuration: the bundle the page loaded is wonka's alone.
    assert.equal(bodies.bundles.length, 1);
    assert.deepEqual(Object.keys(JSON.parse(bodies.bundles[0]).tenants), ["wonka"]);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    proxy.close();
    files.close();
  }
});
