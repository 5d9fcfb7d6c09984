// The tenants' stored data at the edge (`data`): a real Envoy 1.40 whose filter fetches each
// tenant's data on first use from the real decision service's admin listener
// (`GET /v1/data/{tenant}`, SQLite store in a temporary directory, bearer credential), polls
// it, and decides on it; a backend writes the facts through the service's write API with a
// real signed token. A scripted source then serves what a real one never would (another
// tenant's document, malformed and huge ones) and the memory budget is made tiny.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, createServer as tcpServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  analystClaims, backOfficeClaims, compileBundle, devToken, echoServer, envoyYaml, freePort, serve, sleep, startEnvoy, stats,
  techfinDir, tmp, until,
} from './lib.mjs';

const ADMIN_TOKEN = 'e2e-admin-credential-0123456789';

async function get(port, path, token, headers = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
  });
  const text = await res.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* text */ }
  return { status: res.status, headers: res.headers, body };
}

const counter = async (adminPort, name) => Number((await stats(adminPort))[name] ?? 0);

/**
 * A TCP forwarder on `port` to `target` (both on 127.0.0.1) that can be taken down and brought
 * back at once: the data source's reachability, without restarting the source.
 */
function forwarder(port, target) {
  const sockets = new Set();
  let server;
  return {
    async up() {
      server = tcpServer((client) => {
        const upstream = connect(target, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => { client.destroy(); upstream.destroy(); });
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      server.listen(port, '127.0.0.1');
      await once(server, 'listening');
    },
    async down() {
      if (!server) return;
      server.close();
      for (const s of sockets) s.destroy();
      server = undefined;
    },
  };
}

describe('tenants\' data from the decision service', () => {
  let upstream, envoy, service, link, dir, port, adminPort, dataPort, writer, alice, wonka;
  const seen = [];
  const q3 = '/tenants/acme/reports/q3';

  /** Store acme's report q3 in `department` through the service's write API. */
  const putReport = async (department) => {
    const res = await fetch(`${service.base}/v1/data/acme/entities/Report/q3`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ attrs: { department } }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    return JSON.parse(text).revision;
  };

  before(async () => {
    upstream = await echoServer(0, { onRequest: (req) => seen.push(req.url) });
    [port, adminPort, dataPort] = [await freePort(), await freePort(), await freePort()];
    dir = techfinDir();
    writer = devToken(dir, 'acme', backOfficeClaims);
    alice = devToken(dir, 'acme', analystClaims('finance'));
    wonka = devToken(dir, 'wonka', analystClaims('finance', 'willy'));
    process.env.PORTCULLIS_E2E_DATA_TOKEN = ADMIN_TOKEN;
    const tokenFile = join(tmp(), 'admin-token');
    writeFileSync(tokenFile, ADMIN_TOKEN);
    const store = join(tmp(), 'data.db');
    service = await serve(dir, ['--admin-token-file', tokenFile, '--store', `sqlite:${store}`]);
    // The filter reaches the service's admin listener through `link`, down for now.
    link = forwarder(dataPort, Number(new URL(service.admin).port));
    const filterConfig = {
      bundle: { inline: compileBundle(dir) },
      // The defaults otherwise: poll_ms 500, so that a write is enforced within a second.
      data: { url: `http://127.0.0.1:${dataPort}`, cluster: 'data', token_env: 'PORTCULLIS_E2E_DATA_TOKEN', timeout_ms: 1000, wait_ms: 1000 },
    };
    // Two workers: two VMs, which share every fetch. The source is not up yet.
    envoy = await startEnvoy(envoyYaml({
      port, adminPort, upstreamPort: upstream.port, filterConfig, clusters: { data: dataPort }, vmEnv: ['PORTCULLIS_E2E_DATA_TOKEN'],
    }));
  });
  after(async () => {
    await envoy?.stop();
    await link?.down();
    await service?.stop();
    await upstream?.close();
  });

  test('no token: 401 as before, and nothing fetched', async () => {
    const res = await get(port, q3);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="api"');
    assert.equal(await counter(adminPort, 'cluster.data.upstream_rq_total'), 0);
  });

  test('the source down at the first request: 503 after wait_ms, never forwarded', async () => {
    const started = Date.now();
    const res = await get(port, q3, alice);
    const waited = Date.now() - started;
    assert.equal(res.status, 503);
    assert.equal(res.body.code, 'unavailable');
    assert.ok(res.headers.get('retry-after'));
    assert.ok(waited >= 950 && waited < 3000, `answered after ${waited} ms`);
    assert.deepEqual(seen, [], 'forwarded without data');
    assert.ok(await counter(adminPort, 'wasmcustom.portcullis.data_wait_timeouts') >= 1);
    assert.match(envoy.output(), /fetching the data of tenant `acme` failed .*no data yet: its requests are answered 503/);
  });

  test('a stored fact decides at the edge, and a write is enforced within a second', async () => {
    await link.up();
    // The admin listener wants its credential: the filter sends it.
    assert.equal((await fetch(`${service.admin}/v1/data/acme`)).status, 401);
    await putReport('risk');
    // Acme's data arrives (the failed fetch is retried); the analyst of finance is denied a
    // report of risk, whatever department she claims for it.
    const denied = await until(async () => { const r = await get(port, q3, alice); return r.status === 403 && r; }, 10000, 100);
    assert.equal(denied.status, 403, JSON.stringify(denied.body));
    assert.equal(denied.body.code, 'forbidden');
    const claimed = await get(port, q3, alice, { 'x-report-department': 'finance', 'x-report-tenant': 'acme' });
    assert.equal(claimed.status, 403);
    assert.ok(await counter(adminPort, 'wasmcustom.portcullis.data_updates') >= 1);

    // The report moves to finance: allowed within a second of the write's acknowledgement.
    await putReport('finance');
    const written = Date.now();
    const allowed = await until(async () => { const r = await get(port, q3, alice); return r.status === 200 && r; }, 1000, 20);
    const delay = Date.now() - written;
    assert.equal(allowed.status, 200, `not allowed ${delay} ms after the write`);
    assert.equal(allowed.body.headers['x-portcullis-tenant'], 'acme');
    console.log(`write → enforced at the edge: ${delay} ms`);
    assert.ok(seen.includes(q3));
  });

  test('another tenant\'s token never loads or uses acme\'s data', async () => {
    const before = envoy.output();
    const res = await get(port, q3, wonka);
    assert.equal(res.status, 403, 'a wonka analyst of finance, on acme\'s finance report');
    const later = envoy.output().slice(before.length);
    // Wonka's own data was fetched (empty); the decision rests on it alone. (A worker that had
    // wanted acme's data for an acme request may load what another worker fetched meanwhile:
    // that is acme's own request being served, not wonka's.)
    assert.match(later, /data of tenant `wonka` at revision 0 in use \(fetched\)/);
    assert.doesNotMatch(later, /data of tenant `acme` at revision \d+ in use \(fetched\)/, 'acme fetched for wonka');
    const audit = later.split('\n').map((line) => line.match(/(\{"decision_id".*\})\s*$/)?.[1]).filter(Boolean).map((j) => JSON.parse(j));
    assert.equal(audit.length, 1, later);
    assert.equal(audit[0].tenant, 'wonka');
    assert.equal(audit[0].data_revision, 0, 'decided on wonka\'s (empty) data, not acme\'s revision');
    assert.deepEqual(audit[0].reasons, ['no-cross-tenant']);
    // Wonka's path, wonka's data: nothing of acme's is consulted.
    assert.equal((await get(port, '/tenants/wonka/reports/q3', wonka)).status, 403);
  });

  test('the source going down later: the last data is kept', async () => {
    await link.down();
    await sleep(1500); // a few failed polls
    assert.equal((await get(port, q3, alice)).status, 200, 'still decided on the last data');
    assert.match(envoy.output(), /fetching the data of tenant `acme` failed .*the last good data stays/);
    assert.doesNotMatch(envoy.output(), /panicked/i);
    assert.doesNotMatch(envoy.output(), new RegExp(ADMIN_TOKEN), 'the credential is never logged');
  });
});

describe('tenants\' data from a source that misbehaves, with a tiny budget', () => {
  let upstream, envoy, source, dir, port, adminPort, sourcePort, acme, wonka;
  const asked = [];
  const seen = [];
  /** What the source answers for each tenant: a document (object), a raw body (string). */
  const answers = {};
  const report = (tenant, department) => ({
    uid: { type: 'Report', id: `${tenant}/q3` }, attrs: { tenant, department }, parents: [],
  });
  const snapshot = (tenant, pad = 0) => ({
    tenant, revision: 1,
    entities: [report(tenant, 'finance'), ...Array.from({ length: pad }, (_, i) => ({ ...report(tenant, 'risk'), uid: { type: 'Report', id: `${tenant}/pad${i}` } }))],
  });

  before(async () => {
    upstream = await echoServer(0, { onRequest: (req) => seen.push(req.url) });
    [port, adminPort, sourcePort] = [await freePort(), await freePort(), await freePort()];
    dir = techfinDir();
    acme = devToken(dir, 'acme', analystClaims('finance'));
    wonka = devToken(dir, 'wonka', analystClaims('finance', 'willy'));
    source = createServer((req, res) => {
      asked.push(req.url);
      const tenant = decodeURIComponent(req.url.split('/')[3].split('?')[0]);
      const answer = answers[tenant];
      if (answer === undefined) { res.writeHead(404); res.end(); return; }
      const body = typeof answer === 'string' ? answer : JSON.stringify(answer);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    source.listen(sourcePort, '127.0.0.1');
    await once(source, 'listening');
    // One document of ~12 entities fits; two do not.
    const one = JSON.stringify(snapshot('acme', 10)).length;
    const filterConfig = {
      bundle: { inline: compileBundle(dir) },
      data: { url: `http://127.0.0.1:${sourcePort}`, cluster: 'data', timeout_ms: 1000, wait_ms: 500, poll_ms: 200, max_bytes: Math.floor(one * 1.5) },
    };
    // One worker: its budget is the one exercised.
    envoy = await startEnvoy(envoyYaml({ port, adminPort, upstreamPort: upstream.port, filterConfig, clusters: { data: sourcePort } }), { concurrency: 1 });
  });
  after(async () => {
    await envoy?.stop();
    source?.close();
    await upstream?.close();
  });

  const refusals = () => counter(adminPort, 'wasmcustom.portcullis.data_refused');

  test('a document of another tenant, a malformed one and a huge one are refused and counted', async () => {
    // Each case a tenant of its own: a refused fetch is retried after a delay.
    for (const [tenant, answer, expected] of [
      ['acme', snapshot('wonka'), /`acme` failed \(refused: the document is tenant `wonka`'s, not `acme`'s\)/],
      ['globex', '{"tenant": "globex", "revision": 1, "entities": [', /`globex` failed \(refused: not a data document/],
      ['initech', JSON.stringify(snapshot('initech', 400)), /`initech` failed \(refused: `[^`]+` is \d+ bytes, over the budget/],
      ['umbrella', { tenant: 'umbrella', revision: 1, entities: [report('wonka', 'finance')] }, /`umbrella` failed \(refused: .*data_other_tenant/],
    ]) {
      const refused = await refusals();
      answers[tenant] = answer;
      const token = tenant === 'acme' ? acme : devToken(dir, tenant, { sub: 'someone' });
      const res = await get(port, `/tenants/${tenant}/reports/q3`, token);
      assert.equal(res.status, 503, `${tenant}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, 'unavailable');
      assert.equal(await until(async () => (await refusals()) > refused, 3000, 50), true, String(expected));
      assert.match(envoy.output(), expected);
    }
    assert.deepEqual(seen, [], 'nothing was forwarded');
  });

  test('past the budget the tenant least recently seen is forgotten, and fetched again on its next request', async () => {
    answers.acme = snapshot('acme', 10);
    answers.wonka = snapshot('wonka', 10);
    // Acme's fetch may be in its retry delay after the refusals above.
    const first = await until(async () => { const r = await get(port, '/tenants/acme/reports/q3', acme); return r.status === 200 && r; }, 20000, 200);
    assert.equal(first.status, 200);
    const snapshots = () => asked.filter((url) => url === '/v1/data/acme').length;
    const before = snapshots();
    const evictions = await counter(adminPort, 'wasmcustom.portcullis.data_evictions');
    assert.equal((await get(port, '/tenants/wonka/reports/q3', wonka)).status, 200);
    assert.equal(await counter(adminPort, 'wasmcustom.portcullis.data_evictions'), evictions + 1);
    assert.match(envoy.output(), /data of tenant `acme` forgotten \(over the memory budget/);
    assert.equal((await get(port, '/tenants/acme/reports/q3', acme)).status, 200, 'acme is fetched again');
    assert.equal(snapshots(), before + 1, 'one more snapshot of acme');
    assert.doesNotMatch(envoy.output(), /panicked/i);
  });
});
