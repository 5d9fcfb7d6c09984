// The React binding (`portcullis/react`) in a real app: a project that installs the packed
// tarball (pack.sh) next to React, built with Vite and rendered in headless Chromium. The
// engine decides in the page, signatures through Chromium's WebCrypto, with development tokens
// on the browser's clock. Checked: allowed actions render their children, denied ones their
// fallback (never the other way round, not even for a moment), a token already verified is
// decided during the render (decideSync: no loading state), a bundle that does not load fails
// closed with its error, and the engine is split off into its own lazily loaded chunk. And a
// server-side render in Node, where node:crypto lets <Can> decide during the render. The
// sizes a browser downloads go to test-artifacts/react-app/sizes.json.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { startServer } from "../../../examples/browser/serve.mjs";
import { artifacts, requestFactsBundle, devTokens, launchChromium, npmInstall, packedTarball } from "./support.mjs";

const app = join(artifacts, "react-app");
const dist = join(app, "dist");

const MAIN = `
import { createElement as h, StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { Can, PortcullisProvider, usePermission } from "portcullis/react";

// Count Chromium's signature checks: the hooks asking about one token share one.
window.verifies = 0;
const verify = crypto.subtle.verify.bind(crypto.subtle);
crypto.subtle.verify = (...args) => {
  window.verifies += 1;
  return verify(...args);
};

const root = document.getElementById("root");
// Every element id, in the order it appeared (React may keep a span and change its id): a
// fallback shown before its children (or children before a decision) would be caught here.
window.seen = [];
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === "attributes") {
      if (record.target.id) window.seen.push(record.target.id);
      continue;
    }
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      if (node.id) window.seen.push(node.id);
      for (const child of node.querySelectorAll("[id]")) window.seen.push(child.id);
    }
  }
}).observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ["id"] });

const report = (id, department) => ({ type: "Report", id: "acme/" + id, attrs: { tenant: "acme", department } });

function Gate({ id, ...request }) {
  return h(Can, {
    ...request,
    fallback: h("span", { id: id + "-denied" }, "denied"),
    loading: h("span", { id: id + "-loading" }, "deciding"),
  }, h("span", { id: id + "-allowed" }, "allowed"));
}

function Show({ id, request }) {
  const p = usePermission(request);
  return h("pre", { id, "data-loading": String(p.loading) }, JSON.stringify({
    allowed: p.allowed, loading: p.loading, reasons: p.decision?.reasons ?? null,
    decision: p.decision?.decision ?? null, error: p.error?.code ?? null,
  }));
}

function App({ bundle, broken, tokens }) {
  const [more, setMore] = useState(false);
  // One signature character changed: still well-formed, no longer valid.
  const at = tokens.analyst.length - 10;
  const tampered = tokens.analyst.slice(0, at) + (tokens.analyst[at] === "A" ? "B" : "A") + tokens.analyst.slice(at + 1);
  return h("div", null,
    h(PortcullisProvider, { bundle, token: tokens.analyst },
      h(Gate, { id: "view-finance", action: "view", resource: report("q3-finance", "finance") }),
      h(Gate, { id: "view-sales", action: "view", resource: report("q3-sales", "sales") }),
      h(Gate, { id: "export-finance", action: "export", resource: report("q3-finance", "finance") }),
      h(Gate, { id: "manage-user", action: "manage_user", resource: { type: "User", id: "acme/bob", attrs: { tenant: "acme" } } }),
      h(Gate, { id: "tampered", token: tampered, action: "view", resource: report("q3-finance", "finance") }),
      h(Gate, { id: "no-token", token: null, action: "view", resource: report("q3-finance", "finance") }),
      h(Show, { id: "hook", request: { action: "export", resource: report("q3-finance", "finance") } }),
      h("button", { id: "more", onClick: () => setMore(true) }, "more"),
      more && h(Gate, { id: "later", action: "view", resource: report("q4-finance", "finance") }),
      more && h(Gate, { id: "later-sales", action: "view", resource: report("q4-sales", "sales") })),
    h(PortcullisProvider, { bundle, token: null },
      h(Gate, { id: "signed-out", action: "view", resource: report("q3-finance", "finance") })),
    h(PortcullisProvider, { bundle: broken, token: tokens.analyst },
      h(Gate, { id: "broken", action: "view", resource: report("q3-finance", "finance") }),
      h(Show, { id: "broken-hook", request: { action: "view", resource: report("q3-finance", "finance") } })));
}

fetch("./fixture.json").then((r) => r.json()).then(({ bundle, tokens }) => {
  // A bundle edited after it was compiled: its revision check fails.
  const broken = { ...bundle, entities: [{ uid: { type: "Role", id: "Sneaky" }, attrs: {}, parents: [] }] };
  createRoot(root).render(h(StrictMode, null, h(App, { bundle, broken, tokens })));
});
`;

let browser;

before(async () => {
  const tarball = packedTarball();
  rmSync(app, { recursive: true, force: true });
  mkdirSync(join(app, "public"), { recursive: true });
  // An app of its own that installs the tarball; react and react-dom are found where an app's
  // own dependencies would be, up the tree (bindings/js/node_modules, its devDependencies).
  writeFileSync(join(app, "package.json"), `${JSON.stringify({ name: "react-app", private: true, type: "module" }, null, 2)}\n`);
  npmInstall(app, tarball);
  writeFileSync(join(app, "index.html"), '<!doctype html><html><head><link rel="icon" href="data:,"></head><body><div id="root"></div><script type="module" src="./main.js"></script></body></html>\n');
  writeFileSync(join(app, "main.js"), MAIN);
  const now = Math.floor(Date.now() / 1000);
  const tokens = devTokens("react-app", now, {
    analyst: { tenant: "acme", claims: { oid: "alice", roles: ["FinanceAnalyst"], department: "finance", amr: ["pwd", "mfa"] } },
  });
  writeFileSync(join(app, "public/fixture.json"), JSON.stringify({ bundle: JSON.parse(requestFactsBundle()), tokens }));
  const { build } = await import("vite");
  await build({ root: app, logLevel: "warn", build: { outDir: dist, emptyOutDir: true } });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

test("Vite splits the engine off into a chunk of its own, with the browsers' module only", () => {
  const assets = readdirSync(join(dist, "assets"));
  const wasm = assets.filter((f) => f.endsWith(".wasm"));
  assert.equal(wasm.length, 1, `one Wasm module: ${assets}`);
  assert.match(wasm[0], /^portcullis_js_bg-.*\.wasm$/);
  const scripts = assets.filter((f) => f.endsWith(".js"));
  const entry = readFileSync(join(dist, "index.html"), "utf8").match(/assets\/([^"]+\.js)/)[1];
  const sdk = scripts.filter((f) => f !== entry && readFileSync(join(dist, "assets", f), "utf8").includes("portcullis_js_bg"));
  assert.equal(sdk.length, 1, `the engine's chunk: ${scripts}`);
  assert.ok(!readFileSync(join(dist, "assets", entry), "utf8").includes("RawEngine"), "the entry chunk does not hold the engine's glue");
  const size = (f) => {
    const bytes = readFileSync(join(dist, "assets", f));
    return { file: f, bytes: statSync(join(dist, "assets", f)).size, gzip: gzipSync(bytes, { level: 9 }).length };
  };
  const sizes = { entry: size(entry), engineChunk: size(sdk[0]), wasm: size(wasm[0]) };
  writeFileSync(join(app, "sizes.json"), `${JSON.stringify(sizes, null, 2)}\n`);
  console.log(`react app: entry ${sizes.entry.bytes} B (${sizes.entry.gzip} gzip), engine chunk ${sizes.engineChunk.bytes} B (${sizes.engineChunk.gzip} gzip), wasm ${sizes.wasm.bytes} B (${sizes.wasm.gzip} gzip)`);
});

test("<Can> renders allowed actions' children and denied ones' fallback, in Chromium", async () => {
  const { server, url } = await startServer({ root: dist });
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const problems = [];
  const requests = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()}`));
  page.on("request", (req) => requests.push(new URL(req.url()).pathname));
  try {
    await page.goto(new URL("/", url).href);
    const outcome = async (id) => {
      await page.waitForSelector(`#${id}-allowed, #${id}-denied`, { timeout: 30_000 });
      return (await page.$(`#${id}-allowed`)) !== null ? "allowed" : "denied";
    };
    const expected = {
      "view-finance": "allowed", // analyst-view-own-department
      "view-sales": "denied", // another department
      "export-finance": "allowed", // with MFA
      "manage-user": "denied", // not a tenant admin
      tampered: "denied", // bad signature
      "no-token": "denied",
      "signed-out": "denied",
      broken: "denied", // the bundle did not load
    };
    const got = {};
    for (const id of Object.keys(expected)) got[id] = await outcome(id);
    assert.deepEqual(got, expected);

    await page.waitForSelector('#hook[data-loading="false"]');
    assert.deepEqual(JSON.parse(await page.textContent("#hook")), {
      allowed: true, loading: false, reasons: ["analyst-export-own-department"], decision: "allow", error: null,
    });
    await page.waitForSelector('#broken-hook[data-loading="false"]');
    const broken = JSON.parse(await page.textContent("#broken-hook"));
    assert.deepEqual(broken, { allowed: false, loading: false, reasons: null, decision: null, error: "bundle_invalid" });

    // A fresh token was decided after its signature check (WebCrypto is asynchronous): loading
    // first, then the outcome; never a fallback before an allowed action's children.
    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.indexOf("view-finance-loading") >= 0, seen.join());
    assert.ok(seen.indexOf("view-finance-loading") < seen.indexOf("view-finance-allowed"), seen.join());
    for (const id of ["view-finance", "export-finance"]) assert.ok(!seen.includes(`${id}-denied`), `${id}: ${seen.join()}`);
    for (const id of ["view-sales", "manage-user", "tampered", "signed-out", "broken"]) {
      assert.ok(!seen.includes(`${id}-allowed`), `${id}: ${seen.join()}`);
    }

    // Five hooks ask about the analyst's token, one about the tampered one: one check each.
    assert.equal(await page.evaluate(() => window.verifies), 2);

    // Mounted once the token is verified: decided during the render (decideSync), no loading.
    await page.click("#more");
    assert.equal(await outcome("later"), "allowed");
    assert.equal(await outcome("later-sales"), "denied");
    const after = await page.evaluate(() => window.seen);
    assert.ok(!after.includes("later-loading") && !after.includes("later-sales-loading"), after.join());

    assert.ok(requests.some((p) => /\/assets\/portcullis_js_bg-.*\.wasm$/.test(p)), requests.join());
    assert.deepEqual(problems, []);
    await page.screenshot({ path: join(app, "react-app.png"), fullPage: true });
  } finally {
    await page.close();
    server.close();
  }
});

test("server-side rendering in Node: with node:crypto, <Can> decides during the render", () => {
  // The app's own Node script, with the installed package: `engine` loaded up front, as a
  // server renders with one; node:crypto checks signatures on the calling thread.
  writeFileSync(join(app, "ssr.mjs"), `
import { readFileSync } from "node:fs";
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { Portcullis } from "portcullis";
import { Can, PortcullisProvider } from "portcullis/react";
const { bundle, tokens } = JSON.parse(readFileSync("./public/fixture.json", "utf8"));
const engine = await Portcullis.load(bundle);
const report = (department) => ({ type: "Report", id: "acme/q3-" + department, attrs: { tenant: "acme", department } });
const gate = (id, action, resource) => h(Can, { action, resource, fallback: "[" + id + " denied]", loading: "[" + id + " loading]" }, "[" + id + " allowed]");
console.log(renderToString(h(PortcullisProvider, { engine, token: tokens.analyst },
  gate("view", "view", report("finance")), gate("sales", "view", report("sales")), gate("export", "export", report("finance")))));
console.log(renderToString(h(PortcullisProvider, { bundle, token: tokens.analyst }, gate("unloaded", "view", report("finance")))));
`);
  const [engineHtml, bundleHtml] = execFileSync(process.execPath, ["ssr.mjs"], { cwd: app, encoding: "utf8" }).trim().split("\n");
  assert.equal(engineHtml.replaceAll("<!-- -->", ""), "[view allowed][sales denied][export allowed]");
  // A provider that loads its bundle does so in an effect, which a server render never runs.
  assert.equal(bundleHtml, "[unloaded loading]");
});
