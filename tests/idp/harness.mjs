// A scriptable OpenID provider (idp.mjs) and the process and bundle helpers that the hosts'
// end-to-end suites share (the Envoy filter's, bindings/envoy/test; the decision service's,
// host/tests/e2e). Every server listens on 127.0.0.1 only.

import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, readFileSync, cpSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PORTCULLIS = process.env.PORTCULLIS_BIN ?? join(ROOT, 'target/debug/portcullis');

export const tmp = () => mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));

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

/** Spawn a process; resolves once a stdout/stderr line matches `ready`. */
export async function start(cmd, args, { ready, timeoutMs = 30000, name }) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  let readyLine;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready in ${timeoutMs} ms:\n${output.join('').slice(-4000)}`)), timeoutMs);
    // A line can arrive in pieces (Rust's unbuffered stderr writes a formatted line in
    // several writes): only whole lines are matched.
    const partial = { stdout: '', stderr: '' };
    const onData = (stream) => (chunk) => {
      const text = chunk.toString();
      output.push(text);
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop();
      for (const line of lines) {
        if (!readyLine && ready.test(line)) {
          readyLine = line;
          clearTimeout(timer);
          resolve();
        }
      }
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
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
  return compileBundle(techfinDirWithIdp(issuer));
}

/** A copy of policies/techfin; `routes` replaces its `routes.json` (a list of routes). */
export function techfinDir({ routes } = {}) {
  const dir = join(tmp(), 'techfin');
  cpSync(join(ROOT, 'policies/techfin'), dir, { recursive: true });
  if (routes !== undefined) writeFileSync(join(dir, 'routes.json'), JSON.stringify({ routes }, null, 2));
  return dir;
}

/**
 * A copy of policies/techfin (a directory) whose tenant `contoso` trusts `issuer`; see
 * `techfinWithIdp`. `routes`: replaces the pack's `routes.json` (`{routes: [...]}`).
 */
export function techfinDirWithIdp(issuer, { routes } = {}) {
  const dir = techfinDir({ routes });
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
  return dir;
}

/**
 * Start `portcullis serve --bundle <bundle>` (on a free port unless `extra` has `--listen`, with an
 * admin listener on another unless it has `--admin-listen`), with its audit log in a temporary
 * file; resolves once it listens, with its base URL and its admin listener's (`admin`).
 */
export async function serve(bundle, extra = []) {
  const auditLog = join(tmp(), 'audit.jsonl');
  const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const admin = extra.includes('--admin-listen') ? [] : ['--admin-listen', '127.0.0.1:0'];
  // The tenants' stored facts: an embedded store of this run's own.
  const store = extra.includes('--store') ? [] : ['--store', `sqlite:${join(tmp(), `data-${process.pid}-${storeCount++}.db`)}`];
  const p = await start(PORTCULLIS, ['serve', '--bundle', bundle, ...listen, ...admin, '--audit-log', auditLog, ...store, ...extra], {
    ready: /serving decisions at http:\/\//,
    name: 'portcullis serve',
    // A debug build compiles the engine component at start-up: seconds, more on a busy machine.
    timeoutMs: 90000,
  });
  const base = p.readyLine.match(/serving decisions at (http:\/\/[0-9.:]+)/)[1];
  const adminBase = p.readyLine.match(/admin at (http:\/\/[0-9.:]+)/)?.[1];
  return { ...p, base, admin: adminBase, auditLog };
}

let storeCount = 0;

/**
 * Store one entity of `tenant` through the service's data API at `base` with a back-office
 * `token` (a DataWriter client of that tenant): `id` is tenant-relative (`q3` is `acme/q3`).
 * Returns the new revision; throws with the service's answer when it refuses.
 */
export async function putEntity(base, token, tenant, type, id, entity) {
  const res = await fetch(`${base}/v1/data/${tenant}/entities/${type}/${id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(entity),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`PUT ${type}/${id} of ${tenant}: ${res.status} ${JSON.stringify(body)}`);
  return body.revision;
}

/** A report of `tenant` in `department` (and that department), through the data API. */
export async function storeReport(base, token, tenant, id, department) {
  await putEntity(base, token, tenant, 'Department', department, {});
  return putEntity(base, token, tenant, 'Report', id, {
    attrs: { department },
    parents: [{ type: 'Department', id: `${tenant}/${department}` }],
  });
}

/**
 * A new SQLite store holding `documents` (data snapshots, `{tenant, entities}`: a conformance
 * export's `data[bundle]`), written before any service opens it by `portcullis data import
 * --store`, with the bundle `dir`'s checks. Returns the store's spec, for `serve(…, ['--store',
 * spec])`.
 */
export function seedStore(dir, documents) {
  const work = tmp();
  const spec = `sqlite:${join(work, 'data.db')}`;
  for (const { tenant, entities } of documents) {
    if (!entities.length) continue;
    const file = join(work, `${tenant}.ndjson`);
    writeFileSync(file, entities.map((e) => JSON.stringify(e)).join('\n'));
    execFileSync(PORTCULLIS, ['data', 'import', tenant, file, '--store', spec, '--bundle', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  return spec;
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
