// Portcullis for browsers and Node: the public API over the wasm-bindgen module.
//
// Everything that decides stays in the engine (Rust, compiled to Wasm): token parsing and
// checks, key selection, claim mapping, Cedar evaluation, the decision itself. This file only
// converts values, checks signatures with the host's crypto (node:crypto in Node, WebCrypto
// elsewhere; the engine says which key and algorithm), reads the clock and, optionally, fetches
// issuers' keys.

import init, { initSync, maxSliceDocument, RawEngine, RawKeySchedule, sliceQuery } from "./portcullis_js.js";

// ---------------------------------------------------------------------------------------------
// Errors

/** An error with a stable machine-readable `code` (see the README's error table). */
export class PortcullisError extends Error {
  constructor(info, options) {
    super(info.message, options);
    this.name = "PortcullisError";
    /** @type {string} */
    this.code = info.code;
    if (info.help != null) this.help = info.help;
  }
}

/** A bundle failed to load (`bundle_invalid`); `problems` lists every problem found. */
export class BundleError extends PortcullisError {
  constructor(info) {
    super(info);
    this.name = "BundleError";
    this.problems = info.problems ?? [];
  }
}

/** A token was not accepted (`token_*`; thrown by `authenticate`, never by `decide`). */
export class TokenError extends PortcullisError {
  constructor(info) {
    super(info);
    this.name = "TokenError";
  }
}

/** Keys handed to the engine, or fetched for it, could not be used (`keys_*`). */
export class KeyError extends PortcullisError {
  constructor(info, options) {
    super(info, options);
    this.name = "KeyError";
  }
}

/**
 * A request or argument does not have the documented shape (`request_invalid`, `clock`,
 * `disposed`), or tenant data could not be loaded or fetched (`data_*`, and the decision
 * service's own codes for `fetchData`).
 */
export class RequestError extends PortcullisError {
  constructor(info) {
    super(info);
    this.name = "RequestError";
  }
}

function errorFor(info, options) {
  const code = String(info.code);
  if (code === "bundle_invalid") return new BundleError(info);
  if (code.startsWith("token_")) return new TokenError(info);
  if (code.startsWith("keys_")) return new KeyError(info, options);
  return new RequestError(info);
}

/** The Wasm side throws its errors as JSON text `{code, message, help?}`. */
function rethrow(thrown) {
  if (typeof thrown === "string") {
    let info;
    try {
      info = JSON.parse(thrown);
    } catch {
      info = null;
    }
    if (info && typeof info.code === "string") throw errorFor(info);
  }
  throw thrown;
}

// ---------------------------------------------------------------------------------------------
// JSON

// Cedar `Long`s are 64-bit: values outside Number's safe range are passed as BigInt and written
// as exact JSON integers. The marker carries a random nonce, so no string can imitate it.
const bigintMarker = `\u0000portcullis-bigint-${Math.random().toString(36).slice(2)}:`;
const bigintPattern = new RegExp(`"${JSON.stringify(bigintMarker).slice(1, -1).replace(/\\/g, "\\\\")}(-?\\d+)"`, "g");

function bigintReplacer(_key, value) {
  return typeof value === "bigint" ? bigintMarker + value.toString() : value;
}

const encoder = new TextEncoder();
const scratch = [new Uint8Array(4096), new Uint8Array(4096)];

/**
 * `text` as UTF-8, in buffer `slot` (0 or 1), reused from call to call: the engine copies it at
 * once. Native `encodeInto` instead of wasm-bindgen's string copy, which goes character by
 * character.
 */
function utf8(text, slot = 0) {
  if (text.length * 3 > scratch[slot].length) scratch[slot] = new Uint8Array(text.length * 3);
  const { written } = encoder.encodeInto(text, scratch[slot]);
  return scratch[slot].subarray(0, written);
}

/** JSON text of `value`; BigInt values become JSON integers. */
function toJson(value) {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    // Only a BigInt (or a cycle, which fails again below) makes JSON.stringify throw a TypeError.
    return JSON.stringify(value, bigintReplacer).replace(bigintPattern, "$1");
  }
}

// ---------------------------------------------------------------------------------------------
// Module instantiation

let ready = null;

/**
 * Instantiate the Wasm module (once). `Portcullis.load` calls it; call it yourself to start the
 * download early or to pass the module explicitly (`wasm`: a URL, a Response, bytes or a
 * `WebAssembly.Module`).
 */
export function initialize(options = {}) {
  if (ready === null) {
    ready = instantiate(options.wasm).catch((err) => {
      ready = null;
      throw err;
    });
  }
  return ready;
}

/** Whether this runs in Node (or a runtime compatible with it). */
const IN_NODE = typeof globalThis.process?.versions?.node === "string";

/** Node's module, built for speed (browsers fetch `portcullis_js_bg.wasm`, built for size). */
const NODE_MODULE = "./portcullis_js_node_bg.wasm";

async function instantiate(wasm) {
  // In Node the module is read from disk, so it need not be small. Bundlers (Vite) find the
  // browsers' module by its literal `new URL("…", import.meta.url)`; Node's module is named
  // through a variable, so that they do not ship it to browsers.
  let source = wasm ?? (IN_NODE ? new URL(NODE_MODULE, import.meta.url) : new URL("./portcullis_js_bg.wasm", import.meta.url));
  if (typeof source === "string" && source.startsWith("file:")) source = new URL(source);
  if (source instanceof URL && source.protocol === "file:") {
    // Node (20+) cannot `fetch` a file: URL. The specifier is not a literal so that bundlers
    // leave this branch, which never runs in browsers, alone.
    const fsModule = "node:fs/promises";
    const { readFile } = await import(/* @vite-ignore */ fsModule);
    // Off the browser's main thread, synchronous compilation is about twice as fast (lazy
    // tier-up either way).
    initSync({ module: await readFile(source) });
    return;
  }
  await init({ module_or_path: source });
}

// ---------------------------------------------------------------------------------------------
// Signature checks: the engine hands over algorithm, key, message and signature; the host's
// crypto answers valid, invalid or "cannot" (then the token is refused with `token_crypto`).

const HOST_INVALID = 0;
const HOST_VALID = 1;
const HOST_CANNOT = 2;

const MAX_CACHED_KEYS = 256;

/** A bounded cache of imported keys by the engine's key handle (algorithm + key material). */
class KeyCache {
  #keys = new Map();

  get(pending, importKey) {
    const handle = pending.keyHandle;
    let key = this.#keys.get(handle);
    if (key === undefined) {
      if (this.#keys.size >= MAX_CACHED_KEYS) this.#keys.clear();
      key = importKey(JSON.parse(pending.keyJwk()), () => this.#keys.delete(handle));
      this.#keys.set(handle, key);
    }
    return key;
  }
}

const SHA = { 256: "SHA-256", 384: "SHA-384", 512: "SHA-512" };

/** How WebCrypto imports and verifies each JOSE algorithm. */
function webCryptoParams(alg) {
  const bits = alg.slice(2);
  switch (alg.slice(0, 2)) {
    case "RS":
      return {
        family: "RSASSA-PKCS1-v1_5",
        importAs: { name: "RSASSA-PKCS1-v1_5", hash: SHA[bits] },
        verifyAs: { name: "RSASSA-PKCS1-v1_5" },
      };
    case "PS":
      // RFC 7518 §3.5: the salt is as long as the hash.
      return {
        family: "RSA-PSS",
        importAs: { name: "RSA-PSS", hash: SHA[bits] },
        verifyAs: { name: "RSA-PSS", saltLength: Number(bits) / 8 },
      };
    case "ES": {
      // JWS ECDSA signatures are r || s, which is what WebCrypto expects.
      const curve = bits === "256" ? "P-256" : "P-384";
      return {
        family: "ECDSA",
        importAs: { name: "ECDSA", namedCurve: curve },
        verifyAs: { name: "ECDSA", hash: SHA[bits] },
      };
    }
    case "HS":
      return {
        family: "HMAC",
        importAs: { name: "HMAC", hash: SHA[bits] },
        verifyAs: { name: "HMAC" },
      };
    case "Ed":
      return { family: "Ed25519", importAs: { name: "Ed25519" }, verifyAs: { name: "Ed25519" } };
    default:
      return null;
  }
}

/** Algorithm families this runtime's WebCrypto turned out not to support. */
const unsupported = new Set();

/** WebCrypto (`crypto.subtle`): asynchronous, the browsers' only choice. */
class WebCryptoChecker {
  synchronous = false;
  #subtle;
  #keys = new KeyCache();

  constructor(subtle) {
    this.#subtle = subtle;
  }

  async check(pending) {
    const params = webCryptoParams(pending.algorithm);
    if (params === null || unsupported.has(params.family)) return HOST_CANNOT;
    try {
      const key = await this.#keys.get(pending, (jwk, forget) =>
        this.#subtle.importKey("jwk", jwk, params.importAs, false, ["verify"]).catch((err) => {
          forget();
          if (err?.name === "NotSupportedError") {
            unsupported.add(params.family);
            return null;
          }
          throw err;
        }));
      if (key === null) return HOST_CANNOT;
      const ok = await this.#subtle.verify(params.verifyAs, key, pending.signature, pending.signingInput);
      return ok ? HOST_VALID : HOST_INVALID;
    } catch {
      return HOST_CANNOT;
    }
  }
}

/** How node:crypto verifies each JOSE algorithm: the digest and the key options. */
function nodeCryptoParams(alg, constants) {
  const bits = alg.slice(2);
  const digest = { 256: "sha256", 384: "sha384", 512: "sha512" }[bits];
  switch (alg.slice(0, 2)) {
    case "RS":
      return { digest, key: (key) => ({ key, padding: constants.RSA_PKCS1_PADDING }) };
    case "PS":
      // RFC 7518 §3.5: the salt is as long as the hash.
      return { digest, key: (key) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 }) };
    case "ES":
      // JWS ECDSA signatures are r || s (IEEE P1363), not DER.
      return { digest, key: (key) => ({ key, dsaEncoding: "ieee-p1363" }) };
    case "HS":
      return { digest, hmac: true };
    case "Ed":
      return { digest: null, key: (key) => key };
    default:
      return null;
  }
}

/**
 * node:crypto (OpenSSL): synchronous, on the calling thread. WebCrypto in Node runs the same
 * OpenSSL code on the libuv thread pool, and the round trip costs more than an RS256 check.
 */
class NodeCryptoChecker {
  /** `check` answers at once (`decideSync` relies on it). */
  synchronous = true;
  #crypto;
  #keys = new KeyCache();

  constructor(nodeCrypto) {
    this.#crypto = nodeCrypto;
  }

  check(pending) {
    const c = this.#crypto;
    const params = nodeCryptoParams(pending.algorithm, c.constants);
    if (params === null) return HOST_CANNOT;
    try {
      const key = this.#keys.get(pending, (jwk) =>
        jwk.kty === "oct" ? c.createSecretKey(jwk.k, "base64url") : c.createPublicKey({ key: jwk, format: "jwk" }));
      const message = pending.signingInput;
      const signature = pending.signature;
      if (params.hmac) {
        const mac = c.createHmac(params.digest, key).update(message).digest();
        return mac.length === signature.length && c.timingSafeEqual(mac, signature) ? HOST_VALID : HOST_INVALID;
      }
      return c.verify(params.digest, message, params.key(key), signature) ? HOST_VALID : HOST_INVALID;
    } catch {
      return HOST_CANNOT;
    }
  }
}

/** No host crypto: every signed token is refused (`token_crypto`). */
const engineOnly = { synchronous: true, check: () => HOST_CANNOT };

let nodeCryptoModule;

/** node:crypto where the runtime has it (Node, and runtimes compatible with it), else null. */
async function loadNodeCrypto() {
  if (nodeCryptoModule === undefined) {
    nodeCryptoModule = null;
    if (IN_NODE) {
      // Not a literal, so that bundlers leave this import, which never runs in browsers, alone.
      const specifier = "node:crypto";
      try {
        nodeCryptoModule = await import(/* @vite-ignore */ specifier);
      } catch {
        nodeCryptoModule = null;
      }
    }
  }
  return nodeCryptoModule;
}

/** The checker `Portcullis.load`'s options ask for (see `LoadOptions` in portcullis.d.ts). */
async function signatureChecker(options) {
  if (options.nodeCrypto != null) return new NodeCryptoChecker(options.nodeCrypto);
  if (options.subtle !== undefined) {
    return options.subtle === null ? engineOnly : new WebCryptoChecker(options.subtle);
  }
  if (options.nodeCrypto !== null) {
    const nodeCrypto = await loadNodeCrypto();
    if (nodeCrypto !== null) return new NodeCryptoChecker(nodeCrypto);
  }
  const subtle = globalThis.crypto?.subtle;
  return subtle ? new WebCryptoChecker(subtle) : engineOnly;
}

// ---------------------------------------------------------------------------------------------
// Key fetching (optional)

/** Largest discovery document or JWK set read, bytes (the engine refuses larger ones too). */
const MAX_KEY_DOCUMENT = 1 << 20;

/**
 * A response's body, or null once it passes `limit` bytes: read chunk by chunk, so a body
 * without a `Content-Length` (or lying about it) is cut off at the limit, never buffered whole.
 */
async function readAtMost(response, limit) {
  const reader = response.body?.getReader?.();
  if (reader === undefined) {
    // A `fetch` stand-in without a stream body: its whole body, then the check.
    const body = new Uint8Array(await response.arrayBuffer());
    return body.length > limit ? null : body;
  }
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}

/**
 * Performs the GETs the engine's key schedule asks for, and nothing else: what to fetch, when,
 * and what an answer means (the discovery document's issuer, https, `max-age` within bounds,
 * retries, the unknown-`kid` cooldown) are the engine's, as in `portcullis serve` and the
 * Envoy filter.
 */
class KeyFetcher {
  #raw;
  #schedule;
  #fetch;
  #onError;
  #clock;
  /** Fetches in flight, by issuer: callers that want an issuer's keys wait for the same one. */
  #inflight = new Map();

  constructor(raw, options, clock) {
    const { fetch, onError, ...policy } = options;
    this.#fetch = fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof this.#fetch !== "function") {
      throw new KeyError({ code: "keys_fetch", message: "no `fetch` in this runtime; pass `fetchKeys.fetch`" });
    }
    this.#raw = raw;
    try {
      this.#schedule = new RawKeySchedule(raw, toJson(policy));
    } catch (thrown) {
      rethrow(thrown);
    }
    this.#onError = onError ?? null;
    this.#clock = clock;
  }

  /** GET `url`: `{status, cacheControl, body}`; throws a message on a network failure. */
  async #get(url) {
    let response;
    try {
      // No redirect is followed (as in every host): keys come from where the bundle says.
      response = await this.#fetch(url, { headers: { accept: "application/json" }, redirect: "error" });
    } catch (cause) {
      throw `cannot fetch \`${url}\` (redirects are not followed): ${cause?.message ?? cause}`;
    }
    const status = response.type === "opaqueredirect" ? 302 : response.status;
    const declared = Number(response.headers?.get?.("content-length"));
    const tooLarge = `\`${url}\` is larger than 1 MiB`;
    if (declared > MAX_KEY_DOCUMENT) {
      await response.body?.cancel?.().catch(() => {});
      throw tooLarge;
    }
    let body = new Uint8Array(0);
    if (status === 200) {
      body = await readAtMost(response, MAX_KEY_DOCUMENT);
      if (body === null) throw tooLarge;
    } else {
      await response.body?.cancel?.().catch(() => {});
    }
    return { status, cacheControl: response.headers?.get?.("cache-control") ?? undefined, body };
  }

  /** Carry one issuer's fetch to its end (discovery, then the JWK set): a KeyError or null. */
  async #carry(fetch) {
    for (;;) {
      const text = JSON.stringify(fetch);
      let event;
      try {
        const answer = await this.#get(fetch.url);
        event = JSON.parse(this.#schedule.answer(this.#raw, text, answer.status, answer.cacheControl, answer.body, this.#clock()));
      } catch (reason) {
        if (typeof reason !== "string") throw reason;
        this.#schedule.failed(text, reason, this.#clock());
        event = { failed: reason, issuer: fetch.issuer };
      }
      if (event === null || event.keys !== undefined) return null;
      if (event.fetch !== undefined) {
        fetch = event.fetch;
        continue;
      }
      const err = new KeyError({ code: "keys_fetch", message: event.failed });
      this.#report(err);
      return err;
    }
  }

  /** Start every fetch that is due; returns the errors of those started, once they end. */
  async run() {
    const due = JSON.parse(this.#schedule.due(this.#clock()));
    for (const fetch of due) {
      const done = this.#carry(fetch).finally(() => this.#inflight.delete(fetch.issuer));
      this.#inflight.set(fetch.issuer, done);
    }
    const errors = await Promise.all(due.map((f) => this.#inflight.get(f.issuer) ?? null));
    return errors.filter((e) => e !== null);
  }

  /** Fetch every issuer's keys now; the errors. */
  async refreshAll() {
    this.#schedule.expedite(this.#clock());
    // `run` takes what is due before its first wait: the map then holds every fetch.
    const started = this.run();
    const all = [...this.#inflight.values()];
    await started;
    const errors = await Promise.all(all);
    return errors.filter((e) => e !== null);
  }

  /** Start (without waiting) the fetches that are due: keys past their age, retries. */
  refreshStale() {
    const next = this.#schedule.nextDue();
    if (next !== undefined && next <= this.#clock()) this.run().catch((e) => this.#report(e));
  }

  /**
   * The decisions lacked these issuers' keys: fetch them (each at most once per cooldown) and
   * wait. True when keys of any of them were loaded, so deciding again may answer otherwise.
   */
  async wanted(issuers) {
    const now = this.#clock();
    const wanted = [...new Set(issuers.filter((i) => typeof i === "string"))];
    if (wanted.length === 0) return false;
    const due = wanted.some((issuer) => this.#schedule.wanted(issuer, now));
    if (due) this.run().catch((e) => this.#report(e));
    const waits = wanted.map((i) => this.#inflight.get(i)).filter((p) => p !== undefined);
    if (waits.length === 0) return false;
    const errors = await Promise.all(waits);
    return errors.some((e) => e === null);
  }

  #report(err) {
    if (this.#onError) {
      try {
        this.#onError(err);
      } catch {
        // A failing error handler must not break decisions.
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The engine

const constructing = Symbol("Portcullis.load");

/** The decision service's codes `fetchData` passes on (any other answer is `data_fetch`). */
const SERVICE_CODES = new Set([
  "unauthenticated", "request_invalid", "data_other_tenant", "data_tenant", "data_off", "data_unavailable",
  "data_depth", "data_too_large", "data_store_unavailable", "overloaded", "not_ready", "unavailable",
]);

/**
 * A loaded bundle: decides requests. Create with `await Portcullis.load(bundle)`.
 */
export class Portcullis {
  #raw;
  #clock;
  #keys = null;
  #checker;
  /** Asynchronous signature checks under way, by token: a decision on the same new token waits
   * for that check instead of starting its own. */
  #checking = new Map();

  constructor(token, raw, options, checker) {
    if (token !== constructing) {
      throw new TypeError("use `await Portcullis.load(bundle)`");
    }
    this.#raw = raw;
    this.#clock = options.now ?? Date.now;
    this.#checker = checker;
  }

  /**
   * Load a compiled bundle (the JSON document `portcullis bundle` writes), as an object or
   * as JSON text.
   */
  static async load(bundle, options = {}) {
    const [checker] = await Promise.all([signatureChecker(options), initialize(options)]);
    const text = typeof bundle === "string" ? bundle : toJson(bundle);
    if (typeof text !== "string") {
      throw new BundleError({ code: "bundle_invalid", message: "the bundle must be an object or JSON text" });
    }
    const seed = new Uint32Array(2);
    globalThis.crypto.getRandomValues(seed);
    let raw;
    try {
      raw = new RawEngine(text, seed[0], seed[1]);
    } catch (thrown) {
      rethrow(thrown);
    }
    if (options.edge !== undefined) {
      try {
        raw.setEdge(toJson(objectArgument(options.edge, "`edge` option")));
      } catch (thrown) {
        raw.free?.();
        rethrow(thrown);
      }
    }
    const engine = new Portcullis(constructing, raw, options, checker);
    // HMAC issuers name their secret; the application hands it over (Node backends only: a
    // browser must never hold one).
    for (const name of JSON.parse(raw.secretNames())) {
      const secret = options.secrets?.[name];
      if (secret == null) {
        raw.free?.();
        throw new KeyError({ code: "keys_unknown_secret", message: `the bundle names the secret \`${name}\`: pass it in \`secrets\`` });
      }
      try {
        raw.setSecret(name, typeof secret === "string" ? encoder.encode(secret) : secret);
      } catch (thrown) {
        rethrow(thrown);
      }
    }
    if (options.fetchKeys) {
      const fetchOptions = options.fetchKeys === true ? {} : options.fetchKeys;
      engine.#keys = new KeyFetcher(raw, fetchOptions, () => engine.#clock());
      await engine.#keys.run();
    }
    return engine;
  }

  #engine() {
    if (this.#raw === null) {
      throw new RequestError({ code: "disposed", message: "this engine was disposed" });
    }
    return this.#raw;
  }

  #seconds() {
    return Math.floor(this.#clock() / 1000);
  }

  /** The bundle revision (a content hash), as in every decision. */
  get revision() {
    return this.#engine().revision;
  }

  /** How many verified tokens the engine has cached. */
  get cachedTokens() {
    return this.#engine().cachedTokens;
  }

  /** Issuers whose keys come from the network (`jwks_uri` or `discovery` in the bundle). */
  remoteIssuers() {
    return JSON.parse(this.#engine().remoteIssuers());
  }

  /**
   * Hand the engine an issuer's current JWK set (an object or JSON text). Replaces its keys
   * and forgets cached tokens. Returns the number of usable keys.
   */
  setIssuerKeys(issuer, jwks) {
    const text = typeof jwks === "string" ? jwks : toJson(jwks);
    try {
      return this.#engine().setIssuerKeys(String(issuer), text);
    } catch (thrown) {
      rethrow(thrown);
    }
  }

  /**
   * Hand the engine a tenant's stored data (a data document: an object or JSON text), as the
   * decision service's `GET /v1/data/{tenant}` or `/v1/data/{tenant}/slice` serves it. Returns
   * the revision now held. Throws `RequestError` (`data_*` codes); the data held stays.
   */
  loadTenantData(document) {
    const text = typeof document === "string" ? document : toJson(document);
    try {
      return this.#engine().loadTenantData(text);
    } catch (thrown) {
      rethrow(thrown);
    }
  }

  /**
   * Fetch the signed-in user's slice of their tenant's data from the decision service
   * (`GET {url}/v1/data/{tenant}/slice?resource=…`, authenticated with `token`) and load it:
   * their own stored entity and its ancestors, and each of `resources` (`[{type, id}]`, full
   * ids as in decisions, at most 100) that they may do something with, with its ancestors.
   * The slice replaces the tenant data the engine held; decisions on stored resources it does
   * not cover, or for another principal, are denied (`data_outside_slice`). Resolves to
   * `{tenant, revision, entities}`. Rejects with `TokenError` when the token is not accepted
   * here, and with `RequestError` otherwise: `data_fetch` (network, redirect, not a slice),
   * `data_too_large`, or the service's code (`unauthenticated`, `data_other_tenant`,
   * `request_invalid`, `data_unavailable`, ...). No message ever holds the token.
   */
  async fetchData(options) {
    const { url, token, resources = [], fetch, ...rest } = objectArgument(options, "`fetchData` options");
    const extra = Object.keys(rest);
    if (extra.length > 0) {
      throw new RequestError({ code: "request_invalid", message: `invalid \`fetchData\` options: unknown field \`${extra[0]}\`` });
    }
    if (typeof url !== "string" || url === "") {
      throw new RequestError({ code: "request_invalid", message: "`fetchData`: `url` is the decision service's base URL" });
    }
    if (typeof token !== "string" || token === "") {
      throw new RequestError({ code: "request_invalid", message: "`fetchData`: `token` is the signed-in user's access token" });
    }
    if (!Array.isArray(resources)) {
      throw new RequestError({ code: "request_invalid", message: "`fetchData`: `resources` is an array of `{type, id}`" });
    }
    const get = fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof get !== "function") {
      throw new RequestError({ code: "data_fetch", message: "no `fetch` in this runtime; pass `fetchData`'s `fetch`" });
    }
    // The token's tenant, as the engine verifies it (a token it refuses is never sent).
    const { tenant } = await this.authenticate(token);
    let query;
    try {
      query = sliceQuery(tenant, utf8(toJson(resources)));
    } catch (thrown) {
      rethrow(thrown);
    }
    const base = url.replace(/\/+$/, "");
    const target = `${base}/v1/data/${encodeURIComponent(tenant)}/slice${query === "" ? "" : `?${query}`}`;
    // A message never holds the token, even one a service echoed.
    const scrub = (text) => String(text).split(token).join("[token]");
    const failed = (code, message) => new RequestError({ code, message: scrub(message) });
    let response;
    try {
      response = await get(target, {
        headers: { accept: "application/json", authorization: `Bearer ${token}` },
        redirect: "error",
        cache: "no-store",
      });
    } catch (cause) {
      throw failed("data_fetch", `cannot fetch the data slice from \`${base}\` (redirects are not followed): ${cause?.message ?? cause}`);
    }
    const status = response.type === "opaqueredirect" ? 302 : response.status;
    const limit = maxSliceDocument();
    const declared = Number(response.headers?.get?.("content-length"));
    if (status === 200 && declared > limit) {
      await response.body?.cancel?.().catch(() => {});
      throw failed("data_too_large", `the data slice is larger than ${limit} bytes`);
    }
    const body = await readAtMost(response, status === 200 ? limit : 64 * 1024);
    if (status !== 200) {
      let answer = null;
      try {
        answer = body === null ? null : JSON.parse(new TextDecoder().decode(body));
      } catch {
        answer = null;
      }
      const code = SERVICE_CODES.has(answer?.code) ? answer.code : "data_fetch";
      const said = typeof answer?.message === "string" ? `: ${answer.message.slice(0, 500)}` : "";
      throw failed(code, `the data service answered ${status}${said}`);
    }
    if (body === null) throw failed("data_too_large", `the data slice is larger than ${limit} bytes`);
    let loaded;
    try {
      loaded = this.#engine().loadDataSlice(tenant, new TextDecoder().decode(body));
    } catch (thrown) {
      if (typeof thrown === "string") {
        let info = null;
        try {
          info = JSON.parse(thrown);
        } catch {
          info = null;
        }
        // A document that is not JSON, or not a slice of this tenant, is the service's fault.
        if (info?.code === "data_malformed") throw failed("data_fetch", `the data service did not answer a data slice: ${info.message}`);
      }
      rethrow(thrown);
    }
    return JSON.parse(loaded);
  }

  /** Fetch every remote issuer's keys now (with `fetchKeys`); rejects with the first failure. */
  async refreshKeys() {
    if (this.#keys === null) {
      throw new RequestError({ code: "request_invalid", message: "load the bundle with `fetchKeys` to fetch keys" });
    }
    const errors = await this.#keys.refreshAll();
    if (errors.length > 0) throw errors[0];
  }

  /** Decide one request. A Promise: WebCrypto's signature checks are asynchronous. */
  async decide(request) {
    const start = decideCall(request);
    const token = typeof request?.token === "string" ? request.token : undefined;
    const run = () => this.#run(start, token);
    return this.#withKeys(run, (decision) => [decision.keysWanted]);
  }

  /**
   * Decide one request synchronously, for render paths: the decision when nothing asynchronous
   * is needed to make it, else `null`. Nothing is needed when the token is in the verified-token
   * cache, when it is refused before any signature work (none, malformed, expired, another
   * issuer, ...), or when signatures are checked by `node:crypto` (Node's default), which
   * answers on the calling thread. `null` means WebCrypto must check the token's signature, or
   * (with `fetchKeys`) the decision wants an issuer's keys: `await decide(request)` does that
   * work, and caches the token, so that `decideSync` answers for it from then on (until it
   * expires, its issuer's keys change or the cache lets it go). Never waits and never fetches.
   */
  decideSync(request) {
    let [raw, out] = this.#begin(decideCall(request));
    if (typeof out !== "string") {
      if (!this.#checker.synchronous) {
        out.free();
        return null;
      }
      try {
        out = raw.finish(out, this.#checker.check(out));
      } catch (thrown) {
        rethrow(thrown);
      }
    }
    const decision = JSON.parse(out);
    if (this.#keys === null) return decision;
    this.#keys.refreshStale();
    return decision.keysWanted === undefined ? decision : null;
  }

  /**
   * Decide several requests for one token (`{token, requests: [{action, resource, context}]}`):
   * the signature is checked once. Decisions come back in the order of `requests`.
   */
  async decideMany(batch) {
    const { token, requests, ...rest } = objectArgument(batch, "batch");
    const extra = Object.keys(rest);
    if (extra.length > 0) {
      throw new RequestError({ code: "request_invalid", message: `invalid batch: unknown field \`${extra[0]}\`` });
    }
    if (!Array.isArray(requests)) {
      throw new RequestError({ code: "request_invalid", message: "invalid batch: `requests` must be an array" });
    }
    const json = toJson(requests);
    const tok = token ?? undefined;
    const run = () => this.#run((raw, now) => raw.decideMany(tok, utf8(json), now));
    return this.#withKeys(run, (decisions) => decisions.map((d) => d.keysWanted));
  }

  /**
   * Decide an HTTP request as the Envoy filter and ext_authz do: `{method, path, headers}`
   * mapped with the bundle's routes and the `edge` options given to `load` (token sources,
   * identity headers, ...). `path` includes the query; `headers` is an object (`{name: value
   * | [values]}`, e.g. Node's `req.headersDistinct`), a `Headers`, or `[name, value]` pairs.
   * Resolves to the verdict: `{outcome, forward: true, identity, route, decision}` to pass the
   * request on with `identity` as its identity headers (after removing the client's copies of
   * them), or `{outcome, forward: false, status, headers, body, route, decision}` to answer.
   */
  async decideHttp(request) {
    const { method, path, headers = [], ...rest } = objectArgument(request, "HTTP request");
    const extra = Object.keys(rest);
    if (extra.length > 0) {
      throw new RequestError({ code: "request_invalid", message: `invalid HTTP request: unknown field \`${extra[0]}\`` });
    }
    const json = toJson({ method, path, headers: headerPairs(headers) });
    const run = () => this.#run((raw, now) => raw.decideHttp(utf8(json), now));
    return this.#withKeys(run, (verdict) => [verdict.decision?.keysWanted]);
  }

  /** Verify a token and return the principal its claims map to; throws `TokenError`. */
  async authenticate(token) {
    if (typeof token !== "string") {
      throw new RequestError({ code: "request_invalid", message: "the token must be a string" });
    }
    const run = () => this.#run((raw, now) => raw.authenticate(token, now));
    try {
      return JSON.parse(await run());
    } catch (err) {
      const retry = this.#keys !== null && err instanceof TokenError
        && (err.code === "token_unknown_kid" || err.code === "token_keys_unavailable")
        && (await this.#keys.wanted([this.#engine().keysWanted(token, this.#seconds())]));
      if (!retry) throw err;
      return JSON.parse(await run());
    }
  }

  /**
   * Decide for an already-authenticated principal (no token): `{principal, action, resource,
   * context?, entities?, tenant?}`. Synchronous: there is no signature to check.
   */
  decideTrusted(request) {
    const json = toJson(objectArgument(request, "trusted request"));
    try {
      return JSON.parse(this.#engine().decideTrusted(json, this.#seconds()));
    } catch (thrown) {
      rethrow(thrown);
    }
  }

  /** Free the Wasm memory of this engine. It cannot be used afterwards. */
  dispose() {
    if (this.#raw !== null) {
      this.#raw.free();
      this.#raw = null;
    }
  }

  /**
   * Run a call and parse its JSON; with `fetchKeys`, refresh stale keys, and when the answer
   * wants an issuer's keys (`wanted(answer)`: issuers, `undefined` for none), fetch them and run
   * it again.
   */
  async #withKeys(run, wanted) {
    const answer = JSON.parse(await run());
    if (this.#keys === null) return answer;
    this.#keys.refreshStale();
    return (await this.#keys.wanted(wanted(answer))) ? JSON.parse(await run()) : answer;
  }

  /** Start a call on the engine now: `[raw, out]`, `out` the answer or a pending signature. */
  #begin(start) {
    const raw = this.#engine();
    try {
      return [raw, start(raw, this.#seconds())];
    } catch (thrown) {
      rethrow(thrown);
    }
  }

  /** Start a call; when the engine needs a signature checked, check it and finish. */
  async #run(start, token) {
    // The same new token already being checked (WebCrypto): wait for that check, after which
    // the engine knows the token (verified, or refused) and this call needs none of its own.
    const checking = token === undefined ? undefined : this.#checking.get(token);
    if (checking !== undefined) await checking;
    const [raw, out] = this.#begin(start);
    if (typeof out === "string") return out;
    let verdict = this.#checker.check(out);
    // node:crypto answers at once; only WebCrypto needs the wait.
    if (typeof verdict !== "number") {
      if (token !== undefined && !this.#checking.has(token)) {
        const done = verdict.then(() => {}, () => {});
        this.#checking.set(token, done);
        done.then(() => this.#checking.delete(token));
      }
      verdict = await verdict;
    }
    if (this.#raw === null) out.free();
    try {
      return this.#engine().finish(out, verdict);
    } catch (thrown) {
      rethrow(thrown);
    }
  }
}

// `using engine = await Portcullis.load(...)` where the runtime has explicit resource management.
if (typeof Symbol.dispose === "symbol") {
  Object.defineProperty(Portcullis.prototype, Symbol.dispose, {
    value() {
      this.dispose();
    },
  });
}

/**
 * The start of a `decide` call for `request`. A string token travels apart from the JSON:
 * writing and reading a 1 KB token as JSON is a tenth of a cached decision. Anything else stays
 * in the JSON, for the engine to refuse.
 */
function decideCall(request) {
  const { token, ...rest } = objectArgument(request, "request");
  const apart = typeof token === "string";
  const json = toJson(apart ? rest : request);
  return (raw, now) => raw.decide(utf8(apart ? token : "", 1), utf8(json), now);
}

/** `[name, value]` pairs from an object of values or value arrays, a `Headers`, or pairs. */
function headerPairs(headers) {
  if (Array.isArray(headers)) return headers.map((pair) => (Array.isArray(pair) ? pair.map(String) : pair));
  if (headers === null || typeof headers !== "object") {
    throw new RequestError({ code: "request_invalid", message: "invalid HTTP request: `headers` must be an object, a Headers or pairs" });
  }
  const entries = typeof headers.entries === "function" && typeof headers.get === "function"
    ? [...headers.entries()]
    : Object.entries(headers);
  const pairs = [];
  for (const [name, value] of entries) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) pairs.push([name, String(one)]);
  }
  return pairs;
}

function objectArgument(value, what) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RequestError({ code: "request_invalid", message: `the ${what} must be an object` });
  }
  return value;
}
