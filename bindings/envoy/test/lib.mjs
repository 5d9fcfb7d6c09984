// Shared pieces of the Envoy filter's end-to-end tests: the envoy.yaml renderer (also used for
// examples/envoy/envoy.yaml), Envoy itself and an echo upstream. The OpenID provider, process,
// bundle and polling helpers come from tests/idp/harness.mjs (shared with the decision
// service's suite) and are re-exported here. Every server listens on 127.0.0.1 only.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, sleep, start, tmp } from '../../../tests/idp/harness.mjs';

export {
  ROOT, PORTCULLIS, tmp, freePort, startIdp, idpToken, compileBundle, techfinWithIdp, techfinDirWithIdp, serve, sleep,
  until,
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
 * (`memory_allocator_manager`); the benchmark also measures without it.
 */
export function envoyYaml({ port, adminPort, upstreamPort, filterConfig, clusters = {}, wasm = WASM, extraFilters = '', direct = false, releaseMemory = true }) {
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
                  code:
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
          route_config:
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
export function validateEnvoy(file) {
  try {
    const out = execFileSync(ENVOY, ['--mode', 'validate', '-c', file, '-l', 'error', '--disable-hot-restart'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: true, output: out };
  } catch (e) {
    return { ok: false, output: `${e.stdout}${e.stderr}` };
  }
}

/** The routes the conformance cases are mapped onto (see `caseRequest`). */
export const CONFORMANCE_ROUTES = [
  ...[['GET', '/reports/{id}', 'view'], ['POST', '/reports/{id}/export', 'export'], ['DELETE', '/reports/{id}', 'delete']].map(([method, path, action]) => ({
    methods: [method], path, action,
    resource: { type: 'Report', id: '{id}', attrs: { tenant: { header: 'x-report-tenant' }, department: { header: 'x-report-department' } } },
    context: { mfa: { header: 'x-context-mfa' }, session_age: { header: 'x-context-session-age' } },
  })),
  { methods: ['POST'], path: '/users/{id}/manage', action: 'manage_user', resource: { type: 'User', id: '{id}', attrs: { tenant: { header: 'x-user-tenant' } } } },
];

/** The HTTP request for an exported conformance case. */
export function caseRequest(c) {
  const { action, resource, context = {} } = c.request;
  const id = encodeURIComponent(resource.id);
  const headers = {};
  for (const [k, v] of Object.entries(resource.attrs ?? {})) headers[`x-${resource.type.toLowerCase()}-${k}`] = String(v);
  for (const [k, v] of Object.entries(context)) headers[`x-context-${k.replace('_', '-')}`] = String(v);
  if (c.token !== null) headers.authorization = `Bearer ${c.token}`;
  const [method, path] = {
    view: ['GET', `/reports/${id}`],
    export: ['POST', `/reports/${id}/export`],
    delete: ['DELETE', `/reports/${id}`],
    manage_user: ['POST', `/users/${id}/manage`],
  }[action];
  return { method, path, headers };
}

/** Envoy's stats as a map (`/stats?format=json` is not stable across versions: text form). */
export async function stats(adminPort) {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).text();
  return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => { const i = l.lastIndexOf(': '); return [l.slice(0, i), l.slice(i + 2)]; }));
}

