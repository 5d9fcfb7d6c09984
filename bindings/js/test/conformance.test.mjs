// The cross-host conformance cases (tests/conformance/) through the JS SDK, with the same
// expectations as the native runner: decision, HTTP status, the set of reasons, the expected
// error code among `errors[].code`, no principal when unauthenticated. Like the native runner,
// one engine per case file, and every case decided twice (the second time from the token cache).
// Cases marked `known_issue` are reported as TODO, and fail if they start passing.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import { checkHttpAnswers, compiledBundle, conformanceExport, differences, fixedClock, httpAnswer, sdk } from "./support.mjs";

const { Portcullis } = await sdk();
const document = conformanceExport();
assert.equal(document.format, "portcullis-conformance/1", "export format");
assert.ok(document.cases.length > 0, "the export has cases");

/** An engine for `bundle` holding the cases' stored data for it (one snapshot per tenant). */
async function load(bundle, options) {
  const engine = await Portcullis.load(compiledBundle(bundle), options);
  for (const data of document.data?.[bundle] ?? []) engine.loadTenantData(data);
  return engine;
}

/**
 * WebCrypto with a record of what it did, to show that signatures really went through it (where
 * the host's crypto throws, the token is refused with `token_crypto`, and the case fails).
 */
function recordingSubtle() {
  const real = globalThis.crypto.subtle;
  const record = { verifies: 0, failures: [] };
  const subtle = {
    async importKey(...args) {
      try {
        return await real.importKey(...args);
      } catch (err) {
        record.failures.push(`importKey ${args[2]?.name}: ${err}`);
        throw err;
      }
    },
    async verify(params, ...rest) {
      record.verifies += 1;
      try {
        return await real.verify(params, ...rest);
      } catch (err) {
        record.failures.push(`verify ${params?.name}: ${err}`);
        throw err;
      }
    },
  };
  return { options: { subtle }, record };
}

/** node:crypto with a record of what it did (the SDK's default in Node). */
function recordingNodeCrypto() {
  const record = { verifies: 0, failures: [] };
  const recorded = (name, fn) => (...args) => {
    if (name !== "createPublicKey" && name !== "createSecretKey") record.verifies += 1;
    try {
      return fn(...args);
    } catch (err) {
      record.failures.push(`${name}: ${err}`);
      throw err;
    }
  };
  const nodeCrypto = {
    constants: crypto.constants,
    timingSafeEqual: crypto.timingSafeEqual,
    createPublicKey: recorded("createPublicKey", crypto.createPublicKey),
    createSecretKey: recorded("createSecretKey", crypto.createSecretKey),
    createHmac: recorded("createHmac", crypto.createHmac),
    verify: recorded("verify", crypto.verify),
  };
  return { options: { nodeCrypto }, record };
}

// Signatures checked by node:crypto (the SDK's default in Node) and by WebCrypto (the browsers').
const MODES = [
  { label: "node:crypto", crypto: () => recordingNodeCrypto() },
  { label: "WebCrypto", crypto: () => recordingSubtle() },
];

const files = new Map();
for (const c of document.cases) {
  if (!files.has(c.file)) files.set(c.file, []);
  files.get(c.file).push(c);
}

for (const mode of MODES) for (const [file, cases] of files) {
  describe(`conformance ${file} (${mode.label})`, () => {
    const engines = new Map();
    const { options, record } = mode.crypto();
    before(async () => {
      for (const c of cases) {
        const key = `${c.bundle}@${c.now}`;
        if (!engines.has(key)) {
          engines.set(key, await load(c.bundle, { now: fixedClock(c.now), ...options }));
        }
      }
    });
    if (record !== null) {
      after(() => {
        if (record.failures.length > 0) {
          console.log(`${file}: ${mode.label} threw ${record.failures.length} times (those tokens were refused):\n  ${record.failures.join("\n  ")}`);
        }
        assert.ok(record.verifies > 0, `${mode.label} verified signatures`);
      });
    }

    for (const c of cases) {
      test(c.name, async (t) => {
        const engine = engines.get(`${c.bundle}@${c.now}`);
        const request = { ...c.request, token: c.token };
        const problems = [];
        const first = await engine.decide(request);
        problems.push(...differences(c.expect, first));
        const second = await engine.decide(request);
        problems.push(...differences(c.expect, second).map((p) => `on the second (cached) decision: ${p}`));
        if (c.known_issue !== undefined) {
          assert.ok(problems.length > 0, `passes although marked as known issue \`${c.known_issue}\`: remove \`known_issue\``);
          t.todo(`known engine issue: ${c.known_issue}`);
        }
        assert.deepEqual(problems, []);
      });
    }
  });
}

// The HTTP-request cases through `decideHttp`, with each file's edge options: every case
// answered twice (the second time from the token cache), both rounds checked by the
// conformance crate's own checker.
assert.ok(Array.isArray(document.http_cases) && document.http_cases.length > 30, "the export has HTTP cases");
for (const mode of MODES) {
  test(`HTTP conformance cases through decideHttp (${mode.label})`, async () => {
    const { options } = mode.crypto();
    const engines = new Map();
    const rounds = [{}, {}];
    for (const c of document.http_cases) {
      const key = `${c.file}@${c.now}`;
      if (!engines.has(key)) {
        engines.set(key, await load(c.bundle, { now: fixedClock(c.now), edge: c.edge, ...options }));
      }
      for (const answers of rounds) {
        const verdict = await engines.get(key).decideHttp(c.request);
        if (c.token && JSON.stringify(verdict).includes(c.token)) assert.fail(`${c.name}: the verdict holds the token`);
        answers[`${c.file}: ${c.name}`] = httpAnswer(verdict);
      }
    }
    rounds.forEach((answers, i) => {
      const { ok, report } = checkHttpAnswers(answers, `${mode.label}-${i}`);
      assert.ok(ok, `round ${i + 1}:\n${report}`);
      assert.match(report, /0 failed/);
    });
  });
}

describe("conformance in batches", () => {
  // The batch path must agree with single decisions: every case with a token, one batch per
  // (file, token), on one engine per file (each token's signature is checked once, for its batch).
  test("decideMany agrees with the expectations", async () => {
    const groups = new Map();
    for (const c of document.cases) {
      if (c.known_issue !== undefined) continue;
      const key = `${c.file}\u0000${c.bundle}\u0000${c.now}\u0000${c.token}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    const problems = [];
    const engines = new Map();
    for (const group of groups.values()) {
      const { bundle, now, token, file } = group[0];
      if (!engines.has(file)) {
        engines.set(file, await load(bundle, { now: fixedClock(now) }));
      }
      const decisions = await engines.get(file).decideMany({ token, requests: group.map((c) => c.request) });
      assert.equal(decisions.length, group.length);
      group.forEach((c, i) => {
        for (const p of differences(c.expect, decisions[i])) problems.push(`${c.file}: ${c.name}: ${p}`);
      });
    }
    assert.deepEqual(problems, []);
  });
});
