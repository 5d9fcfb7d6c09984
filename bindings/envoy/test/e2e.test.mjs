// End-to-end tests of the Portcullis Envoy filter: a real Envoy 1.40 (V8) running
// portcullis_envoy.wasm, a real OpenID provider (tests/idp, oidc-provider), an echo upstream.
// Run by bindings/envoy/test.sh, which builds the filter, installs Envoy and exports the
// CLIs the tests call (portcullis, portcullis-conformance).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CONFORMANCE_BIN, CONFORMANCE_ROUTES, PORTCULLIS, ROOT, caseRequest, compileBundle, dataSource, echoServer, envoyYaml, exampleFilterConfig,
  extAuthzFilter, freePort, httpCase, idpToken, serve, sleep, startEnvoy, startIdp, stats, techfinDir, techfinDirWithIdp, tmp, until,
} from './lib.mjs';
import { seedStore } from '../../../tests/idp/harness.mjs';

const FORWARD = ['x-portcullis-tenant', 'x-portcullis-subject', 'x-portcullis-roles', 'x-portcullis-decision-id'];

async function send(port, { method = 'GET', path, headers = {} }) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers });
  return { status: res.status, headers: res.headers, body: jsonOrText(await res.text()) };
}

/** A response body: JSON when it parses, else the text. */
function jsonOrText(text) {
  try { return JSON.parse(text); } catch { return text; }
}

/** A request with headers as a flat `[name, value, ...]` list, so a name can repeat. */
function sendRaw(port, path, headers, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers: ['host', `127.0.0.1:${port}`, ...headers] }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: jsonOrText(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** One raw HTTP/1.1 exchange (for bytes `fetch` refuses to send); resolves to the status line. */
function raw(port, bytes) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d) => { data += d.toString('latin1'); });
    socket.on('error', () => resolve(data.split('\r\n')[0] || 'error'));
    socket.on('close', () => resolve(data.split('\r\n')[0] || 'closed'));
    socket.setTimeout(5000, () => socket.destroy());
    socket.write(bytes); // not end(): Envoy resets an HTTP/1 stream whose client half-closes
  });
}

/** Decision-log lines Envoy printed, by decision id. */
function decisionLog(envoy) {
  const lines = new Map();
  for (const line of envoy.output().split('\n')) {
    const i = line.indexOf('{"decision_id"');
    if (i < 0) continue;
    try {
      const record = JSON.parse(line.slice(i));
      lines.set(record.decision_id, record);
    } catch { /* not ours */ }
  }
  return lines;
}

/**
 * The conformance cases, exported at `now` (unix seconds): the filter reads the real clock, and
 * some cases sit one second from a time boundary (clock skew, session age), so every case must
 * be decided within the second it was exported for.
 */
function exportCases(now) {
  return exportDocument(now).cases;
}

/** The whole conformance export at `now`: decision `cases`, `http_cases` and their `data`. */
function exportDocument(now) {
  const file = join(tmp(), 'conformance.json');
  execFileSync(CONFORMANCE_BIN, ['export', '--now', String(now), '--out', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** The stored data the cases decide on (every case is of the TechFin pack): one snapshot a tenant. */
function conformanceData() {
  const { data } = exportDocument(Math.floor(Date.now() / 1000));
  assert.deepEqual(Object.keys(data), ['policies/techfin']);
  return data['policies/techfin'];
}

/**
 * Send `cases` (decision cases, or with `http` HTTP cases) once, answers unread: the first
 * request of each tenant waits for its data to be fetched, which must not push a timed case out
 * of its second.
 */
async function warmUp(port, cases, http = false) {
  await pool(cases, 16, (c) => (http
    ? sendRaw(port, c.request.path, c.request.headers.flat(), c.request.method)
    : send(port, caseRequest(c))));
}

/**
 * Send every HTTP conformance case (`cases`, exported moments ago) to Envoy at `port` as the
 * client wrote it, twice (the second time the token is cached), and check both rounds with the
 * conformance crate's checker: the status, the code and challenge of a local answer, the
 * identity headers the upstream got, and the decision's record (`records()`, by decision id).
 * Returns the failures.
 */
async function httpConformance(port, cases, records, label) {
  const rounds = [];
  for (let r = 0; r < 2; r += 1) {
    const responses = [];
    for (const c of cases) responses.push(await sendRaw(port, c.request.path, c.request.headers.flat(), c.request.method));
    rounds.push(responses);
  }
  await sleep(300); // let the records be written
  const log = records();
  const failures = [];
  rounds.forEach((responses, r) => {
    const answers = {};
    cases.forEach((c, i) => {
      const res = responses[i];
      const forwarded = res.status === 200;
      const identity = {};
      if (forwarded) {
        for (const name of Object.values(c.edge.forward ?? {})) {
          const value = res.body?.headers?.[name];
          if (value !== undefined) identity[name] = value;
        }
      }
      const id = forwarded ? identity['x-portcullis-decision-id'] : res.body?.decision_id;
      const record = id ? log.get(id) : undefined;
      if (id && !record) failures.push(`${c.file}: ${c.name}: no record of decision ${id}`);
      if (c.token && record && JSON.stringify(record).includes(c.token)) failures.push(`${c.file}: ${c.name}: the token is in the record`);
      answers[`${c.file}: ${c.name}`] = {
        status: res.status,
        identity,
        code: forwarded ? null : (res.body?.code ?? null),
        challenge: forwarded ? null : (res.headers['www-authenticate'] ?? null),
        decision: record ? { decision: record.decision, reasons: record.reasons, errors: record.errors, decision_id: record.decision_id } : null,
      };
    });
    const file = join(tmp(), `http-answers-${label}-${r}.json`);
    writeFileSync(file, JSON.stringify(answers, null, 2));
    try {
      const report = execFileSync(CONFORMANCE_BIN, ['check-http', '--answers', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      console.log(`${label} HTTP conformance, round ${r + 1}: ${report.trim().split('\n').pop()}`);
    } catch (err) {
      failures.push(`round ${r + 1}:\n${err.stdout}${err.stderr}`);
    }
  });
  return failures;
}

/** The records of an audit log, by decision id. */
function auditRecords(file) {
  const records = new Map();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    try {
      const record = JSON.parse(line);
      records.set(record.decision_id, record);
    } catch { /* a line being written */ }
  }
  return records;
}

/** Map with at most `limit` calls in flight. */
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

/** What is wrong with one case's HTTP answer and its decision-log record. */
function check(c, res, record) {
  const problems = [];
  const want = { allow: 200, deny: 403, unauthenticated: 401 }[c.expect.decision];
  if (res.status !== want) problems.push(`status ${res.status}, expected ${want}`);
  if (!record) return [...problems, 'no decision-log line'];
  if (record.decision !== c.expect.decision) problems.push(`logged ${record.decision}`);
  if (c.expect.reasons && JSON.stringify([...record.reasons].sort()) !== JSON.stringify([...c.expect.reasons].sort())) {
    problems.push(`reasons ${JSON.stringify(record.reasons)}, expected ${JSON.stringify(c.expect.reasons)}`);
  }
  if (c.expect.error && !record.errors.includes(c.expect.error)) problems.push(`errors ${JSON.stringify(record.errors)} lack ${c.expect.error}`);
  // The log names the principal's entity: `User::"<tenant>/<id>"` or `Client::...`.
  const principal = c.expect.principal;
  if (principal?.kind && !String(record.principal).startsWith(principal.kind === 'client' ? 'Client::' : 'User::')) problems.push(`principal ${record.principal}, expected a ${principal.kind}`);
  if (principal?.id && !String(record.principal).endsWith(`/${principal.id}"`)) problems.push(`principal ${record.principal}, expected id ${principal.id}`);
  if (c.token && JSON.stringify(record).includes(c.token)) problems.push('the token is in the decision log');
  if (res.status === 200) {
    const h = res.body.headers;
    if (h['x-portcullis-tenant'] !== record.tenant) problems.push(`forwarded tenant ${h['x-portcullis-tenant']}, decided for ${record.tenant}`);
  } else if (res.status === 401 && !/^Bearer realm="api"/.test(res.headers.get('www-authenticate') ?? '')) {
    problems.push('401 without a Bearer challenge');
  }
  return problems;
}

/**
 * Send every shared conformance case that maps onto an HTTP request to Envoy at `port`, each in
 * the second it was exported for, and check the answer and the decision's record (`records()`:
 * the records so far, by decision id). The failures, and the counts.
 */
async function conformanceOverHttp(port, records) {
  const key = (c) => `${c.file}: ${c.name}`;
  const verdicts = new Map();
  let pending = null;
  // Rounds: export for a second a little ahead, wait for it, send every pending case at once;
  // a case whose decision fell into another second is sent again in the next round.
  for (let round = 0; round < 4 && (pending === null || pending.size > 0); round += 1) {
    const now = Math.floor(Date.now() / 1000) + 2;
    const cases = exportCases(now).filter(httpCase).filter((c) => pending === null || pending.has(key(c)));
    if (pending === null) assert.ok(cases.length > 200, `only ${cases.length} cases exported`);
    pending = new Set();
    await sleep(now * 1000 - Date.now());
    const answers = await pool(cases, 16, (c) => send(port, caseRequest(c)));
    await sleep(300); // let the records be written
    const log = records();
    cases.forEach((c, i) => {
      const res = answers[i];
      const id = res.status === 200 ? res.body?.headers?.['x-portcullis-decision-id'] : res.body?.decision_id;
      const record = id ? log.get(id) : undefined;
      if (record && record.time !== now) {
        pending.add(key(c));
        return;
      }
      verdicts.set(key(c), { c, problems: check(c, res, record) });
    });
  }
  const failures = [...(pending ?? [])].map((k) => `${k}: never decided within its second`);
  let passed = 0;
  let known = 0;
  for (const [k, { c, problems }] of verdicts) {
    if (c.known_issue) {
      known += 1;
      if (problems.length === 0) failures.push(`${k}: known issue now passes; remove the marker`);
    } else if (problems.length) {
      failures.push(`${k}: ${problems.join('; ')}`);
    } else {
      passed += 1;
    }
  }
  return { failures, passed, known };
}

// `crypto: envoy` (the default) checks RSA and ECDSA signatures with Envoy's `verify_signature`,
// `crypto: wasm` in Wasm: both must decide every case alike.
// The filter fetches the cases' stored data from a decision service whose store holds it.
for (const crypto of ['envoy', 'wasm']) describe(`conformance cases through Envoy (crypto: ${crypto})`, () => {
  let upstream, envoy, port, source;

  before(async () => {
    upstream = await echoServer();
    port = await freePort();
    const dir = techfinDir({ routes: CONFORMANCE_ROUTES });
    source = await dataSource(dir, conformanceData());
    const yaml = envoyYaml({
      port, adminPort: await freePort(), upstreamPort: upstream.port, clusters: source.clusters,
      filterConfig: { bundle: { inline: compileBundle(dir) }, data: source.data, log: { level: 'info' }, crypto },
    });
    envoy = await startEnvoy(yaml);
    await warmUp(port, exportCases(Math.floor(Date.now() / 1000)).filter(httpCase));
  });
  after(async () => { await envoy?.stop(); await source?.service.stop(); await upstream?.close(); });

  test('every shared conformance case decides as expected over HTTP', async () => {
    const { failures, passed, known } = await conformanceOverHttp(port, () => decisionLog(envoy));
    console.log(`envoy conformance (crypto: ${crypto}): ${passed} passed, ${failures.length} failed, ${known} known engine issues`);
    assert.deepEqual(failures, []);
    assert.doesNotMatch(envoy.output(), /panicked/i);
    // With crypto: envoy, RS256 and ES256 cases went through Envoy's own `verify_signature`,
    // not the Wasm fallback.
    assert.doesNotMatch(envoy.output(), /`verify_signature` answered/);
  });
});

// The HTTP conformance cases (tests/conformance/cases/http.json: the TechFin pack's own routes,
// the file's edge options) through the filter and through ext_authz to `portcullis serve`.
// Envoy's own path normalization is off here (`hardened: false`), so that the edge gets every
// path as the client wrote it, as the other hosts do; the examples keep it on.
describe('HTTP conformance cases through Envoy', () => {
  let upstream, cases, edgeFile;
  const stops = [];

  before(async () => {
    upstream = await echoServer();
    cases = exportDocument(Math.floor(Date.now() / 1000)).http_cases;
    assert.ok(cases.length > 30, `only ${cases.length} HTTP cases exported`);
    assert.equal(new Set(cases.map((c) => JSON.stringify(c.edge))).size, 1, 'one set of edge options');
    edgeFile = join(tmp(), 'edge.json');
    writeFileSync(edgeFile, JSON.stringify(cases[0].edge));
  });
  after(async () => {
    for (const stop of stops.reverse()) await stop();
    await upstream?.close();
  });

  test('the Wasm filter answers every case as expected', async () => {
    const port = await freePort();
    const dir = join(ROOT, cases[0].bundle);
    const source = await dataSource(dir, conformanceData());
    stops.push(() => source.service.stop());
    const envoy = await startEnvoy(envoyYaml({
      port, adminPort: await freePort(), upstreamPort: upstream.port, hardened: false, clusters: source.clusters,
      filterConfig: { bundle: { inline: compileBundle(dir) }, data: source.data, edge: cases[0].edge, log: { level: 'info' } },
    }));
    stops.push(() => envoy.stop());
    await warmUp(port, cases, true);
    assert.deepEqual(await httpConformance(port, cases, () => decisionLog(envoy), 'filter'), []);
    assert.doesNotMatch(envoy.output(), /panicked/i);
  });

  test('ext_authz to portcullis serve answers every case as expected', async () => {
    const dir = join(ROOT, cases[0].bundle);
    const service = await serve(dir, ['--edge', edgeFile, '--store', seedStore(dir, conformanceData())]);
    stops.push(() => service.stop());
    const port = await freePort();
    const envoy = await startEnvoy(envoyYaml({
      port, adminPort: await freePort(), upstreamPort: upstream.port, hardened: false,
      extraFilters: extAuthzFilter(), clusters: { portcullis: Number(new URL(service.base).port) },
    }));
    stops.push(() => envoy.stop());
    const audit = () => auditRecords(service.auditLog);
    assert.deepEqual(await httpConformance(port, cases, audit, 'ext_authz'), []);
  });
});

// The same cases through Envoy's HTTP ext_authz to `portcullis serve` (no Wasm filter): the
// service's edge maps each request with the same routes and rules, and its audit log holds
// the records.
describe('conformance cases through Envoy ext_authz to portcullis serve', () => {
  let upstream, envoy, service, port;

  before(async () => {
    upstream = await echoServer();
    port = await freePort();
    const dir = techfinDir({ routes: CONFORMANCE_ROUTES });
    service = await serve(dir, ['--store', seedStore(dir, conformanceData())]);
    const servicePort = Number(new URL(service.base).port);
    const yaml = envoyYaml({
      port, adminPort: await freePort(), upstreamPort: upstream.port,
      // The test routes read a user's tenant from this header.
      extraFilters: extAuthzFilter({ allowedHeaders: ['x-user-tenant'] }),
      clusters: { portcullis: servicePort },
    });
    envoy = await startEnvoy(yaml);
  });
  after(async () => { await envoy?.stop(); await service?.stop(); await upstream?.close(); });

  const audit = () => auditRecords(service.auditLog);

  test('every shared conformance case decides as expected over HTTP', async () => {
    const { failures, passed, known } = await conformanceOverHttp(port, audit);
    console.log(`ext_authz conformance: ${passed} passed, ${failures.length} failed, ${known} known engine issues`);
    assert.deepEqual(failures, []);
  });

  test('identity headers a client sends never reach the upstream', async () => {
    const allowed = exportCases(Math.floor(Date.now() / 1000)).find((c) => c.expect.decision === 'allow' && httpCase(c) && c.request.action === 'view');
    const request = caseRequest(allowed);
    const res = await send(port, { ...request, headers: { ...request.headers, 'x-portcullis-tenant': 'globex', 'x-portcullis-roles': 'TenantAdmin' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.notEqual(res.body.headers['x-portcullis-tenant'], 'globex');
    assert.notEqual(res.body.headers['x-portcullis-roles'], 'TenantAdmin');
    // Two tokens, each its own header (encode_raw_headers): refused, not the first one taken.
    const twice = await sendRaw(port, request.path, ['authorization', request.headers.authorization, 'authorization', request.headers.authorization], request.method);
    assert.equal(twice.status, 403);
    // The service down: 503, never an allow.
    await service.stop();
    service = undefined;
    const down = await send(port, request);
    assert.equal(down.status, 503);
  });
});

describe('with a real OpenID provider', () => {
  let upstream, envoy, idp, port, adminPort, idpPort, keysFile, issuer, earlyToken, source;
  const admin = () => idpToken(issuer, 'admin', 'secret-admin');
  const analyst = () => idpToken(issuer, 'analyst-finance', 'secret-analyst');
  // The pack's own routes (routes.json): a tenant admin manages a user of her tenant.
  const manage = (token, extra = {}, path = '/tenants/contoso/users/bob') => send(port, {
    method: 'PUT', path, headers: { authorization: `Bearer ${token}`, ...extra },
  });

  before(async () => {
    upstream = await echoServer();
    port = await freePort();
    adminPort = await freePort();
    idpPort = await freePort();
    keysFile = join(tmp(), 'idp-keys.json');
    issuer = `http://127.0.0.1:${idpPort}`;
    const dir = techfinDirWithIdp(issuer);
    // The pack stores reports: the filter needs a data source, here one that stores nothing.
    source = await dataSource(dir);
    const filterConfig = {
      bundle: { inline: compileBundle(dir) },
      data: source.data,
      edge: {
        unmatched: 'pass',
        token: [{ header: { name: 'authorization', prefix: 'Bearer ' } }, { cookie: { name: 'access_token' } }, { query: { name: 'access_token' } }],
      },
      keys: { clusters: { [issuer]: 'idp' }, timeout_ms: 1000, refresh: { default_age_seconds: 300, retry_seconds: 1, unknown_kid_cooldown_seconds: 1 } },
      stats: { routes: true },
    };
    // Mint a token with the IdP's keys, then take the IdP away before Envoy ever reaches it.
    idp = await startIdp({ port: idpPort, keysFile });
    earlyToken = await admin();
    await idp.stop();
    // Not hardened: requests Envoy would refuse reach the filter, whose own rules are tested.
    envoy = await startEnvoy(envoyYaml({ port, adminPort, upstreamPort: upstream.port, filterConfig, clusters: { idp: idpPort, ...source.clusters }, hardened: false }));
  });
  after(async () => { await envoy?.stop(); await idp?.stop(); await source?.service.stop(); await upstream?.close(); });

  test('IdP down at start: fail closed (503), then recover without restarting Envoy', async () => {
    const token = earlyToken;
    await sleep(1500);
    const down = await manage(token);
    assert.equal(down.status, 503);
    assert.equal(down.body.code, 'unavailable');
    idp = await startIdp({ port: idpPort, keysFile });
    const up = await until(async () => { const r = await manage(token); return r.status === 200 && r; });
    assert.equal(up.status, 200, 'the filter fetched the keys once the IdP was back');
    assert.equal(up.body.headers['x-portcullis-tenant'], 'contoso');
    assert.equal(up.body.headers['x-portcullis-subject'], 'dave');
  });

  test('spoofed identity headers are removed, allowed or not, under any spelling', async () => {
    const token = await admin();
    const spoof = { 'x-portcullis-tenant': 'acme', 'x-portcullis-subject': 'root', 'x-portcullis-roles': 'TenantAdmin', 'x-portcullis-decision-id': 'forged' };
    const allowed = await manage(token, spoof);
    assert.equal(allowed.status, 200);
    assert.equal(allowed.body.headers['x-portcullis-tenant'], 'contoso');
    assert.equal(allowed.body.headers['x-portcullis-subject'], 'dave');
    assert.equal(allowed.body.headers['x-portcullis-roles'], 'TenantAdmin');
    assert.notEqual(allowed.body.headers['x-portcullis-decision-id'], 'forged');
    // Each spoofed header twice (fetch would join them into one), and in the spellings WSGI,
    // Rack and CGI upstreams fold into the same variable: no copy survives.
    const variants = Object.entries(spoof).flatMap(([name, value]) => [
      name, value, name, `${value}2`, name.replaceAll('-', '_'), `${value}3`, name.toUpperCase(), `${value}4`,
    ]);
    const twice = await sendRaw(port, '/tenants/contoso/users/bob', ['authorization', `Bearer ${token}`, ...variants], 'PUT');
    assert.equal(twice.status, 200);
    assert.equal(twice.body.headers['x-portcullis-tenant'], 'contoso');
    assert.equal(twice.body.headers['x-portcullis-subject'], 'dave');
    assert.equal(twice.body.headers['x-portcullis-roles'], 'TenantAdmin');
    assert.match(twice.body.headers['x-portcullis-decision-id'], /^[0-9a-f]{24}$/);
    for (const name of Object.keys(spoof)) assert.equal(twice.body.headers[name.replaceAll('-', '_')], undefined, name);
    // An unmatched route passes (unmatched: pass) without any identity header, in any spelling.
    const passed = await sendRaw(port, '/public/info', variants);
    assert.equal(passed.status, 200);
    for (const h of FORWARD) {
      assert.equal(passed.body.headers[h], undefined, h);
      assert.equal(passed.body.headers[h.replaceAll('-', '_')], undefined, h);
    }
    // A role with a comma stays one role (percent-encoded).
    const comma = await manage(await idpToken(issuer, 'admin-comma', 'secret-admin'));
    assert.equal(comma.status, 200);
    assert.equal(comma.body.headers['x-portcullis-roles'], 'Ops%2CTeam,TenantAdmin');
  });

  test('token sources, RFC 6750 answers and policy denials', async () => {
    const token = await admin();
    assert.equal((await send(port, { method: 'PUT', path: '/tenants/contoso/users/bob', headers: { cookie: `a=b; access_token=${token}` } })).status, 200);
    assert.equal((await send(port, { method: 'PUT', path: `/tenants/contoso/users/bob?access_token=${token}` })).status, 200);
    const two = await send(port, { method: 'PUT', path: `/tenants/contoso/users/bob?access_token=${token}`, headers: { authorization: `Bearer ${token}` } });
    assert.equal(two.status, 400);
    assert.match(two.headers.get('www-authenticate'), /error="invalid_request"/);
    const twoHeaders = await sendRaw(port, '/tenants/contoso/users/bob', ['authorization', `Bearer ${token}`, 'authorization', `Bearer ${token}`], 'PUT');
    assert.equal(twoHeaders.status, 403, 'the same token header twice');
    const missing = await send(port, { method: 'PUT', path: '/tenants/contoso/users/bob' });
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer realm="api"');
    const bad = await manage(`${token}x`);
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get('www-authenticate'), 'Bearer realm="api", error="invalid_token"');
    assert.match(bad.body.decision_id, /^[0-9a-f]{24}$/);
    const notAdmin = await manage(await analyst());
    assert.equal(notAdmin.status, 403);
    assert.deepEqual(Object.keys(notAdmin.body).sort(), ['code', 'decision_id', 'message']);
    const crossTenant = await manage(token, {}, '/tenants/acme/users/bob');
    assert.equal(crossTenant.status, 403);
    // The edge never learns a report's department from the client: an analyst is not allowed
    // by it, whatever header she sends (the department rule needs stored facts).
    const report = await send(port, { path: '/tenants/contoso/reports/q3', headers: { authorization: `Bearer ${await analyst()}`, 'x-report-department': 'finance' } });
    assert.equal(report.status, 403);
    // The method the upstream is sent is the method decided: overrides are refused.
    assert.equal((await send(port, { path: '/tenants/contoso/reports/q3', headers: { authorization: `Bearer ${token}`, 'x-http-method-override': 'PUT' } })).status, 400);
    // CORS preflight of a routed request passes without a token.
    const preflight = await send(port, { method: 'OPTIONS', path: '/tenants/contoso/users/bob', headers: { origin: 'http://app.example', 'access-control-request-method': 'PUT' } });
    assert.equal(preflight.status, 200);
  });

  test('paths are decided only as the upstream will read them (filter rules, Envoy not normalizing)', async () => {
    const token = await admin();
    const auth = { authorization: `Bearer ${token}` };
    for (const path of [
      '/tenants/contoso/users/bob%2F..%2F..%2Facme%2Fusers%2Fceo',
      '/tenants/contoso/users/bob%2f..%2f..%2facme%2fusers%2fceo',
      '/tenants/contoso/users/%2E%2E%2F%2E%2E%2Facme%2Fusers%2Fceo',
      '/tenants/contoso/users/bob%252F..%252Facme',
      '/tenants/contoso/users/bob%5C..%5Cacme',
      '/tenants/contoso/users/bob%00',
      '/tenants/contoso/users/..',
      '/tenants/contoso/users/%2e%2e',
      '/tenants//contoso/users/bob',
      '/tenants/contoso/users/bob;x=1',
    ]) {
      // Sent as written (fetch would resolve the dot segments itself).
      const r = await sendRaw(port, path, ['authorization', auth.authorization], 'PUT');
      assert.equal(r.status, 400, `${path}: ${r.status}`);
    }
    // One trailing slash is the same resource.
    const trailing = await manage(token, {}, '/tenants/contoso/users/bob/');
    assert.equal(trailing.status, 200);
    assert.equal(trailing.body.url, '/tenants/contoso/users/bob/');
  });

  test('key rotation at the IdP is picked up without restarting Envoy (unknown kid refetch)', async () => {
    const before = await admin();
    const res = await fetch(`${issuer}/admin/rotate`, { method: 'POST' });
    const { kids } = await res.json();
    const rotated = await admin();
    assert.equal(JSON.parse(Buffer.from(rotated.split('.')[0], 'base64url')).kid, kids[0]);
    const ok = await until(async () => { const r = await manage(rotated); return r.status === 200 && r; }, 10000, 300);
    assert.equal(ok.status, 200, 'the new key was fetched after an unknown kid');
    assert.equal((await manage(before)).status, 200, 'the old key stays valid while the IdP publishes it');
  });

  test('IdP down after keys were loaded: last good keys stay', async () => {
    const token = await admin();
    await idp.stop();
    // A token with an unknown kid triggers a refetch, which fails: the keys must survive it.
    const [h, p, s] = token.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url'));
    const forged = [Buffer.from(JSON.stringify({ ...header, kid: 'k-unknown' })).toString('base64url'), p, s].join('.');
    assert.equal((await manage(forged)).status, 401);
    await sleep(2500);
    assert.equal((await manage(token)).status, 200);
    assert.match(envoy.output(), /fetching the keys of .* failed/);
    idp = await startIdp({ port: idpPort, keysFile });
  });

  test('malformed requests are answered without a crash', async () => {
    const token = await admin();
    assert.equal((await send(port, { path: '/tenants/%zz/reports/q3', headers: { authorization: `Bearer ${token}` } })).status, 400);
    assert.equal((await send(port, { path: '/tenants/%ff%fe/reports/q3', headers: { authorization: `Bearer ${token}` } })).status, 400);
    assert.equal((await manage('a'.repeat(50000))).status, 401);
    assert.equal((await manage('\u00e9t\u00e9.x.y')).status, 401);
    // Raw bytes: a non-UTF-8 token, a huge header, a header name that is not UTF-8.
    const bytes = (head) => Buffer.concat([Buffer.from(`PUT /tenants/contoso/users/bob HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-length: 0\r\n`, 'latin1'), head, Buffer.from('connection: close\r\n\r\n')]);
    assert.match(await raw(port, Buffer.from('PUT /tenants/contoso/users/bob HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nauthorization: Bearer \xff\xfe.\x80.\x81\r\nconnection: close\r\n\r\n', 'latin1')), / 401 /);
    assert.match(await raw(port, bytes(Buffer.from(`x-big: ${'a'.repeat(100 * 1024)}\r\n`))), / 431 /);
    assert.match(await raw(port, bytes(Buffer.from('x-\xff\xfe: v\r\n', 'latin1'))), / (200|400) /);
    for (let i = 0; i < 50; i += 1) {
      const junk = Buffer.from(Array.from({ length: 40 }, () => Math.floor(Math.random() * 94) + 33)).toString();
      const r = await send(port, { path: `/tenants/${encodeURIComponent(junk)}/reports/${i}`, headers: { authorization: `Bearer ${junk}.${junk}.${junk}` } });
      // 403: a comma in the token reads as a repeated Authorization header.
      assert.ok([400, 401, 403].includes(r.status), `status ${r.status}`);
    }
    // Still serving, and the VM never crashed.
    assert.equal((await manage(token)).status, 200);
    assert.doesNotMatch(envoy.output(), /panicked|Plugin configured to fail closed failed/i);
  });

  test('counters are Envoy stats', async () => {
    const s = await stats(adminPort);
    for (const name of ['allowed', 'denied', 'unauthenticated', 'errors']) {
      const value = Number(s[`wasmcustom.portcullis.${name}`]);
      assert.ok(value > 0, `wasmcustom.portcullis.${name} = ${s[`wasmcustom.portcullis.${name}`]}`);
      // With `stats.routes`, the same decisions by route: every allow has a route; a request
      // refused before any route matched (a bad path, no route) counts only in the total.
      const byRoute = Object.entries(s)
        .filter(([k]) => k.startsWith('wasmcustom.portcullis.route.') && k.endsWith(`.${name}`))
        .reduce((sum, [, v]) => sum + Number(v), 0);
      if (name === 'allowed') assert.equal(byRoute, value, 'the routes\' allows add up to the total');
      else assert.ok(byRoute <= value, `${name}: ${byRoute} by route, ${value} in all`);
    }
    assert.ok(Number(s['wasmcustom.portcullis.route.tenants_tenant_users_id.allowed']) > 0, JSON.stringify(Object.keys(s).filter((k) => k.includes('.route.'))));
  });
});

describe('the shipped example configuration (Envoy normalizes, rejects underscores; routes deny)', () => {
  let upstream, envoy, port, source;
  const seen = [];
  const DEV = join(ROOT, 'policies/techfin');

  before(async () => {
    upstream = await echoServer(0, { onRequest: (req) => seen.push(req.url) });
    port = await freePort();
    source = await dataSource(DEV);
    const filterConfig = { ...exampleFilterConfig(), data: source.data };
    envoy = await startEnvoy(envoyYaml({ port, adminPort: await freePort(), upstreamPort: upstream.port, filterConfig, clusters: source.clusters }));
  });
  after(async () => { await envoy?.stop(); await source?.service.stop(); await upstream?.close(); });

  test('no path reaches another tenant, however it is encoded', async () => {
    const token = execFileSync(PORTCULLIS, ['token', '--bundle', DEV, '--tenant', 'acme', '--claims', JSON.stringify({ oid: 'root', roles: ['TenantAdmin'], amr: ['mfa'] })], { encoding: 'utf8' }).trim();
    const auth = { authorization: `Bearer ${token}` };
    const matrix = [
      ['/tenants/acme/users/bob%2F..%2F..%2Fglobex%2Fusers%2Fceo', 400],
      ['/tenants/acme/users/bob%2f..%2f..%2fglobex%2fusers%2fceo', 400],
      ['/tenants/acme/users/bob%252F..%252F..%252Fglobex%252Fusers%252Fceo', 400],
      ['/tenants/acme/users/bob%5C..%5C..%5Cglobex%5Cusers%5Cceo', 400],
      ['/tenants/acme/users/bob%00', 400],
      ['/tenants/acme/users/../../globex/users/ceo', 403],
      ['/tenants/acme/users/%2E%2E/%2E%2E/globex/users/ceo', 403],
      ['/tenants/acme//users/bob/../../../globex/users/ceo', 403],
    ];
    for (const [path, status] of matrix) {
      const r = await send(port, { method: 'PUT', path, headers: auth });
      assert.equal(r.status, status, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    assert.deepEqual(seen.filter((url) => /globex/i.test(url)), [], 'a request reached the upstream for globex');
    // Merged slashes and a trailing slash are the same user, and allowed.
    for (const path of ['/tenants//acme/users/bob', '/tenants/acme/users/bob/']) {
      assert.equal((await send(port, { method: 'PUT', path, headers: auth })).status, 200, path);
    }
  });

  test('an identity header with underscores is refused, a preflight of an unmatched route is not a preflight', async () => {
    const underscore = await sendRaw(port, '/tenants/acme/users/bob', ['x_portcullis_tenant', 'globex'], 'PUT');
    assert.equal(underscore.status, 400);
    const preflight = { origin: 'https://app.example', 'access-control-request-method': 'GET' };
    assert.equal((await send(port, { method: 'OPTIONS', path: '/admin', headers: preflight })).status, 403);
    assert.equal((await send(port, { method: 'OPTIONS', path: '/tenants/acme/reports/q3', headers: preflight })).status, 200);
    assert.ok(!seen.includes('/admin'), 'the unmatched preflight reached the upstream');
  });
});
