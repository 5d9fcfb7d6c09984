// The Cedar integration corpus (cedar-policy/cedar-integration-tests) through the SDK's
// trusted-principal path, `decideTrusted`, with the native runner's expectations
// (tests/conformance/src/cedar_corpus.rs): for each test file, policy validation must succeed iff
// `shouldValidate` (35 generated files validate since cedar-policy/cedar#2545, which the native
// runner checks one by one with Cedar's validator and this runner pins by count); then every
// request must give the expected decision, the expected set of reason policy ids and the
// expected set of erroring policy ids, and never a request error.
//
// Data: cedar-corpus-tests.tar.gz and cedar-handwritten-tests.tar.gz in the conformance folder
// ($PORTCULLIS_CONFORMANCE_DIR, default ../shared/conformance from the repository root). Missing
// data is a failure, never a silent pass.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseLossless } from "./lossless-json.mjs";
import { conformanceDir, fixedClock, sdk } from "./support.mjs";

const { Portcullis } = await sdk();

const CORPUS_REQUESTS = 62_472;
const HANDWRITTEN_REQUESTS = 74;
const VALIDATES_SINCE_CEDAR_2545 = 35;
const SHOWN_FAILURES = 20;

let root;

before(() => {
  assert.ok(
    existsSync(conformanceDir),
    `conformance data folder \`${conformanceDir}\` not found: set PORTCULLIS_CONFORMANCE_DIR`,
  );
  root = mkdtempSync(join(tmpdir(), "portcullis-js-cedar-corpus-"));
  for (const archive of ["cedar-corpus-tests.tar.gz", "cedar-handwritten-tests.tar.gz"]) {
    const path = join(conformanceDir, archive);
    assert.ok(existsSync(path), `conformance archive \`${path}\` is missing`);
    execFileSync("tar", ["-xzf", path, "-C", root]);
  }
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Test files (`*.json`, not `*.entities.json`) directly in `dir`, sorted. */
function testFiles(dir) {
  return readdirSync(dir)
    .filter((n) => n.endsWith(".json") && !n.endsWith(".entities.json"))
    .sort()
    .map((n) => join(dir, n));
}

/** `{type, id}` or `{"__entity": {type, id}}`, as the reference harness accepts. */
function entityRef(value) {
  const inner = value?.__entity ?? value;
  if (typeof inner?.type !== "string" || typeof inner?.id !== "string") {
    throw new Error(`not an entity reference: ${JSON.stringify(value)}`);
  }
  return { type: inner.type, id: inner.id };
}

function bundleFor(test, schema, policies, entities, validate) {
  return {
    format: "portcullis.bundle/v1",
    settings: { validate_policies: validate, require_policy_ids: false },
    schema,
    policies: [{ file: test.policies, source: policies }],
    entities,
  };
}

const sortedSet = (xs) => JSON.stringify([...new Set(xs)].sort());

async function runFile(path, totals) {
  const name = path.slice(root.length + 1);
  // Lossless: the corpus uses 64-bit integer extremes, which the SDK takes as BigInt.
  const test = parseLossless(readFileSync(path, "utf8"));
  totals.requests += test.requests.length;
  const read = (rel) => readFileSync(join(root, rel), "utf8");
  const schema = read(test.schema);
  const looksJson = schema.trimStart().startsWith("{");
  if (looksJson !== test.schema.endsWith(".json")) {
    totals.failures.push(`${name}: schema \`${test.schema}\` would be read as the wrong syntax`);
    return;
  }
  const policies = read(test.policies);
  const entities = parseLossless(read(test.entities));

  // Validation, as the reference harness checks it.
  let validated = null;
  try {
    (await Portcullis.load(bundleFor(test, schema, policies, entities, true))).dispose();
    validated = true;
  } catch (err) {
    if (err?.code !== "bundle_invalid") throw err;
    validated = err.problems.every((p) => p.code === "policy_validation") ? false : err;
  }
  if (validated === true && test.shouldValidate) totals.validationAgreed += 1;
  else if (validated === true) totals.validatesSince2545 += 1;
  else if (validated === false && !test.shouldValidate) totals.validationAgreed += 1;
  else {
    totals.failures.push(`${name}: shouldValidate is ${test.shouldValidate} but loading with validation failed: ${validated === false ? "policy_validation" : validated.message}`);
  }

  let engine;
  try {
    engine = await Portcullis.load(bundleFor(test, schema, policies, entities, false), { now: fixedClock(0) });
  } catch (err) {
    totals.failures.push(`${name}: bundle does not load: ${err.message}`);
    return;
  }
  try {
    test.requests.forEach((request, index) => {
      const trusted = {
        principal: entityRef(request.principal),
        action: entityRef(request.action),
        resource: entityRef(request.resource),
        context: request.context,
      };
      const decision = engine.decideTrusted(trusted);
      const reasons = sortedSet(decision.reasons);
      const erroring = sortedSet(decision.errors.filter((e) => e.policy !== undefined).map((e) => e.policy));
      const requestErrors = decision.errors.filter((e) => e.policy === undefined).map((e) => `${e.code}: ${e.message}`);
      const agrees = (decision.decision === "allow") === (request.decision === "allow")
        && reasons === sortedSet(request.reason)
        && erroring === sortedSet(request.errors)
        && requestErrors.length === 0;
      if (agrees) {
        totals.agreed += 1;
      } else {
        totals.failures.push(
          `${name} request ${index} (${JSON.stringify(request.description)}): expected ${request.decision} reasons ${sortedSet(request.reason)} errors ${sortedSet(request.errors)}; `
          + `SDK said ${decision.decision} reasons ${reasons} errors ${erroring}`
          + (requestErrors.length > 0 ? `; request rejected: ${requestErrors.join("; ")}` : ""),
        );
      }
    });
  } finally {
    engine.dispose();
  }
}

async function runAll(files) {
  const totals = { files: files.length, requests: 0, agreed: 0, validationAgreed: 0, validatesSince2545: 0, failures: [] };
  for (const file of files) await runFile(file, totals);
  return totals;
}

function report(label, totals, seconds) {
  console.log(
    `${label}: ${totals.agreed}/${totals.requests} requests agree; shouldValidate agrees for `
    + `${totals.validationAgreed}/${totals.files} files, ${totals.validatesSince2545} more validate since `
    + `cedar-policy/cedar#2545 (${seconds.toFixed(1)}s)`,
  );
  assert.deepEqual(totals.failures.slice(0, SHOWN_FAILURES), [], `${totals.failures.length} disagreements`);
  assert.equal(totals.agreed, totals.requests);
  assert.equal(totals.validationAgreed + totals.validatesSince2545, totals.files);
}

test("Cedar corpus: every request agrees with the reference answers", async () => {
  const started = performance.now();
  const totals = await runAll(testFiles(join(root, "corpus-tests")));
  report("cedar corpus", totals, (performance.now() - started) / 1000);
  assert.equal(totals.requests, CORPUS_REQUESTS, "requests in the generated corpus");
  assert.equal(totals.validatesSince2545, VALIDATES_SINCE_CEDAR_2545, "files that validate since cedar-policy/cedar#2545");
});

test("Cedar hand-written tests: every request agrees", async () => {
  const started = performance.now();
  const dir = join(root, "tests");
  const files = readdirSync(dir)
    .map((g) => join(dir, g))
    .filter((p) => statSync(p).isDirectory())
    .sort()
    .flatMap(testFiles);
  const totals = await runAll(files);
  report("cedar handwritten", totals, (performance.now() - started) / 1000);
  assert.equal(totals.requests, HANDWRITTEN_REQUESTS, "requests in the hand-written tests");
  assert.equal(totals.validatesSince2545, 0);
});
