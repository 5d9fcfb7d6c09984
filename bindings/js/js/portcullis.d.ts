// Type declarations for the Portcullis JavaScript/TypeScript SDK.

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/**
 * A value in requests (attributes, context, entities): JSON, plus BigInt for 64-bit Cedar
 * `Long`s outside Number's safe range. Cedar extension values and entity references use their
 * JSON forms (`{"__extn": {...}}`, `{"__entity": {...}}`).
 */
export type CedarValue = null | boolean | number | bigint | string | CedarValue[] | { [key: string]: CedarValue };

/** A record of Cedar values. */
export type CedarRecord = { [key: string]: CedarValue };

/** Error codes a decision can carry in `errors[].code`. */
export type DecisionErrorCode =
  | "token_missing"
  | "token_too_large"
  | "token_malformed"
  | "token_algorithm_unsupported"
  | "token_header_forbidden"
  | "token_type"
  | "token_issuer"
  | "token_tenant"
  | "token_algorithm_not_allowed"
  | "token_unknown_kid"
  | "token_ambiguous_key"
  | "token_keys_unavailable"
  | "token_keys_changed"
  | "token_signature"
  | "token_claim"
  | "token_expired"
  | "token_not_yet_valid"
  | "token_iat"
  | "token_audience"
  | "token_crypto"
  | "request_action"
  | "request_entity"
  | "request_context"
  | "request_schema"
  | "request_tenant"
  | "request_stored_attrs"
  | "data_unavailable"
  | "data_depth"
  | "data_outside_slice"
  | "policy_evaluation";

/** The subset of decision error codes a rejected token gets (thrown by `authenticate`). */
export type TokenErrorCode = Extract<DecisionErrorCode, `token_${string}`>;

/** Codes of errors thrown by the SDK (`PortcullisError.code`). */
export type ErrorCode =
  | "bundle_invalid"
  | TokenErrorCode
  | "keys_unknown_issuer"
  | "keys_invalid"
  | "keys_fetch"
  | "request_invalid"
  | "edge_invalid"
  | "clock"
  | "disposed"
  | DataErrorCode
  | FetchDataErrorCode;

/** Codes of tenant data the engine refuses (`loadTenantData`, `fetchData`): nothing of it is kept. */
export type DataErrorCode =
  | "data_malformed"
  | "data_too_large"
  | "data_tenant"
  | "data_type"
  | "data_other_tenant"
  | "data_schema"
  | "data_parent_tenant"
  | "data_cycle"
  | "data_depth"
  | "data_static"
  | "data_duplicate"
  | "data_revision";

/**
 * Codes `fetchData` rejects with besides `DataErrorCode` and `TokenErrorCode`: `data_fetch`
 * (no answer, a redirect, an answer that is not a slice of the tenant), and the decision
 * service's own codes.
 */
export type FetchDataErrorCode =
  | "data_fetch"
  | "unauthenticated"
  | "request_invalid"
  | "data_other_tenant"
  | "data_tenant"
  | "data_off"
  | "data_unavailable"
  | "data_depth"
  | "data_too_large"
  | "data_store_unavailable"
  | "overloaded"
  | "not_ready"
  | "unavailable";

/** Codes of the problems of a bundle that does not load (`BundleError.problems[].code`). */
export type BundleProblemCode =
  | "json"
  | "format"
  | "revision"
  | "settings"
  | "schema"
  | "policy_parse"
  | "policy_id"
  | "policy"
  | "policy_validation"
  | "tenants"
  | "keys"
  | "entities";

/** Where in the bundle sources a problem is. */
export interface SourceLocation {
  /** File, relative to the bundle directory (`policies/analysts.cedar`). */
  file: string;
  /** 1-based line. */
  line?: number;
  /** 1-based column. */
  column?: number;
}

/** One problem of a bundle that does not load. */
export interface BundleProblem {
  code: BundleProblemCode;
  location?: SourceLocation;
  message: string;
  help?: string;
}

/** Base class of every error the SDK throws; `code` is stable, `message` is for humans. */
export class PortcullisError extends Error {
  readonly code: ErrorCode;
  readonly help?: string;
}

/** The bundle did not load (`code` is `bundle_invalid`). */
export class BundleError extends PortcullisError {
  readonly code: "bundle_invalid";
  /** Every problem found, not only the first. */
  readonly problems: BundleProblem[];
}

/** `authenticate` did not accept the token. */
export class TokenError extends PortcullisError {
  readonly code: TokenErrorCode;
}

/** Keys could not be used or fetched. */
export class KeyError extends PortcullisError {
  readonly code: "keys_unknown_issuer" | "keys_invalid" | "keys_fetch";
}

/**
 * A request or argument does not have the documented shape, the engine was disposed, or
 * tenant data could not be loaded or fetched.
 */
export class RequestError extends PortcullisError {
  readonly code: "request_invalid" | "clock" | "disposed" | DataErrorCode | FetchDataErrorCode;
}

/** A Cedar entity reference. */
export interface EntityRef {
  /** Entity type (`Report`, `TechFin::User`). */
  type: string;
  /** Entity id. */
  id: string;
}

/** A resource: type, id and the attributes policies read (Cedar JSON values). */
export interface ResourceRef extends EntityRef {
  attrs?: CedarRecord;
}

/** One decision request with a bearer token. */
export interface DecisionRequest {
  /** The JWT, without `Bearer `; absent or null means unauthenticated. */
  token?: string | null;
  /** Action id (`view`). */
  action: string;
  resource: ResourceRef;
  /** Extra context. `mfa`, `session_age`, `scopes`, `token_type`, `client_id` come from the token and cannot be set. */
  context?: CedarRecord;
}

/** One request of a batch: a decision request without its token. */
export interface BatchItem {
  action: string;
  resource: ResourceRef;
  context?: CedarRecord;
}

/** Several requests for one token (the UI-gating case). */
export interface BatchRequest {
  token?: string | null;
  requests: BatchItem[];
}

/** A Cedar entity in JSON form, for trusted requests. */
export interface CedarEntity {
  uid: EntityRef | { __entity: EntityRef };
  attrs?: CedarRecord;
  parents?: Array<EntityRef | { __entity: EntityRef }>;
  tags?: CedarRecord;
}

/** A request for an already-authenticated principal (no token). */
export interface TrustedRequest {
  principal: EntityRef;
  /** An action id (`view`) or a full action entity reference. */
  action: string | EntityRef;
  /** Its `attrs`, if any, make its entity, as in token mode; then it must not also be in `entities`. */
  resource: ResourceRef;
  context?: CedarRecord;
  /** Entities added to the bundle's static entities. */
  entities?: CedarEntity[];
  /** Evaluate the shared policies plus this tenant's. */
  tenant?: string;
}

/** The outcome of a decision. */
export type Outcome = "allow" | "deny" | "unauthenticated";

/** An error that contributed to a decision. */
export interface DecisionError {
  code: DecisionErrorCode;
  message: string;
  /** The policy that failed to evaluate (`policy_evaluation`). */
  policy?: string;
}

/** Whether the principal is a person or an OAuth client acting for itself. */
export type PrincipalKind = "user" | "client";

/** The principal, as a decision summarises it. */
export interface PrincipalSummary {
  tenant: string;
  kind: PrincipalKind;
  /** Subject or client id. */
  id: string;
  /** Cedar entity, `User::"acme/alice"`. */
  entity: string;
  roles: string[];
  /** Whether MFA was used (token principals only). */
  mfa?: boolean;
}

/** A decision: a value, whatever the outcome. */
export interface Decision {
  decision: Outcome;
  /** The HTTP status that goes with it. */
  status: 200 | 403 | 401;
  /** Ids of the policies that decided it. */
  reasons: string[];
  errors: DecisionError[];
  /** The principal, when the token was valid. */
  principal: PrincipalSummary | null;
  /** Bundle revision. */
  revision: string;
  /** Revision of the tenant's stored data the decision joined (bundles that store data). */
  dataRevision?: number;
  /** Unique id of this decision. */
  decisionId: string;
  /** What was asked. */
  request: { action: string; resource: string };
  /**
   * The issuer whose keys the decision lacked (the token names a `kid` the engine does not
   * have, or the issuer has no keys yet). With `fetchKeys` the SDK has already fetched them
   * once, within the cooldown, before answering.
   */
  keysWanted?: string;
}

/** The principal a verified token maps to. */
export interface Principal {
  /** The tenant whose issuer entry verified the token (never a claim's say-so). */
  tenant: string;
  kind: PrincipalKind;
  id: string;
  entity: string;
  issuer: string;
  roles: string[];
  groups: string[];
  scopes: string[];
  /** Mapped attributes (department, email, ...), keyed as the bundle names them. */
  attributes: JsonObject;
  mfa: boolean;
  /** `auth_time`, unix seconds. */
  authTime?: number;
  clientId?: string;
  /** Claims that were present but malformed, and therefore ignored. */
  ignoredClaims?: string[];
}

/** An issuer whose keys come from the network. */
export interface RemoteIssuer {
  issuer: string;
  jwksUri?: string;
  discovery?: string;
  /** Whether the engine has keys for it. */
  loaded: boolean;
}

/** A JWK set. */
export interface JwkSet {
  keys: JsonObject[];
}

/** A compiled bundle (`portcullis bundle` output). */
export interface CompiledBundle {
  format: "portcullis.bundle/v1";
  revision?: string;
  settings?: JsonObject;
  schema?: string;
  policies?: Array<{ file: string; tenant?: string; source: string }>;
  tenants?: JsonObject;
  entities?: CedarEntity[];
}

/** What the key fetcher needs of a `fetch` response (a `Response` is one). */
export interface FetchResponse {
  readonly ok: boolean;
  readonly status: number;
  /** The final URL after redirects (checked to be https, or http on localhost). */
  readonly url?: string;
  json(): Promise<unknown>;
}

/** What the key fetcher needs of `fetch` (the global `fetch` is one). */
export type FetchFunction = (
  url: string,
  init: { headers: Record<string, string>; redirect: "follow" },
) => Promise<FetchResponse>;

/** A WebCrypto algorithm as the SDK passes it. */
export interface WebCryptoAlgorithm {
  name: string;
  hash?: string;
  namedCurve?: string;
  saltLength?: number;
}

/** A public JWK as the SDK imports it (`oct` for HMAC secrets). */
export interface WebCryptoJwk {
  kty: string;
  crv?: string;
  n?: string;
  e?: string;
  x?: string;
  y?: string;
  k?: string;
}

/** Bytes in an `ArrayBuffer` (a `Uint8Array`, as the SDK passes them). */
export interface ByteView {
  readonly buffer: ArrayBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** What the SDK needs of WebCrypto (`crypto.subtle` is one). */
export interface SubtleCryptoLike {
  importKey(
    format: "jwk",
    keyData: WebCryptoJwk,
    algorithm: WebCryptoAlgorithm,
    extractable: boolean,
    keyUsages: "verify"[],
  ): Promise<unknown>;
  /** `key` is what `importKey` returned; `signature` and `data` are `Uint8Array`s. */
  verify(algorithm: WebCryptoAlgorithm, key: unknown, signature: ByteView, data: ByteView): Promise<boolean>;
}

/** What the SDK needs of `node:crypto` (the module itself is one). */
export interface NodeCryptoLike {
  /** `key.key` is a public JWK (RSA, EC or OKP). */
  createPublicKey(key: { key: { [member: string]: unknown }; format: "jwk" }): unknown;
  createSecretKey(key: string, encoding: "base64url"): unknown;
  /** `key` is what `createPublicKey` returned, or an options object holding it. */
  verify(digest: string | null, data: Uint8Array, key: unknown, signature: Uint8Array): boolean;
  createHmac(digest: string, key: unknown): { update(data: Uint8Array): { digest(): Uint8Array } };
  timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean;
  readonly constants: { readonly RSA_PKCS1_PADDING: number; readonly RSA_PKCS1_PSS_PADDING: number };
}

/**
 * Options of the key fetcher. When to fetch is the engine's schedule, the same as
 * `portcullis serve`'s and the Envoy filter's: keys are kept for the IdP's
 * `Cache-Control: max-age` (within `minAgeMs`..`maxAgeMs`; `defaultAgeMs` without one), then
 * refetched in the background while they keep serving; a token naming an unknown `kid` fetches
 * its own issuer's keys early, at most once per `cooldownMs`.
 */
export interface FetchKeysOptions {
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: FetchFunction;
  /** Keys are kept at least this long, whatever the IdP says (default 60 000 ms). */
  minAgeMs?: number;
  /** And at most this long (default 86 400 000 ms). */
  maxAgeMs?: number;
  /** When the IdP sends no `max-age` (default 300 000 ms). */
  defaultAgeMs?: number;
  /** After a failed fetch, wait this long; the last good keys stay (default 10 000 ms). */
  retryMs?: number;
  /** An unknown `kid` fetches early at most once per this period, per issuer (default 30 000 ms). */
  cooldownMs?: number;
  /** Told about every failed fetch. */
  onError?: (error: KeyError) => void;
}

declare global {
  // Declared by the DOM library; this lets the declarations compile without it (Node types only).
  namespace WebAssembly {
    interface Module {}
  }
}

/** Where the Wasm module comes from (default: next to `portcullis.js`): a URL, bytes, a compiled module, or a fetch `Response`. */
export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module | FetchResponse;

/** Options of `initialize`. */
export interface InitializeOptions {
  wasm?: WasmSource | Promise<WasmSource>;
}

/** Options of `Portcullis.load`. */
export interface LoadOptions extends InitializeOptions {
  /** The clock, in milliseconds since the epoch like `Date.now` (the default). */
  now?: () => number;
  /** Fetch remote issuers' keys (OIDC discovery / JWKS) with `fetch`, and refetch on an unknown `kid`. */
  fetchKeys?: boolean | FetchKeysOptions;
  /**
   * Verify signatures with `node:crypto`, synchronously on the calling thread. The default in
   * Node when `subtle` is not given; `null`: do not use it.
   */
  nodeCrypto?: NodeCryptoLike | null;
  /**
   * The WebCrypto to verify signatures with: the default outside Node (`globalThis.crypto.subtle`);
   * given in Node, it is used instead of `node:crypto`. `null`: no host crypto at all, every
   * signed token is refused with `token_crypto`.
   */
  subtle?: SubtleCryptoLike | null;
  /**
   * The HMAC secrets the bundle's `HS*` issuers name (`"secret": "<name>"` in `tenants.json`),
   * by name, as text or bytes. Bundles never hold secrets; a backend hands them over here. A
   * browser must never be given one: its issuers should sign with public-key algorithms.
   */
  secrets?: Record<string, string | Uint8Array>;
  /**
   * How `decideHttp` treats requests around the decision, as the Envoy filter's `edge`: token
   * sources, identity headers, `unmatched`, `cors_preflight`, `failure_mode`, `realm`,
   * `dry_run`. Rejects with `edge_invalid` when they do not hold together.
   */
  edge?: EdgeOptions;
}

/** Where a bearer token may be (RFC 6750 section 2). */
export type TokenSource =
  | { header: { name: string; prefix?: string } }
  | { cookie: { name: string } }
  | { query: { name: string } };

/** Edge options (`LoadOptions.edge`); the routes themselves are in the bundle. */
export interface EdgeOptions {
  /** A request no route matches: `deny` (403, the default) or `pass`. */
  unmatched?: "deny" | "pass";
  /** Where the token is read, in order (default: `Authorization: Bearer`). */
  token?: TokenSource[];
  /** The identity headers of an allowed request, by what they carry (default: none). */
  forward?: { tenant?: string; subject?: string; roles?: string; decision_id?: string };
  /** Decide, but always forward. */
  dry_run?: boolean;
  /** Let CORS preflights of routed requests through without a token (default `true`). */
  cors_preflight?: boolean;
  /** When the token's issuer has no keys yet: `closed` (503, the default) or `open`. */
  failure_mode?: "closed" | "open";
  /** The `realm` of `WWW-Authenticate` challenges (default `api`). */
  realm?: string;
}

/** An HTTP request for `decideHttp`. */
export interface HttpRequest {
  /** `GET`, `POST`, ... */
  method: string;
  /** The path with its query, as the client sent it. */
  path: string;
  /** Headers: `{name: value | [values]}`, a `Headers`, or `[name, value]` pairs. */
  headers?: Record<string, string | string[] | undefined> | Headers | [string, string][];
}

/** How an HTTP request ended. */
export type EdgeOutcome = "allowed" | "denied" | "unauthenticated" | "invalid" | "unavailable" | "preflight" | "no-route";

/** What to do with an HTTP request: pass it on, with identity headers. */
export interface ForwardVerdict {
  outcome: EdgeOutcome;
  forward: true;
  /** The identity headers to set (every client copy of an identity header removed first). */
  identity: Record<string, string>;
  /** The matched route's path template, if any. */
  route: string | null;
  /** The decision, if one was made (not for a preflight or an unmatched pass). */
  decision: Decision | null;
}

/** What to do with an HTTP request: answer it. */
export interface RespondVerdict {
  outcome: EdgeOutcome;
  forward: false;
  status: number;
  /** Response headers (`www-authenticate`, `retry-after`). */
  headers: Record<string, string>;
  /** The JSON body. */
  body: { code: string; message: string; decision_id?: string };
  route: string | null;
  decision: Decision | null;
}

export type EdgeVerdict = ForwardVerdict | RespondVerdict;

/** Instantiate the Wasm module (once; `Portcullis.load` does it). */
export function initialize(options?: InitializeOptions): Promise<void>;

/** A loaded bundle. */
/**
 * A tenant's stored data: a snapshot (`entities`) or changes since a revision (`since`,
 * `changes`). A signed-in user's slice is a snapshot with the `slice` it was cut for.
 */
export interface DataDocument {
  tenant: string;
  revision: number;
  since?: number;
  entities?: unknown[];
  changes?: { revision: number; type: string; id: string; entity?: unknown | null }[];
  /** For a slice: its principal and the resources it covers; decisions outside them are denied. */
  slice?: { principal: EntityRef; resources: EntityRef[] };
}

/** What a `fetch` answer must offer `fetchData` (a `Response` does). */
export interface DataFetchResponse {
  readonly status: number;
  /** `"opaqueredirect"` for a refused redirect. */
  readonly type?: string;
  readonly headers?: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** What `fetchData` needs of `fetch` (the global `fetch` is one). */
export type DataFetchFunction = (
  url: string,
  init: { headers: Record<string, string>; redirect: "error"; cache: "no-store" },
) => Promise<DataFetchResponse>;

/** Options of `fetchData`. */
export interface FetchDataOptions {
  /** The decision service's base URL (`https://authz.example.com`; in a browser, the same origin's `/authz` works too). */
  url: string;
  /** The signed-in user's access token: it authenticates the fetch, and the slice is theirs. */
  token: string;
  /** The resources the application will decide on (full ids, as in decisions; at most 100). */
  resources?: EntityRef[];
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: DataFetchFunction;
}

/** Tenant data the engine holds now. */
export interface DataLoaded {
  tenant: string;
  revision: number;
  entities: number;
}

export class Portcullis {
  private constructor();
  /** Load a compiled bundle (object or JSON text). Rejects with `BundleError`. */
  static load(bundle: CompiledBundle | string, options?: LoadOptions): Promise<Portcullis>;
  /** The bundle revision. */
  readonly revision: string;
  /** Verified tokens in the cache. */
  readonly cachedTokens: number;
  /** Issuers whose keys come from the network. */
  remoteIssuers(): RemoteIssuer[];
  /** Replace an issuer's keys; returns the number of usable keys. Throws `KeyError`. */
  setIssuerKeys(issuer: string, jwks: JwkSet | string): number;
  /** Fetch every remote issuer's keys now (needs `fetchKeys`). */
  refreshKeys(): Promise<void>;
  /**
   * Hand over a tenant's stored data (a snapshot, a user's slice, or changes since the revision
   * held); returns the revision now held. Throws `RequestError` with a `data_*` code.
   */
  loadTenantData(document: DataDocument | string): number;
  /**
   * Fetch the signed-in user's slice of their tenant's data from the decision service
   * (`GET {url}/v1/data/{tenant}/slice`) and load it in place of the tenant data held: their
   * own stored entity and its ancestors, and each of `resources` they may do something with.
   * Decisions on stored resources it does not cover are denied (`data_outside_slice`).
   * Rejects with `TokenError` (the token is not accepted here) or `RequestError`.
   */
  fetchData(options: FetchDataOptions): Promise<DataLoaded>;
  /** Decide one request. Never rejects for a bad token: that is an `unauthenticated` decision. */
  decide(request: DecisionRequest): Promise<Decision>;
  /**
   * Decide one request synchronously (render paths): the decision, or `null` when it needs
   * asynchronous work first — a WebCrypto signature check of a token not verified yet, or (with
   * `fetchKeys`) an issuer's keys. `await decide(request)` does that work and caches the token;
   * `decideSync` then answers for it. With `node:crypto` (Node's default) it always answers.
   * Throws `RequestError` where `decide` rejects with one.
   */
  decideSync(request: DecisionRequest): Decision | null;
  /** Decide several requests for one token, in order. */
  decideMany(batch: BatchRequest): Promise<Decision[]>;
  /** Decide an HTTP request with the bundle's routes and the `edge` options. */
  decideHttp(request: HttpRequest): Promise<EdgeVerdict>;
  /** Verify a token and map its claims. Rejects with `TokenError`. */
  authenticate(token: string): Promise<Principal>;
  /** Decide for an already-authenticated principal. */
  decideTrusted(request: TrustedRequest): Decision;
  /** Free the engine's Wasm memory. */
  dispose(): void;
}
