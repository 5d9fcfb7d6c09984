// The SDK's own behaviour: the API shape (camelCase objects, errors with codes), the
// signature path (node:crypto, WebCrypto, neither; the token cache and its absence), key
// handling (setIssuerKeys, the fetch helper with refetch on unknown kid and cooldown, keys
// replaced while a signature is being checked), BigInt values, the clock, dispose.

import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compiledBundle, requestFactsBundle, conformanceExport, fixedClock, repoRoot, sdk } from "./support.mjs";

const { Portcullis, PortcullisError, BundleError, TokenError, KeyError, RequestError, initialize } = await sdk();

// These tests exercise the SDK's own mechanics on the pack with request-given facts
// (`requestFactsBundle`): each case's report gets, in the request, the facts the conformance
// data stores for it.
const exported = conformanceExport();
const facts = new Map(
  (exported.data?.["policies/techfin"] ?? []).flatMap((doc) =>
    doc.entities.filter((e) => e.uid.type === "Report").map((e) => [e.uid.id, { tenant: doc.tenant, ...e.attrs }]),
  ),
);
const withFacts = (c) => {
  const resource = c.request.resource;
  if (resource.type !== "Report" || Object.keys(resource.attrs ?? {}).length > 0 || !facts.has(resource.id)) return c;
  return { ...c, request: { ...c.request, resource: { ...resource, attrs: facts.get(resource.id) } } };
};
const cases = exported.cases.map(withFacts);
const byName = (name) => {
  const found = cases.find((c) => c.name === name);
  assert.ok(found, `conformance case \`${name}\``);
  return found;
};
const NOW = byName("acme (RS256, Entra): analyst views a report of her department").now;
const bundleText = requestFactsBundle();
const bundle = () => JSON.parse(bundleText);

const analyst = byName("acme (RS256, Entra): analyst views a report of her department");
const ANALYST = analyst.token;
const REPORT = analyst.request.resource;
const OTHER_DEPT = byName("acme: analyst cannot view a report of another department").request.resource;
const UMBRELLA = cases.find((c) => c.name.startsWith("umbrella") && c.expect.decision === "allow");
const GLOBEX = cases.find((c) => c.name.startsWith("globex") && c.expect.decision === "allow");
const INITECH = cases.find((c) => c.name.startsWith("initech") && c.expect.decision === "allow");
const UNKNOWN_KID = byName("unknown kid").token;
const ACME_ISSUER = bundle().tenants.acme.issuers[0].issuer;
const ACME_JWKS = JSON.parse(readFileSync(join(repoRoot, "policies/techfin/dev-keys/acme-rs256.jwks.json"), "utf8"));
const OTHER_RSA_JWKS = JSON.parse(readFileSync(join(repoRoot, "policies/techfin/dev-keys/auth0-rs256.jwks.json"), "utf8"));

const load = (options = {}, b = bundleText) => Portcullis.load(b, { now: fixedClock(NOW), ...options });

/** WebCrypto that counts what it is asked to do, and can refuse algorithms. */
function countingSubtle({ refuse = [] } = {}) {
  const real = globalThis.crypto.subtle;
  const counts = { importKey: 0, verify: 0 };
  return {
    counts,
    async importKey(format, key, alg, ...rest) {
      counts.importKey += 1;
      if (refuse.includes(alg.name)) throw new DOMException(`${alg.name} is not supported`, "NotSupportedError");
      return real.importKey(format, key, alg, ...rest);
    },
    async verify(...args) {
      counts.verify += 1;
      return real.verify(...args);
    },
  };
}

/** The TechFin bundle with acme's keys coming from the network instead of inline. */
function remoteAcmeBundle(source, settings) {
  const b = bundle();
  const issuer = b.tenants.acme.issuers[0];
  delete issuer.jwks;
  Object.assign(issuer, source);
  if (settings) b.settings.tokens = { ...b.settings.tokens, ...settings };
  b.revision = "";
  return b;
}

describe("loading", () => {
  test("a bundle as an object or as JSON text, with its revision", async () => {
    const fromText = await load();
    const fromObject = await Portcullis.load(bundle(), { now: fixedClock(NOW) });
    assert.equal(fromText.revision, bundle().revision);
    assert.equal(fromObject.revision, fromText.revision);
    assert.deepEqual(fromText.remoteIssuers(), []);
  });

  test("a bad bundle is a BundleError with every problem", async () => {
    const b = bundle();
    b.policies.push({ file: "policies/broken.cedar", source: "permit(principal, action, resource" });
    b.policies.push({ file: "policies/noid.cedar", source: "permit(principal, action, resource);" });
    b.revision = "";
    const err = await Portcullis.load(b).catch((e) => e);
    assert.ok(err instanceof BundleError && err instanceof PortcullisError && err instanceof Error);
    assert.equal(err.code, "bundle_invalid");
    assert.ok(err.problems.length >= 1);
    assert.ok(err.problems.every((p) => typeof p.code === "string" && typeof p.message === "string"));
    assert.ok(err.problems.some((p) => p.location?.file === "policies/broken.cedar"), JSON.stringify(err.problems));
  });

  test("an edited bundle fails its revision check; not JSON is a json problem", async () => {
    const b = bundle();
    b.entities = [{ uid: { type: "Role", id: "Sneaky" }, attrs: {}, parents: [] }];
    const err = await Portcullis.load(b).catch((e) => e);
    assert.equal(err.code, "bundle_invalid");
    assert.equal(err.problems[0].code, "revision");
    const bad = await Portcullis.load("{not json").catch((e) => e);
    assert.equal(bad.problems[0].code, "json");
  });

  test("initialize is idempotent and the constructor is not public", async () => {
    await initialize();
    await initialize();
    assert.throws(() => new Portcullis(), TypeError);
  });
});

describe("decide", () => {
  let engine;
  let subtle;
  before(async () => {
    subtle = countingSubtle();
    engine = await load({ subtle });
  });

  test("decisions on one new token at the same time check its signature once", async () => {
    const counting = countingSubtle();
    const fresh = await load({ subtle: counting });
    const decisions = await Promise.all(
      Array.from({ length: 5 }, () => fresh.decide({ token: ANALYST, action: "view", resource: REPORT })),
    );
    assert.deepEqual(decisions.map((d) => d.decision), ["allow", "allow", "allow", "allow", "allow"]);
    assert.equal(counting.counts.verify, 1, "one WebCrypto check for five decisions");
    // A forged token, five times at once: one check, five refusals.
    const forged = `${ANALYST.slice(0, ANALYST.lastIndexOf(".") + 1)}${"A".repeat(342)}`;
    const refused = await Promise.all(
      Array.from({ length: 5 }, () => fresh.decide({ token: forged, action: "view", resource: REPORT })),
    );
    assert.ok(refused.every((d) => d.decision === "unauthenticated"), JSON.stringify(refused[0].errors));
    assert.equal(counting.counts.verify, 2);
  });

  test("allow, as a plain object with camelCase keys", async () => {
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.decision, "allow");
    assert.equal(d.status, 200);
    assert.deepEqual(d.reasons, ["analyst-view-own-department"]);
    assert.deepEqual(d.errors, []);
    assert.equal(d.revision, engine.revision);
    assert.match(d.decisionId, /^[0-9a-f]{24}$/);
    assert.equal(d.decision_id, undefined);
    assert.deepEqual(d.principal, {
      tenant: "acme", kind: "user", id: "alice", entity: 'User::"acme/alice"', roles: ["FinanceAnalyst"], mfa: false,
    });
    assert.deepEqual(d.request, { action: "view", resource: 'Report::"acme/q3-finance"' });
    assert.equal(Object.getPrototypeOf(d), Object.prototype);
  });

  test("the second decision comes from the token cache: no signature work", async () => {
    const before = { ...subtle.counts };
    assert.ok(engine.cachedTokens >= 1);
    const d = await engine.decide({ token: ANALYST, action: "view", resource: OTHER_DEPT });
    assert.equal(d.decision, "deny");
    assert.equal(d.status, 403);
    assert.deepEqual(subtle.counts, before);
  });

  test("the imported key is cached: a second token of the same issuer verifies without importing", async () => {
    const other = cases.find((c) => c.token !== ANALYST && c.name.startsWith("acme:") && c.expect.decision === "allow");
    const before = { ...subtle.counts };
    const d = await engine.decide({ ...other.request, token: other.token });
    assert.equal(d.decision, "allow");
    assert.equal(subtle.counts.verify, before.verify + 1);
    assert.equal(subtle.counts.importKey, before.importKey);
  });

  test("no token is unauthenticated, never an error", async () => {
    const d = await engine.decide({ action: "view", resource: REPORT });
    assert.equal(d.decision, "unauthenticated");
    assert.equal(d.status, 401);
    assert.equal(d.principal, null);
    assert.equal(d.errors[0].code, "token_missing");
    assert.equal((await engine.decide({ token: null, action: "view", resource: REPORT })).errors[0].code, "token_missing");
  });

  test("a bad signature is unauthenticated (token_signature)", async () => {
    const forged = ANALYST.slice(0, -6) + (ANALYST.endsWith("AAAAAA") ? "BBBBBB" : "AAAAAA");
    const d = await engine.decide({ token: forged, action: "view", resource: REPORT });
    assert.equal(d.decision, "unauthenticated");
    assert.equal(d.errors[0].code, "token_signature");
  });

  test("request problems the engine finds are deny decisions with their code", async () => {
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT, context: { mfa: true } });
    assert.equal(d.decision, "deny");
    assert.equal(d.errors[0].code, "request_context");
    const a = await engine.decide({ token: ANALYST, action: "fly", resource: REPORT });
    assert.equal(a.decision, "deny");
  });

  test("a request without the documented shape is a RequestError", async () => {
    for (const bad of [null, "x", [], { token: ANALYST, resource: REPORT }, { action: "view", resource: REPORT, tokn: "x" }]) {
      const err = await engine.decide(bad).then(() => null, (e) => e);
      assert.ok(err instanceof RequestError, `${JSON.stringify(bad)}: ${err}`);
      assert.equal(err.code, "request_invalid");
    }
  });

  test("every algorithm verifies through WebCrypto", async () => {
    for (const c of [UMBRELLA, GLOBEX, INITECH]) {
      const s = countingSubtle();
      const e = await load({ subtle: s });
      const d = await e.decide({ ...c.request, token: c.token });
      assert.equal(d.decision, "allow", `${c.name}: ${JSON.stringify(d.errors)}`);
      assert.equal(s.counts.verify, 1, c.name);
      e.dispose();
    }
  });

  test("decision ids differ between engines", async () => {
    const other = await load();
    const a = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    const b = await other.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.notEqual(a.decisionId, b.decisionId);
  });
});

describe("decideMany", () => {
  test("one signature check for many requests, decisions in order", async () => {
    const subtle = countingSubtle();
    const engine = await load({ subtle });
    const requests = [
      { action: "view", resource: REPORT },
      { action: "export", resource: REPORT },
      { action: "view", resource: OTHER_DEPT },
      { action: "manage_user", resource: { type: "User", id: "acme/bob", attrs: { tenant: "acme" } } },
    ];
    const ds = await engine.decideMany({ token: ANALYST, requests });
    assert.deepEqual(ds.map((d) => d.decision), ["allow", "deny", "deny", "deny"]);
    assert.deepEqual(ds.map((d) => d.request.action), ["view", "export", "view", "manage_user"]);
    assert.equal(subtle.counts.verify, 1);
    assert.deepEqual(await engine.decideMany({ token: ANALYST, requests: [] }), []);
  });

  test("no token, or a bad one: every decision unauthenticated", async () => {
    const engine = await load();
    const ds = await engine.decideMany({ requests: [{ action: "view", resource: REPORT }, { action: "export", resource: REPORT }] });
    assert.deepEqual(ds.map((d) => d.errors[0].code), ["token_missing", "token_missing"]);
    const bad = await engine.decideMany({ token: UNKNOWN_KID, requests: [{ action: "view", resource: REPORT }] });
    assert.equal(bad[0].errors[0].code, "token_unknown_kid");
  });

  test("malformed batches are RequestErrors", async () => {
    const engine = await load();
    for (const bad of [
      { token: ANALYST },
      { token: ANALYST, requests: [{ token: ANALYST, action: "view", resource: REPORT }] },
      { token: ANALYST, requests: [{ action: "view" }] },
      { token: ANALYST, requests: [], extra: 1 },
    ]) {
      const err = await engine.decideMany(bad).then(() => null, (e) => e);
      assert.ok(err instanceof RequestError, JSON.stringify(bad));
      assert.equal(err.code, "request_invalid");
    }
  });
});

describe("decideSync", () => {
  test("with WebCrypto: null until the token is verified, then decisions without waiting", async () => {
    const subtle = countingSubtle();
    const engine = await load({ subtle });
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }), null);
    assert.deepEqual(subtle.counts, { importKey: 0, verify: 0 }, "decideSync starts no signature check");
    assert.equal(engine.cachedTokens, 0);
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
    const allow = engine.decideSync({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(Object.getPrototypeOf(allow), Object.prototype, "a decision, not a Promise");
    assert.equal(allow.decision, "allow");
    assert.deepEqual(allow.reasons, ["analyst-view-own-department"]);
    assert.equal(allow.principal.id, "alice");
    const deny = engine.decideSync({ token: ANALYST, action: "view", resource: OTHER_DEPT });
    assert.equal(deny.decision, "deny");
    assert.notEqual(deny.decisionId, allow.decisionId);
    assert.equal(subtle.counts.verify, 1, "one signature check, by decide");
  });

  test("a token refused before any signature work is decided at once, also with WebCrypto", async () => {
    const engine = await load({ subtle: countingSubtle() });
    assert.equal(engine.decideSync({ action: "view", resource: REPORT }).errors[0].code, "token_missing");
    assert.equal(engine.decideSync({ token: "not.a.token", action: "view", resource: REPORT }).errors[0].code, "token_malformed");
    const foreign = byName("acme: analyst cannot view a report of another department");
    assert.equal(engine.decideSync({ ...foreign.request, token: UNKNOWN_KID }).errors[0].code, "token_unknown_kid");
    // A forged token: unknown to decideSync until decide checked it; then its rejection is remembered.
    const forged = byName("tampered payload: analyst escalates to TenantAdmin");
    const request = { ...forged.request, token: forged.token };
    assert.equal(engine.decideSync(request), null);
    assert.equal((await engine.decide(request)).errors[0].code, "token_signature");
    const again = engine.decideSync(request);
    assert.equal(again.decision, "unauthenticated");
    assert.equal(again.errors[0].code, "token_signature");
  });

  test("the clock and key changes count: an expired cached token, keys replaced", async () => {
    let clock = NOW * 1000;
    const engine = await Portcullis.load(remoteAcmeBundle({ jwks_uri: "https://login.example/keys" }), {
      now: () => clock, subtle: globalThis.crypto.subtle,
    });
    engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS);
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }).decision, "allow");
    engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS);
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }), null, "new keys forget verified tokens");
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }).decision, "allow");
    clock += 2 * 3600 * 1000;
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }).errors[0].code, "token_expired");
  });

  test("with node:crypto (Node's default) it always answers: the signature is checked on the calling thread", async () => {
    const engine = await load();
    const d = engine.decideSync({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.decision, "allow", JSON.stringify(d.errors));
    assert.equal(engine.cachedTokens, 1);
    const forged = byName("tampered payload: analyst escalates to TenantAdmin");
    assert.equal(engine.decideSync({ ...forged.request, token: forged.token }).errors[0].code, "token_signature");
    for (const c of [UMBRELLA, GLOBEX, INITECH]) {
      assert.equal(engine.decideSync({ ...c.request, token: c.token }).decision, "allow", c.name);
    }
    // Without host crypto, a signed token is refused at once, never allowed.
    const none = await load({ subtle: null });
    const refused = none.decideSync({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(refused.decision, "unauthenticated");
    assert.equal(refused.errors[0].code, "token_crypto");
  });

  test("misuse throws as decide rejects: a request without the documented shape, a disposed engine", async () => {
    const engine = await load({ subtle: globalThis.crypto.subtle });
    assert.throws(() => engine.decideSync({ token: ANALYST, action: "view", resource: REPORT, extra: 1 }),
      (e) => e instanceof RequestError && e.code === "request_invalid");
    assert.throws(() => engine.decideSync("view"), (e) => e instanceof RequestError && e.code === "request_invalid");
    engine.dispose();
    assert.throws(() => engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }), (e) => e.code === "disposed");
  });
});

describe("authenticate", () => {
  test("the mapped principal, camelCase, attributes as mapped", async () => {
    const engine = await load();
    const p = await engine.authenticate(ANALYST);
    assert.equal(p.tenant, "acme");
    assert.equal(p.id, "alice");
    assert.equal(p.issuer, ACME_ISSUER);
    assert.deepEqual(p.roles, ["FinanceAnalyst"]);
    assert.deepEqual(p.attributes, { department: "finance" });
    assert.equal(typeof p.authTime, "number");
    assert.equal(p.auth_time, undefined);
    // Cached now: the same answer without signature work.
    assert.deepEqual(await engine.authenticate(ANALYST), p);
  });

  test("a rejected token is a TokenError with the engine's code", async () => {
    const engine = await load();
    const err = await engine.authenticate(UNKNOWN_KID).catch((e) => e);
    assert.ok(err instanceof TokenError && err instanceof PortcullisError);
    assert.equal(err.code, "token_unknown_kid");
    const sig = await engine.authenticate(byName("tampered signature (RS256)").token).catch((e) => e);
    assert.equal(sig.code, "token_signature");
  });
});

/** node:crypto that counts its signature checks. */
function countingNodeCrypto() {
  const counts = { verify: 0, hmac: 0, keys: 0 };
  return {
    counts,
    constants: nodeCrypto.constants,
    timingSafeEqual: nodeCrypto.timingSafeEqual,
    createPublicKey(...args) {
      counts.keys += 1;
      return nodeCrypto.createPublicKey(...args);
    },
    createSecretKey(...args) {
      counts.keys += 1;
      return nodeCrypto.createSecretKey(...args);
    },
    createHmac(...args) {
      counts.hmac += 1;
      return nodeCrypto.createHmac(...args);
    },
    verify(...args) {
      counts.verify += 1;
      return nodeCrypto.verify(...args);
    },
  };
}

/** Count the calls to the global WebCrypto's `verify` while `fn` runs. */
async function globalWebCryptoVerifies(fn) {
  const subtle = globalThis.crypto.subtle;
  const own = Object.getOwnPropertyDescriptor(subtle, "verify");
  let calls = 0;
  const real = subtle.verify;
  subtle.verify = function (...args) {
    calls += 1;
    return real.apply(this, args);
  };
  try {
    await fn();
  } finally {
    if (own) Object.defineProperty(subtle, "verify", own);
    else delete subtle.verify;
  }
  return calls;
}

describe("signatures with node:crypto (the default in Node)", () => {
  test("every algorithm family verifies through node:crypto, on the calling thread", async () => {
    const counting = countingNodeCrypto();
    const engine = await load({ nodeCrypto: counting });
    const webcrypto = await globalWebCryptoVerifies(async () => {
      for (const c of [analyst, UMBRELLA, GLOBEX, INITECH]) {
        assert.equal((await engine.decide({ ...c.request, token: c.token })).decision, "allow", c.name);
      }
    });
    assert.equal(counting.counts.verify, 4);
    assert.equal(counting.counts.keys, 4);
    assert.equal(webcrypto, 0);
    for (const name of ["tampered signature (RS256)", "tampered signature (ES256)", "tampered signature (PS256)", "tampered signature (EdDSA)"]) {
      const c = byName(name);
      assert.equal((await engine.decide({ ...c.request, token: c.token })).errors[0].code, "token_signature", name);
    }
  });

  test("it is the default: without options, WebCrypto is not used", async () => {
    const engine = await load();
    const c = byName("acme: analyst cannot view a report of another department");
    const webcrypto = await globalWebCryptoVerifies(async () => {
      assert.equal((await engine.decide({ ...c.request, token: c.token })).decision, "deny");
    });
    assert.equal(webcrypto, 0);
  });

  test("an ECDSA signature of the wrong length never reaches node:crypto", async () => {
    const counting = countingNodeCrypto();
    const engine = await load({ nodeCrypto: counting });
    const [header, payload, signature] = GLOBEX.token.split(".");
    const short = `${header}.${payload}.${signature.slice(0, -4)}`;
    const d = await engine.decide({ ...GLOBEX.request, token: short });
    assert.equal(d.errors[0].code, "token_malformed");
    assert.equal(counting.counts.verify, 0);
  });

  test("given `subtle`, WebCrypto is used instead", async () => {
    const subtle = countingSubtle();
    const engine = await load({ subtle });
    assert.equal((await engine.decide({ ...analyst.request, token: analyst.token })).decision, "allow");
    assert.equal(subtle.counts.verify, 1);
  });
});

describe("signatures without host crypto, and without a token cache", () => {
  test("subtle: null: no host crypto, so every signed token is refused (token_crypto), never allowed", async () => {
    const engine = await load({ subtle: null });
    const webcrypto = await globalWebCryptoVerifies(async () => {
      for (const c of [analyst, UMBRELLA, GLOBEX, INITECH]) {
        const d = await engine.decide({ ...c.request, token: c.token });
        assert.equal(d.decision, "unauthenticated", c.name);
        assert.equal(d.errors[0].code, "token_crypto", c.name);
      }
    });
    assert.equal(webcrypto, 0);
    assert.equal(engine.cachedTokens, 0);
    // Checks that need no signature still run first.
    assert.equal((await engine.decide({ ...analyst.request, token: UNKNOWN_KID })).errors[0].code, "token_unknown_kid");
  });

  test("a WebCrypto without Ed25519 refuses EdDSA tokens (token_crypto) and still verifies the others", async () => {
    const subtle = countingSubtle({ refuse: ["Ed25519"] });
    const engine = await load({ subtle });
    const d = await engine.decide({ ...UMBRELLA.request, token: UMBRELLA.token });
    assert.equal(d.decision, "unauthenticated");
    assert.equal(d.errors[0].code, "token_crypto");
    assert.equal(subtle.counts.verify, 0);
    assert.equal((await engine.decide({ ...analyst.request, token: analyst.token })).decision, "allow");
    assert.equal(subtle.counts.verify, 1);
  });

  test("with the token cache off, WebCrypto's verdict still decides", async () => {
    const b = bundle();
    b.settings.tokens.cache_entries = 0;
    b.revision = "";
    const subtle = countingSubtle();
    const engine = await load({ subtle }, b);
    const first = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    const second = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(first.decision, "allow");
    assert.equal(second.decision, "allow");
    assert.equal(engine.cachedTokens, 0);
    assert.equal(subtle.counts.verify, 2);
    const forged = byName("tampered payload: analyst escalates to TenantAdmin");
    const d = await engine.decide({ ...forged.request, token: forged.token });
    assert.equal(d.errors[0].code, "token_signature");
    const many = await engine.decideMany({ token: ANALYST, requests: [{ action: "view", resource: REPORT }, { action: "view", resource: OTHER_DEPT }] });
    assert.deepEqual(many.map((x) => x.decision), ["allow", "deny"]);
  });
});

describe("keys", () => {
  test("setIssuerKeys for a remote issuer; errors are KeyErrors", async () => {
    const engine = await load({}, remoteAcmeBundle({ jwks_uri: "https://login.example/keys" }));
    assert.deepEqual(engine.remoteIssuers(), [{ issuer: ACME_ISSUER, jwksUri: "https://login.example/keys", loaded: false }]);
    const before = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(before.errors[0].code, "token_keys_unavailable");
    assert.equal(engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS), 1);
    assert.equal(engine.remoteIssuers()[0].loaded, true);
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
    const unknown = (() => { try { engine.setIssuerKeys("https://nobody.example", ACME_JWKS); } catch (e) { return e; } })();
    assert.ok(unknown instanceof KeyError);
    assert.equal(unknown.code, "keys_unknown_issuer");
    const invalid = (() => { try { engine.setIssuerKeys(ACME_ISSUER, { keys: "no" }); } catch (e) { return e; } })();
    assert.equal(invalid.code, "keys_invalid");
    const text = (() => { try { engine.setIssuerKeys(ACME_ISSUER, "{"); } catch (e) { return e; } })();
    assert.equal(text.code, "keys_invalid");
    // The good keys stayed.
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
  });

  test("keys replaced while WebCrypto checks a signature: the new keys decide", async () => {
    // WebCrypto answers asynchronously; node:crypto (the default in Node) leaves no such window.
    const engine = await load({ subtle: globalThis.crypto.subtle }, remoteAcmeBundle({ jwks_uri: "https://login.example/keys" }));
    engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS);
    // The signature check is under way when the keys change to a set without the token's key.
    const pending = engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    engine.setIssuerKeys(ACME_ISSUER, OTHER_RSA_JWKS);
    const d = await pending;
    assert.equal(d.decision, "unauthenticated");
    assert.equal(d.errors[0].code, "token_unknown_kid");
    assert.equal(engine.cachedTokens, 0, "a token verified under removed keys is not cached");
    // Re-set to the same keys while pending: still allowed.
    engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS);
    const again = engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    engine.setIssuerKeys(ACME_ISSUER, ACME_JWKS);
    assert.equal((await again).decision, "allow");
  });
});

describe("fetchKeys: OIDC discovery and JWKS over fetch", () => {
  let server;
  let base;
  const state = { jwks: OTHER_RSA_JWKS, issuer: ACME_ISSUER, hits: { discovery: 0, jwks: 0 }, status: 200 };

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === "/.well-known/openid-configuration") {
        state.hits.discovery += 1;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ issuer: state.issuer, jwks_uri: `${base}/keys` }));
      } else if (req.url === "/huge") {
        // Chunked (no Content-Length), and endless unless the client stops reading.
        state.hits.huge += 1;
        res.setHeader("content-type", "application/json");
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        let sent = 0;
        const pump = () => {
          while (sent < 64 << 20) {
            sent += chunk.length;
            if (!res.write(chunk)) return res.once("drain", pump);
          }
          res.end();
        };
        res.on("close", () => { state.sentHuge = sent; });
        pump();
      } else if (req.url === "/keys") {
        state.hits.jwks += 1;
        res.statusCode = state.status;
        res.setHeader("content-type", "application/json");
        if (state.cacheControl) res.setHeader("cache-control", state.cacheControl);
        res.end(JSON.stringify(state.jwks));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${server.address().port}`;
  });

  after(() => server.close());

  test("fetches at load, refetches once on an unknown kid, then respects the cooldown", async () => {
    Object.assign(state, { jwks: OTHER_RSA_JWKS, issuer: ACME_ISSUER, hits: { discovery: 0, jwks: 0 }, status: 200 });
    let clock = NOW * 1000;
    const errors = [];
    const engine = await Portcullis.load(remoteAcmeBundle({ discovery: `${base}/.well-known/openid-configuration` }), {
      now: () => clock,
      fetchKeys: { cooldownMs: 60_000, onError: (e) => errors.push(e) },
    });
    assert.deepEqual(state.hits, { discovery: 1, jwks: 1 });
    assert.equal(engine.remoteIssuers()[0].loaded, true);

    // The IdP rotated to acme's key: past the cooldown since the last fetch (as jose's remote
    // JWK sets count it), a decision that sees an unknown kid refetches.
    state.jwks = ACME_JWKS;
    clock += 61_000;
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.decision, "allow", JSON.stringify(d.errors));
    assert.deepEqual(state.hits, { discovery: 1, jwks: 2 }, "discovery is cached; JWKS fetched again");

    // A token with a kid nobody has: within the cooldown, no fetch.
    const u1 = await engine.decide({ token: UNKNOWN_KID, action: "view", resource: REPORT });
    assert.equal(u1.errors[0].code, "token_unknown_kid");
    assert.equal(u1.keysWanted, ACME_ISSUER, "the decision names the issuer whose keys it lacked");
    assert.equal(d.keysWanted, undefined);
    assert.equal(state.hits.jwks, 2);
    // After the cooldown, one more fetch (which still does not know the kid).
    clock += 61_000;
    const u2 = await engine.decide({ token: UNKNOWN_KID, action: "view", resource: REPORT });
    assert.equal(u2.errors[0].code, "token_unknown_kid");
    assert.equal(state.hits.jwks, 3);
    assert.deepEqual(errors, []);
  });

  test("decideSync answers null while a decision wants an issuer's keys; decide fetches them", async () => {
    Object.assign(state, { jwks: OTHER_RSA_JWKS, issuer: ACME_ISSUER, hits: { discovery: 0, jwks: 0 }, status: 200, cacheControl: undefined });
    let clock = NOW * 1000;
    const engine = await Portcullis.load(remoteAcmeBundle({ discovery: `${base}/.well-known/openid-configuration` }), {
      now: () => clock,
      fetchKeys: { cooldownMs: 60_000 },
    });
    state.jwks = ACME_JWKS;
    clock += 61_000;
    // node:crypto: no signature wait, but the token's kid is unknown until the keys are fetched.
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }), null);
    assert.equal(state.hits.jwks, 1, "decideSync fetches nothing");
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
    assert.equal(state.hits.jwks, 2);
    assert.equal(engine.decideSync({ token: ANALYST, action: "view", resource: REPORT }).decision, "allow");
  });

  test("keys past their age are refreshed in the background; the IdP's max-age counts, within bounds", async () => {
    Object.assign(state, { jwks: ACME_JWKS, issuer: ACME_ISSUER, hits: { discovery: 0, jwks: 0 }, status: 200, cacheControl: undefined });
    let clock = NOW * 1000;
    const engine = await Portcullis.load(remoteAcmeBundle({ jwks_uri: `${base}/keys` }), {
      now: () => clock,
      fetchKeys: { defaultAgeMs: 10_000, minAgeMs: 1_000, cooldownMs: 1_000 },
    });
    assert.equal(state.hits.jwks, 1);
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(state.hits.jwks, 1);
    // No `Cache-Control`: the default age.
    state.cacheControl = "public, max-age=3600";
    clock += 11_000;
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(state.hits.jwks, 2);
    // Now the IdP said an hour.
    clock += 1_800_000;
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(state.hits.jwks, 2, "within the IdP's max-age");
    clock += 1_800_000;
    await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(state.hits.jwks, 3);
    state.cacheControl = undefined;
  });

  test("failures are reported, not thrown, at load; refreshKeys rejects with a KeyError", async () => {
    Object.assign(state, { jwks: ACME_JWKS, issuer: "https://someone-else.example", hits: { discovery: 0, jwks: 0 }, status: 200 });
    const errors = [];
    const engine = await Portcullis.load(remoteAcmeBundle({ discovery: `${base}/.well-known/openid-configuration` }), {
      now: fixedClock(NOW),
      fetchKeys: { onError: (e) => errors.push(e) },
    });
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof KeyError);
    assert.equal(errors[0].code, "keys_fetch");
    assert.match(errors[0].message, /is not that of issuer/);
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.errors[0].code, "token_keys_unavailable");

    state.issuer = ACME_ISSUER;
    state.status = 500;
    const err = await engine.refreshKeys().catch((e) => e);
    assert.equal(err.code, "keys_fetch");
    assert.match(err.message, /HTTP 500/);
    state.status = 200;
    await engine.refreshKeys();
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
  });

  test("a key document without a Content-Length is cut off at 1 MiB, not buffered whole", async () => {
    const errors = [];
    Object.assign(state, { hits: { discovery: 0, jwks: 0, huge: 0 }, sentHuge: undefined });
    const engine = await Portcullis.load(remoteAcmeBundle({ jwks_uri: `${base}/huge` }), {
      now: fixedClock(NOW),
      fetchKeys: { onError: (e) => errors.push(e) },
    });
    assert.equal(state.hits.huge, 1);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, "keys_fetch");
    assert.match(errors[0].message, /is larger than 1 MiB/);
    // The client stopped reading: the server never got to send its 64 MiB.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(state.sentHuge !== undefined && state.sentHuge < 16 << 20, `sent ${state.sentHuge} bytes`);
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.errors[0].code, "token_keys_unavailable");
  });

  test("plain http is refused except for localhost", async () => {
    const fetched = [];
    const fakeIdp = async (url) => {
      fetched.push(url);
      return new Response(JSON.stringify(url.endsWith("/keys")
        ? ACME_JWKS
        : { issuer: ACME_ISSUER, jwks_uri: "http://login.example/keys" }));
    };
    const errors = [];
    const direct = await Portcullis.load(remoteAcmeBundle({ jwks_uri: "https://login.example/keys" }), {
      now: fixedClock(NOW),
      fetchKeys: { fetch: fakeIdp, onError: (e) => errors.push(e) },
    });
    assert.deepEqual(errors, [], "an https jwks_uri is fetched");
    assert.equal((await direct.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
    await Portcullis.load(remoteAcmeBundle({ discovery: "https://login.example/.well-known/openid-configuration" }), {
      fetchKeys: { fetch: fakeIdp, onError: (e) => errors.push(e) },
    });
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, "keys_fetch");
    assert.match(errors[0].message, /neither https nor loopback/);
    assert.ok(!fetched.includes("http://login.example/keys"));
    // No redirect is followed: fetch is told to refuse them, and a 3xx answer is refused.
    const asked = [];
    const redirected = [];
    await Portcullis.load(remoteAcmeBundle({ jwks_uri: "https://login.example/keys" }), {
      fetchKeys: {
        fetch: async (url, init) => {
          asked.push(init.redirect);
          return { ok: false, status: 302, type: "basic", url, json: async () => ACME_JWKS };
        },
        onError: (e) => redirected.push(e),
      },
    });
    assert.deepEqual(asked, ["error"]);
    assert.equal(redirected.length, 1);
    assert.match(redirected[0].message, /redirect \(HTTP 302\), which is not followed/);
  });
});

describe("decideTrusted", () => {
  test("an explicit principal and entities, synchronously", async () => {
    const engine = await load();
    const alice = { uid: { type: "User", id: "acme/alice" }, attrs: { tenant: "acme", department: "finance" }, parents: [{ type: "Role", id: "FinanceAnalyst" }] };
    const trusted = (resource, entities) => engine.decideTrusted({
      principal: { type: "User", id: "acme/alice" },
      action: "view",
      resource,
      context: { mfa: false, scopes: [], token_type: "user" },
      entities,
      tenant: "acme",
    });
    // The resource's attributes either in `entities`...
    const bare = { type: "Report", id: REPORT.id };
    const d = trusted(bare, [alice, { uid: bare, attrs: REPORT.attrs, parents: [] }]);
    assert.equal(d.decision, "allow", JSON.stringify(d.errors));
    assert.deepEqual(d.reasons, ["analyst-view-own-department"]);
    // ...or as `resource.attrs`, as in token mode...
    const viaAttrs = trusted(REPORT, [alice]);
    assert.equal(viaAttrs.decision, "allow", JSON.stringify(viaAttrs.errors));
    assert.deepEqual(viaAttrs.reasons, ["analyst-view-own-department"]);
    // ...but not both: which one would count is ambiguous.
    const both = trusted(REPORT, [alice, { uid: bare, attrs: REPORT.attrs, parents: [] }]);
    assert.equal(both.decision, "deny");
    assert.equal(both.errors[0].code, "request_entity");
    const unknownTenant = engine.decideTrusted({ principal: { type: "User", id: "x" }, action: "view", resource: REPORT, tenant: "nope" });
    assert.equal(unknownTenant.errors[0].code, "request_tenant");
  });

  test("64-bit integers as BigInt, actions as entity references", async () => {
    const engine = await Portcullis.load({
      format: "portcullis.bundle/v1",
      settings: { validate_policies: false, require_policy_ids: false },
      policies: [{ file: "p.cedar", source: 'permit(principal, action == NS::Action::"go", resource) when { context.n == 9223372036854775807 && resource.m == -9223372036854775808 };' }],
      entities: [{ uid: { type: "R", id: "r" }, attrs: { m: -9223372036854775808n }, parents: [] }],
    });
    const base = { principal: { type: "P", id: "p" }, action: { type: "NS::Action", id: "go" }, resource: { type: "R", id: "r" } };
    assert.equal(engine.decideTrusted({ ...base, context: { n: 9223372036854775807n } }).decision, "allow");
    assert.equal(engine.decideTrusted({ ...base, context: { n: 9223372036854775806n } }).decision, "deny");
    // A string that looks like the SDK's internal BigInt encoding stays a string.
    assert.equal(engine.decideTrusted({ ...base, context: { n: "\u0000portcullis-bigint-x:1" } }).decision, "deny");
    const bad = (() => { try { engine.decideTrusted({ ...base, action: { type: "A" } }); } catch (e) { return e; } })();
    assert.equal(bad.code, "request_invalid");
  });
});

describe("clock and lifetime", () => {
  test("the clock decides expiry, also for cached tokens", async () => {
    let clock = NOW * 1000;
    const engine = await Portcullis.load(bundleText, { now: () => clock });
    assert.equal((await engine.decide({ token: ANALYST, action: "view", resource: REPORT })).decision, "allow");
    clock += 2 * 3600 * 1000;
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.errors[0].code, "token_expired");
  });

  test("the default clock is Date.now: a conformance token is long expired or not yet valid", async () => {
    const engine = await Portcullis.load(bundleText);
    const d = await engine.decide({ token: ANALYST, action: "view", resource: REPORT });
    assert.equal(d.decision, "unauthenticated");
    assert.ok(["token_expired", "token_not_yet_valid", "token_iat"].includes(d.errors[0].code), d.errors[0].code);
  });

  test("a clock that returns nonsense is a RequestError", async () => {
    const engine = await Portcullis.load(bundleText, { now: () => Number.NaN });
    const err = await engine.decide({ token: ANALYST, action: "view", resource: REPORT }).catch((e) => e);
    assert.equal(err.code, "clock");
  });

  test("a disposed engine refuses to work", async () => {
    const engine = await load();
    engine.dispose();
    engine.dispose();
    const err = await engine.decide({ token: ANALYST, action: "view", resource: REPORT }).catch((e) => e);
    assert.ok(err instanceof RequestError);
    assert.equal(err.code, "disposed");
    assert.throws(() => engine.revision, (e) => e.code === "disposed");
  });
});
