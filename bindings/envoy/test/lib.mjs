// Shared pieces of the Envoy filter's end-to-end tests: the envoy.yaml renderer (also used for
// examples/envoy/envoy.yaml), Envoy itself and an echo upstream. The OpenID provider, process,
// bundle and polling helpers come from tests/idp/harness.mjs (shared with the decision
// service's suite) and are re-exported here. Every server listens on 127.0.0.1 only.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PORTCULLIS, ROOT, compileBundle, seedStore, serve, sleep, start, tmp } from '../../../tests/idp/harness.mjs';

export {
  ROOT, PORTCULLIS, tmp, freePort, startIdp, idpToken, compileBundle, techfinDir, techfinWithIdp, techfinDirWithIdp, serve,
  sleep, until,
} from '../../../tests/idp/harness.mjs';

export const WASM = process.env.PORTCULLIS_WASM ?? join(ROOT, 'bindings/envoy/portcullis_envoy.wasm');
export const ENVOY = process.env.ENVOY_BIN ?? 'envoy';
export const CONFORMANCE_BIN = process.env.CONFORMANCE_BIN ?? join(ROOT, 'target/debug/portcullis-conformance');

/** Indent every line of `text` by `n` spaces. */
const indent = (text, n) => text.split('\n').map((l) => (l ? ' '.repeat(n) + l : l)).join('\n');

/**
 * An envoy.yaml: one listener on `port` whose HTTP filters are the Portcullis Wasm filter
 * (`filterConfig`, a JSON-serialisable object; omitted: no auth filter) and the router, routing
 * everything to the `backend` cluster at `upstreamPort`. `clusters` adds more clusters
 * (`{name: port}`, e.g. the IdP's), `adminPort` the admin interface. `direct`: answer 200 from
 * Envoy itself instead of routing to the upstream (benchmarks), `extraFilters`: YAML of more
 * HTTP filters before the router. `releaseMemory`: have Envoy return free heap pages to the OS
 * (`memory_allocator_manager`); the benchmark also measures without it. `hardened` (the default,
 * and what every example ships): Envoy normalizes paths (RFC 3986 dot segments, merged slashes),
 * rejects escaped slashes and backslashes (`%2F`, `%5C`) and headers with underscores, before
 * any filter; `hardened: false` lets tests reach the filter's own rules with such requests.
 * `vmEnv`: environment variables handed to the Wasm VM from Envoy's own
 * (`host_env_keys`, as HMAC secrets are).
 */
export function envoyYaml({ port, adminPort, upstreamPort, filterConfig, clusters = {}, wasm = WASM, extraFilters = '', direct = false, releaseMemory = true, hardened = true, vmEnv = [] }) {
  const cluster = (name, p) => `  - name: ${name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: ${p} }
`;
  const wasmFilter = filterConfig === undefined ? '' : `          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: portcullis
                root_id: portcullis
                fail_open: false
                vm_config:
                  vm_id: portcullis
                  runtime: envoy.wasm.runtime.v8
${vmEnv.length ? `                  environment_variables:\n                    host_env_keys: [${vmEnv.join(', ')}]\n` : ''}                  code:
                    local:
                      filename: ${wasm}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
${indent(JSON.stringify(filterConfig, null, 2), 20)}
`;
  const release = releaseMemory ? `# Return free heap pages to the OS (16 MiB per second at most): compiling the
# Wasm filter at start-up leaves ~30 MiB free that Envoy would otherwise keep.
memory_allocator_manager: { bytes_to_release: 16777216, memory_release_interval: 1s }
` : '';
  return `# Rendered by bindings/envoy/test/lib.mjs (envoyYaml).
${release}admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: ${adminPort} }
static_resources:
  listeners:
  - name: api
    address:
      socket_address: { address: 127.0.0.1, port_value: ${port} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
${hardened ? `          # Decide on the path the upstream will see: normalized (RFC 3986), slashes merged,
          # escaped slashes and backslashes refused, and no header with an underscore (WSGI,
          # Rack and CGI upstreams read \`x_portcullis_tenant\` as \`x-portcullis-tenant\`).
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
` : ''}          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                ${direct ? 'direct_response: { status: 200, body: { inline_string: "ok" } }' : 'route: { cluster: backend }'}
          http_filters:
${wasmFilter}${extraFilters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
${cluster('backend', upstreamPort)}${Object.entries(clusters).map(([n, p]) => cluster(n, p)).join('')}`;
}

/**
 * The request headers an edge reads besides Envoy's ext_authz defaults: the token cookie, a
 * CORS preflight's `origin` and `access-control-request-method`, and the method-override
 * headers it refuses.
 */
const EDGE_HEADERS = ['cookie', 'origin', 'access-control-request-method', 'x-http-method-override', 'x-http-method', 'x-method-override'];

/**
 * The HTTP filter that asks `portcullis serve` (Envoy HTTP ext_authz, cluster `cluster`) instead
 * of deciding in Wasm: the original method and path go to `/ext_authz` + path; besides Envoy's
 * defaults (`Authorization` among them) only `EDGE_HEADERS` and `allowedHeaders` are sent; an allow
 * sets the `x-portcullis-*` identity headers (replacing a client's; the service names the ones
 * it does not set for removal); a denial passes the service's status, body and
 * `WWW-Authenticate` to the client; no answer is a 503, never an allow.
 */
export function extAuthzFilter({ cluster = 'portcullis', timeout = '1s', allowedHeaders = [] } = {}) {
  const patterns = [...EDGE_HEADERS, ...allowedHeaders].map((h) => `{ exact: ${h} }`).join(', ');
  return `          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              status_on_error: { code: ServiceUnavailable }
              # Each value of a repeated header apart (the service refuses two tokens), not joined.
              encode_raw_headers: true
              validate_mutations: true
              http_service:
                path_prefix: /ext_authz
                server_uri: { uri: "http://127.0.0.1", cluster: ${cluster}, timeout: ${timeout} }
                authorization_request:
                  # The headers the edge reads besides Envoy's defaults (Authorization among
                  # them): a token cookie, a CORS preflight's, and the method overrides it
                  # refuses (unsent, the service could not see them). Add every header a route
                  # reads.
                  allowed_headers:
                    patterns: [${patterns}]
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [{ prefix: x-portcullis- }]
                  allowed_client_headers:
                    patterns: [{ exact: content-type }, { exact: retry-after }]
`;
}

export { echoServer } from '../../../examples/envoy/echo.mjs';

/** Start Envoy on a rendered config; resolves when its listener answers. */
export async function startEnvoy(yaml, { concurrency = 2, logLevel = 'info' } = {}) {
  const dir = tmp();
  const file = join(dir, 'envoy.yaml');
  writeFileSync(file, yaml);
  const p = await start(ENVOY, ['-c', file, '--concurrency', String(concurrency), '-l', logLevel, '--component-log-level', 'main:info,config:info', '--base-id', String(Math.floor(Math.random() * 1e6)), '--disable-hot-restart'], {
    ready: /starting workers/,
    name: 'envoy',
  });
  await sleep(300);
  return p;
}

/** `envoy --mode validate -c file`; returns {ok, output}. */
export function validateEnvoy(file, env = {}) {
  try {
    const out = execFileSync(ENVOY, ['--mode', 'validate', '-c', file, '-l', 'error', '--disable-hot-restart'], {
      cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
    });
    return { ok: true, output: out };
  } catch (e) {
    return { ok: false, output: `${e.stdout}${e.stderr}` };
  }
}

/**
 * The routes the conformance cases are mapped onto (see `caseRequest`), for a bundle of their
 * own: a user's tenant, which the cases give, comes from a header the client sends here
 * (`client_header`: a choice no real route should make for facts a policy relies on); a
 * report's facts are stored.
 */
export const CONFORMANCE_ROUTES = [
  // A report's facts are stored (the pack's `bundle.json`): the route names the report only.
  ...[['GET', '/reports/{t}/{id}', 'view'], ['POST', '/reports/{t}/{id}/export', 'export']].map(([method, path, action]) => ({
    methods: [method], path, action, resource: { type: 'Report', id: '{t}/{id}' },
  })),
  { methods: ['POST'], path: '/users/{t}/{id}/manage', action: 'manage_user', resource: { type: 'User', id: '{t}/{id}', attrs: { tenant: { client_header: 'x-user-tenant' } } } },
];

/** The entity types the TechFin pack stores: a request cannot give their attributes. */
const STORED = new Set(JSON.parse(readFileSync(join(ROOT, 'policies/techfin/bundle.json'), 'utf8')).data.stored);

/**
 * Whether a conformance case can be sent as an HTTP request: its action has a route, its
 * resource id is one path segment, it gives no attributes of a stored type (a route cannot:
 * such cases are the engine's refusals, run by the other hosts), and it sends no context (an HTTP request has none: the
 * engine's own context keys, which such cases try to forge, cannot come from a client).
 */
export function httpCase(c) {
  const { action, resource, context = {} } = c.request;
  const parts = resource.id.split('/');
  return ['view', 'export', 'manage_user'].includes(action) && Object.keys(context).length === 0
    && !(STORED.has(resource.type) && Object.keys(resource.attrs ?? {}).length > 0)
    && parts.length === 2 && parts.every((p) => p !== '' && p !== '.' && p !== '..');
}

/** The HTTP request for an exported conformance case. */
export function caseRequest(c) {
  const { action, resource } = c.request;
  // Resource ids are `<tenant>/<name>`: two path segments, each one encoded.
  const id = resource.id.split('/').map(encodeURIComponent).join('/');
  const headers = {};
  for (const [k, v] of Object.entries(resource.attrs ?? {})) headers[`x-${resource.type.toLowerCase()}-${k}`] = String(v);
  if (c.token !== null) headers.authorization = `Bearer ${c.token}`;
  const [method, path] = {
    view: ['GET', `/reports/${id}`],
    export: ['POST', `/reports/${id}/export`],
    manage_user: ['POST', `/users/${id}/manage`],
  }[action];
  return { method, path, headers };
}

/**
 * The filter configuration of examples/envoy: the TechFin pack (its routes are in the bundle),
 * inline or (`remote`) polled from `portcullis serve`'s admin listener, which also serves the
 * tenants' stored data.
 */
export function exampleFilterConfig(remote = false) {
  return {
    bundle: remote
      ? { remote: { url: 'http://127.0.0.1:8182/v1/bundle', cluster: 'policy', poll_seconds: 30 } }
      : { inline: compileBundle(join(ROOT, 'policies/techfin')) },
    data: { url: 'http://127.0.0.1:8182', cluster: 'policy' },
    edge: {
      unmatched: 'deny',
      token: [{ header: { name: 'authorization', prefix: 'Bearer ' } }, { cookie: { name: 'access_token' } }],
      forward: { tenant: 'x-portcullis-tenant', subject: 'x-portcullis-subject', roles: 'x-portcullis-roles', decision_id: 'x-portcullis-decision-id' },
      dry_run: false,
      cors_preflight: true,
      failure_mode: 'closed',
    },
    log: { level: 'info' },
  };
}

/** Envoy's stats as a map (`/stats?format=json` is not stable across versions: text form). */
export async function stats(adminPort) {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).text();
  return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => { const i = l.lastIndexOf(': '); return [l.slice(0, i), l.slice(i + 2)]; }));
}


/**
 * A decision service (`portcullis serve` of the bundle directory `dir`) whose store holds
 * `documents` (data snapshots: a conformance export's `data[bundle]`), as the filter's data
 * source: its admin listener, reached through the Envoy cluster `data`. `data` is the filter
 * configuration's, `clusters` the cluster for `envoyYaml`.
 */
export async function dataSource(dir, documents = []) {
  const service = await serve(dir, ['--store', seedStore(dir, documents)]);
  return { service, data: { url: service.admin, cluster: 'data' }, clusters: { data: Number(new URL(service.admin).port) } };
}

/** A token of `tenant` signed with the bundle directory's dev keys (`portcullis token`). */
export function devToken(dir, tenant, claims) {
  return execFileSync(PORTCULLIS, ['token', '--bundle', dir, '--tenant', tenant, '--claims', JSON.stringify(claims)], { encoding: 'utf8' }).trim();
}

/** Claims of an Entra (acme, wonka) finance analyst of `department`. */
export const analystClaims = (department, oid = 'alice') => ({ oid, roles: ['FinanceAnalyst'], department, amr: ['mfa'] });

/** Claims of an Entra app-only token of a tenant's back office, with the `DataWriter` role. */
export const backOfficeClaims = {
  oid: 'b0ff1ce0-0000-4000-8000-000000000001', sub: 'b0ff1ce0-0000-4000-8000-000000000001',
  azp: 'backoffice-app', idtyp: 'app', roles: ['DataWriter'],
};
