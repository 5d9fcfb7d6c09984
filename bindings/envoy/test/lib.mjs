// Shared pieces of the Envoy filter's end-to-end tests: the envoy.yaml renderer (also used for
// examples/envoy/envoy.yaml), processes (Envoy, the OpenID provider, an echo upstream) and
// small HTTP helpers. Every server listens on 127.0.0.1 only.

import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, readFileSync, cpSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const WASM = process.env.PORTCULLIS_WASM ?? join(ROOT, 'bindings/envoy/portcullis_envoy.wasm');
export const ENVOY = process.env.ENVOY_BIN ?? 'envoy';
export const PORTCULLIS = process.env.PORTCULLIS_BIN ?? join(ROOT, 'target/debug/portcullis');
export const CONFORMANCE_BIN = process.env.CONFORMANCE_BIN ?? join(ROOT, 'target/debug/portcullis-conformance');

/** Indent every line of `text` by `n` spaces. */
const indent = (text, n) => text.split('\n').map((l) => (l ? ' '.repeat(n) + l : l)).join('\n');

/**
 * An envoy.yaml: one listener on `port` whose HTTP filters are the Portcullis Wasm filter
 * (`filterConfig`, a JSON-serialisable object; omitted: no auth filter) and the router, routing
 * everything to the `backend` cluster at `upstreamPort`. `clusters` adds more clusters
 * (`{name: port}`, e.g. the IdP's), `adminPort` the admin interface. `direct`: answer 200 from
 * Envoy itself instead of routing to the upstream (benchmarks), `extraFilters`: YAML of more
 * HTTP filters before the router.
 */
export function envoyYaml({ port, adminPort, upstreamPort, filterConfig, clusters = {}, wasm = WASM, extraFilters = '', direct = false }) {
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
  return `# Rendered by bindings/envoy/test/lib.mjs (envoyYaml).
admin:
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

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const s = netServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}

export const tmp = () => mkdtempSync(join(tmpdir(), 'portcullis-envoy-'));

export { echoServer } from '../../../examples/envoy/echo.mjs';

/** Spawn a process; resolves once a stdout/stderr line matches `ready`. */
async function start(cmd, args, { ready, timeoutMs = 30000, name }) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  let readyLine;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready in ${timeoutMs} ms:\n${output.join('').slice(-4000)}`)), timeoutMs);
    const onData = (chunk) => {
      const text = chunk.toString();
      output.push(text);
      for (const line of text.split('\n')) {
        if (!readyLine && ready.test(line)) {
          readyLine = line;
          clearTimeout(timer);
          resolve();
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!readyLine) reject(new Error(`${name} exited with ${code}:\n${output.join('').slice(-4000)}`));
    });
  });
  return {
    child,
    readyLine,
    output: () => output.join(''),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** Start the OpenID provider harness (tests/idp). */
export async function startIdp({ port = 0, keysFile, extra = [] } = {}) {
  const args = [join(ROOT, 'tests/idp/idp.mjs'), '--port', String(port), ...(keysFile ? ['--keys', keysFile] : []), ...extra];
  const p = await start(process.execPath, args, { ready: /"ready":true/, name: 'idp' });
  const info = JSON.parse(p.readyLine);
  return { ...p, ...info };
}

/** A client-credentials access token from the IdP. */
export async function idpToken(issuer, clientId, secret) {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  if (res.status !== 200) throw new Error(`token endpoint: ${res.status} ${await res.text()}`);
  return (await res.json()).access_token;
}

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

/** Compile a bundle directory with the portcullis CLI; returns the compiled bundle object. */
export function compileBundle(dir) {
  const out = join(tmp(), 'bundle.json');
  execFileSync(PORTCULLIS, ['bundle', dir, '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  return JSON.parse(readFileSync(out, 'utf8'));
}

/**
 * policies/techfin plus a tenant `contoso` whose issuer is the IdP at `issuer` (keys by OIDC
 * discovery), compiled.
 */
export function techfinWithIdp(issuer) {
  const dir = join(tmp(), 'techfin');
  cpSync(join(ROOT, 'policies/techfin'), dir, { recursive: true });
  const tenantsFile = join(dir, 'tenants.json');
  const tenants = JSON.parse(readFileSync(tenantsFile, 'utf8'));
  tenants.tenants.contoso = {
    display_name: 'Contoso (oidc-provider on localhost)',
    issuers: [{
      issuer,
      audiences: ['api://techfin'],
      algorithms: ['RS256'],
      typ: 'at+jwt',
      discovery: `${issuer}/.well-known/openid-configuration`,
      claims: { preset: 'entra', attributes: { department: 'department' } },
    }],
  };
  writeFileSync(tenantsFile, JSON.stringify(tenants, null, 2));
  return compileBundle(dir);
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns truthy or `timeoutMs` passes; returns the last value. */
export async function until(fn, timeoutMs = 15000, stepMs = 200) {
  const end = Date.now() + timeoutMs;
  let value;
  while (Date.now() < end) {
    value = await fn();
    if (value) return value;
    await sleep(stepMs);
  }
  return value;
}
