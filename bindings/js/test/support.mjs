// Shared test setup: paths, and the artifacts the tests need that only the Rust tools make
// (compiled bundles, the conformance export, development tokens). `prepare.mjs` makes them all
// up front (test.sh runs it); each test also makes what is missing, so `node --test` works alone.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const jsDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const repoRoot = resolve(jsDir, "../..");
export const artifacts = join(jsDir, "test-artifacts");
export const pkgDir = join(jsDir, "pkg");

/** Debian's Chromium (test.sh installs it), or `$CHROMIUM_PATH`. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** The conformance data folder (Cedar corpus): `$PORTCULLIS_CONFORMANCE_DIR` or `../shared/conformance`. */
export const conformanceDir = process.env.PORTCULLIS_CONFORMANCE_DIR
  ? resolve(process.env.PORTCULLIS_CONFORMANCE_DIR)
  : resolve(repoRoot, "../shared/conformance");

/** Already built CLIs (scripts/test.sh passes the ones its `cargo test` built). */
const prebuilt = { portcullis: process.env.PORTCULLIS_BIN, "portcullis-conformance": process.env.CONFORMANCE_BIN };

/** Run `cargo run -q -p <pkg> -- <args>` (or the prebuilt CLI) at the repository root; returns stdout. */
export function cargoRun(pkg, args) {
  const bin = prebuilt[pkg];
  const [cmd, argv] = bin ? [bin, args] : ["cargo", ["run", "-q", "--locked", "-p", pkg, "--", ...args]];
  return execFileSync(cmd, argv, {
    cwd: repoRoot,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function artifactPath(name) {
  mkdirSync(artifacts, { recursive: true });
  return join(artifacts, name);
}

/** The compiled bundle of a bundle directory (relative to the repository root), as text. */
export function compiledBundle(dir, { fresh = false } = {}) {
  const file = artifactPath(`bundle-${dir.replace(/[^A-Za-z0-9]+/g, "_")}.json`);
  if (fresh || !existsSync(file)) {
    cargoRun("portcullis", ["bundle", dir, "-o", file]);
  }
  return readFileSync(file, "utf8");
}

/** The resolved conformance cases (`portcullis-conformance export`). */
export function conformanceExport({ fresh = false } = {}) {
  const file = artifactPath("conformance-export.json");
  if (fresh || !existsSync(file)) {
    cargoRun("portcullis-conformance", ["export", "--out", file]);
  }
  return JSON.parse(readFileSync(file, "utf8"));
}

/**
 * Check a host's answers to the HTTP conformance cases (`{"<file>: <name>": answer}`) with the
 * conformance crate's checker, the one every Rust runner uses. Returns the checker's report;
 * `ok` is false when a case failed.
 */
export function checkHttpAnswers(answers, label) {
  const file = artifactPath(`http-answers-${label.replace(/[^A-Za-z0-9]+/g, "_")}.json`);
  writeFileSync(file, JSON.stringify(answers, null, 2));
  try {
    return { ok: true, report: cargoRun("portcullis-conformance", ["check-http", "--answers", file]) };
  } catch (err) {
    return { ok: false, report: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

/** The answer (for `checkHttpAnswers`) of an SDK `decideHttp` verdict. */
export function httpAnswer(verdict) {
  const d = verdict.decision;
  return {
    status: verdict.forward ? 200 : verdict.status,
    identity: verdict.forward ? verdict.identity : {},
    code: verdict.forward ? null : verdict.body.code,
    challenge: verdict.forward ? null : (verdict.headers["www-authenticate"] ?? null),
    decision: d ? { decision: d.decision, reasons: d.reasons, errors: d.errors.map((e) => e.code), decision_id: d.decisionId } : null,
  };
}

/**
 * Development tokens of the TechFin bundle, minted with `portcullis token` at `now`
 * (unix seconds) and cached by name. `specs`: {name: {tenant, claims, ttl?, issuer?}}.
 */
export function devTokens(setName, now, specs, { fresh = false } = {}) {
  const file = artifactPath(`tokens-${setName}.json`);
  if (!fresh && existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, "utf8"));
    if (cached.now === now && JSON.stringify(cached.specs) === JSON.stringify(specs)) return cached.tokens;
  }
  const tokens = {};
  for (const [name, spec] of Object.entries(specs)) {
    const args = ["token", "--bundle", "policies/techfin", "--tenant", spec.tenant, "--now", String(now),
      "--ttl", String(spec.ttl ?? 3600), "--claims", JSON.stringify(spec.claims ?? {})];
    if (spec.issuer !== undefined) args.push("--issuer", String(spec.issuer));
    tokens[name] = cargoRun("portcullis", args).trim();
  }
  writeFileSync(file, JSON.stringify({ now, specs, tokens }, null, 2));
  return tokens;
}

/** The package as a consumer imports it. */
export async function sdk() {
  if (!existsSync(join(pkgDir, "portcullis_js_bg.wasm"))) {
    throw new Error("bindings/js/pkg is not built: run bindings/js/build.sh");
  }
  return import(join(pkgDir, "portcullis.js"));
}

/** A clock fixed at `seconds` (what `Portcullis.load` takes as `now`). */
export function fixedClock(seconds) {
  return () => seconds * 1000;
}

const STATUS = { allow: 200, deny: 403, unauthenticated: 401 };

/** Every difference between `decision` and the case's expectation (as `ResolvedCase::check_json`). */
export function differences(expect, decision) {
  const problems = [];
  if (decision.decision !== expect.decision) {
    problems.push(`expected ${expect.decision}, got ${decision.decision}`);
  } else if (decision.status !== STATUS[expect.decision]) {
    problems.push(`expected status ${STATUS[expect.decision]}, got ${decision.status}`);
  }
  if (decision.decision === "unauthenticated" && decision.principal != null) {
    problems.push("an unauthenticated decision names a principal");
  }
  if (expect.reasons !== undefined) {
    const want = [...new Set(expect.reasons)].sort();
    const got = [...new Set(decision.reasons)].sort();
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      problems.push(`expected reasons ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
  }
  if (expect.principal !== undefined) {
    const p = decision.principal ?? {};
    const { kind, id, roles } = expect.principal;
    if (kind !== undefined && p.kind !== kind) problems.push(`expected a ${kind} principal, got ${p.kind}`);
    if (id !== undefined && p.id !== id) problems.push(`expected principal id \`${id}\`, got ${p.id}`);
    if (roles !== undefined && JSON.stringify([...new Set(roles)].sort()) !== JSON.stringify([...new Set(p.roles ?? [])].sort())) {
      problems.push(`expected roles ${JSON.stringify(roles)}, got ${JSON.stringify(p.roles)}`);
    }
  }
  if (expect.error !== undefined && !decision.errors.some((e) => e.code === expect.error)) {
    problems.push(`expected error \`${expect.error}\``);
  }
  if (problems.length > 0) {
    problems.push(`errors: ${JSON.stringify(decision.errors.map((e) => `${e.code}: ${e.message}`))}`);
  }
  return problems;
}

// Headless Chromium for the browser tests.
//
// Chromium 156 (Debian) once died of SIGSEGV at start-up on a CI machine, before loading any page,
// and never on this one: a start that fails is retried, each failure reported in full, the
// later attempts without the zygote process (a common cause of start-up crashes in containers)
// and then in one process; three failures fail the suite. Only the launch is retried, never a
// check.
const LAUNCH_ATTEMPTS = [[], ['--no-zygote'], ['--no-zygote', '--single-process']];

export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  const failures = [];
  for (const [i, extra] of LAUNCH_ATTEMPTS.entries()) {
    try {
      return await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync", ...extra],
      });
    } catch (err) {
      console.error(`Chromium did not start (attempt ${i + 1} of ${LAUNCH_ATTEMPTS.length}, extra flags: ${extra.join(" ") || "none"}):\n${err.message}`);
      failures.push(err.message.split("\n")[0]);
    }
  }
  throw new Error(`Chromium did not start in ${LAUNCH_ATTEMPTS.length} attempts: ${failures.join("; ")}`);
}

/**
 * The package as `npm pack` makes it: `bindings/js/pack.sh --no-build` into
 * test-artifacts/pack/ (test.sh packs before the tests), packed again when it is older than
 * bindings/js/pkg. Returns the tarball's path.
 */
export function packedTarball() {
  const dir = artifactPath("pack");
  const built = Math.max(...readdirSync(pkgDir).map((f) => statSync(join(pkgDir, f)).mtimeMs));
  const found = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".tgz")) : [];
  if (found.length === 1 && statSync(join(dir, found[0])).mtimeMs >= built) return join(dir, found[0]);
  rmSync(dir, { recursive: true, force: true });
  const out = execFileSync(join(jsDir, "pack.sh"), ["--no-build", "--out", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return out.trim().split("\n").at(-1);
}

/** `npm install` of `tarball` into `dir` (a project with a package.json), offline: the package has no dependencies. */
export function npmInstall(dir, tarball) {
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", tarball], {
    cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
  });
}

/**
 * The TechFin pack with its reports' facts given by the request rather than stored: the pack
 * without `bundle.json`, which declares the stored types (and with routes that give a report's
 * tenant from the path). For the tests of the SDK's own
 * mechanics (signatures, keys, clocks, caches, batches), which give a report's department with
 * each request; the stored-data path is the conformance cases' and the data tests'.
 */
export function requestFactsBundle({ fresh = false } = {}) {
  const dir = artifactPath("techfin-request-facts");
  if (fresh || !existsSync(dir)) {
    rmSync(dir, { recursive: true, force: true });
    execFileSync("cp", ["-r", join(repoRoot, "policies/techfin"), dir]);
    rmSync(join(dir, "bundle.json"));
    // With nothing stored, the routes give a report its tenant from the path, as they did.
    const routesFile = join(dir, "routes.json");
    const routes = JSON.parse(readFileSync(routesFile, "utf8"));
    for (const route of routes.routes) {
      if (route.resource.type === "Report") route.resource.attrs = { tenant: "{tenant}" };
    }
    writeFileSync(routesFile, JSON.stringify(routes));
  }
  return compiledBundle(dir, { fresh });
}
