// The decision service (`portcullis serve`) end to end, as operators run it: the real binary,
// a real OpenID provider (oidc-provider, tests/idp) issuing signed access tokens, bundles
// reloaded from a directory on SIGHUP and from a URL polled with ETag. Bundles and metrics are
// read from the admin listener (the harness starts one on loopback).
//
//   (cd tests/idp && npm ci) && cargo build -p portcullis
//   node --test --test-concurrency=1 host/tests/e2e/*.test.mjs     (scripts/test.sh runs it)
//
// PORTCULLIS_BIN names another build of the binary. Every server listens on 127.0.0.1 only.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  PORTCULLIS, ROOT, compileBundle, freePort, idpToken, serve, sleep, startIdp, storeReport, techfinWithIdp, tmp, until,
} from '../../../tests/idp/harness.mjs';

const post = async (base, path, body) => {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
};

/** Prometheus text → {"name{labels}": value}. */
async function metrics(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Object.fromEntries(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const i = l.lastIndexOf(' ');
    return [l.slice(0, i), Number(l.slice(i + 1))];
  }));
}

const kidOf = (token) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url')).kid;

/** The Contoso analyst (department finance) viewing a finance report of her tenant (stored). */
const viewReport = (token) => ({
  token,
  action: 'view',
  resource: { type: 'Report', id: 'contoso/q3' },
});

describe('keys from a real OpenID provider', () => {
  let idp, service, idpPort, keysFile, issuer, bundleFile;
  const analyst = () => idpToken(issuer, 'analyst-finance', 'secret-analyst');

  before(async () => {
    idpPort = await freePort();
    keysFile = join(tmp(), 'idp-keys.json');
    issuer = `http://127.0.0.1:${idpPort}`;
    bundleFile = join(tmp(), 'bundle.json');
    writeFileSync(bundleFile, JSON.stringify(techfinWithIdp(issuer)));
  });

  after(async () => {
    await service?.stop();
    await idp?.stop();
  });

  test('IdP down at start: its tenant fails closed, every other tenant is served, then it recovers', async () => {
    service = await serve(bundleFile);
    // Ready once every remote issuer's first fetch has been tried, even though contoso's
    // failed: one client's IdP must not take the service out of rotation for all of them.
    let readyz;
    const up = await until(async () => {
      const res = await fetch(`${service.base}/readyz`);
      readyz = { status: res.status, body: await res.json() };
      return res.status === 200;
    }, 30000, 200);
    assert.ok(up, `ready with one IdP down: ${JSON.stringify(readyz)}`);
    assert.equal(readyz.body.ready, true);
    assert.equal(readyz.body.issuers.missing, 1, JSON.stringify(readyz.body));
    assert.match(readyz.body.reason, /1 remote issuer\(s\) have no keys/);
    assert.ok(!JSON.stringify(readyz.body).includes('contoso'), 'the open listener names no tenant');
    // The admin listener says which one, and why.
    const keys = await (await fetch(`${service.admin}/v1/keys`)).json();
    const contoso = keys.issuer_keys.find((k) => k.issuer === issuer);
    assert.deepEqual(contoso.tenants, ['contoso']);
    assert.equal(contoso.keys, 'missing');
    assert.match(contoso.last_error, /127\.0\.0\.1/);
    // Another tenant (inline keys) is decided as usual.
    const mint = (claims) => execFileSync(PORTCULLIS, ['token', '--bundle', join(ROOT, 'policies/techfin'), '--tenant', 'acme',
      '--claims', JSON.stringify(claims)], { encoding: 'utf8' }).trim();
    const acme = mint({ oid: 'alice', roles: ['FinanceAnalyst'], department: 'finance', amr: ['mfa'] });
    await storeReport(service.base, mint({ sub: 'b0ff1ce0-0000-4000-8000-000000000001', azp: 'backoffice-app', idtyp: 'app', roles: ['DataWriter'] }), 'acme', 'q3', 'finance');
    const served = await post(service.base, '/v1/decide', {
      token: acme, action: 'view', resource: { type: 'Report', id: 'acme/q3' },
    });
    assert.equal(served.body.decision, 'allow', JSON.stringify(served.body));

    // A token the service cannot check yet (the IdP is up only long enough to issue it).
    idp = await startIdp({ port: idpPort, keysFile });
    const token = await analyst();
    await idp.stop();
    const closed = await post(service.base, '/v1/decide', viewReport(token));
    // `/v1/decide` answers every decision with 200; the decision carries the status.
    assert.equal(closed.status, 200);
    assert.equal(closed.body.decision, 'unauthenticated', 'no keys: never allow');
    assert.equal(closed.body.errors[0].code, 'token_keys_unavailable');

    idp = await startIdp({ port: idpPort, keysFile });
    // The key task retries a failed fetch after 10 s (RefreshPolicy's retry).
    const loaded = await until(async () => {
      const k = await (await fetch(`${service.admin}/v1/keys`)).json();
      return k.issuer_keys.find((i) => i.issuer === issuer).keys === 'loaded';
    }, 30000, 500);
    assert.ok(loaded, 'the keys are loaded once the IdP is reachable');
    assert.match(service.output(), /keys of `http:\/\/127\.0\.0\.1:\d+` fetched: \d+ keys, loaded/, 'the fetch is logged');
    // Contoso's back office (a client of its IdP) stores the report her decision rests on.
    await storeReport(service.base, await idpToken(issuer, 'back-office', 'secret-back-office'), 'contoso', 'q3', 'finance');
    const allowed = await post(service.base, '/v1/decide', viewReport(token));
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
    assert.equal(allowed.body.decision, 'allow');
    assert.equal(allowed.body.principal.tenant, 'contoso');
    const m = await metrics(service.admin);
    assert.ok(m['portcullis_key_fetches_total{result="failed"}'] >= 1, 'the failed fetch is counted');
    assert.ok(m['portcullis_key_fetches_total{result="ok"}'] >= 1);
  });

  test('key rotation at the IdP is picked up on the first unknown kid', async () => {
    const before = await analyst();
    const res = await fetch(`${issuer}/admin/rotate?drop_old=1`, { method: 'POST' });
    assert.equal(res.status, 200);
    const { kids } = await res.json();
    const rotated = await analyst();
    assert.equal(kidOf(rotated), kids[0]);
    assert.notEqual(kidOf(rotated), kidOf(before));
    const fetchesBefore = (await metrics(service.admin))['portcullis_key_fetches_total{result="ok"}'];
    // The first request with the new kid triggers one early fetch (not waiting for max-age).
    const ok = await until(async () => {
      const r = await post(service.base, '/v1/decide', viewReport(rotated));
      return r.body.decision === 'allow' && r;
    }, 10000, 200);
    assert.ok(ok, 'a token signed with the rotated key is accepted');
    const fetchesAfter = (await metrics(service.admin))['portcullis_key_fetches_total{result="ok"}'];
    assert.ok(fetchesAfter > fetchesBefore, 'the keys were fetched again');
  });

  test('IdP outage: the last good keys keep serving', async () => {
    const token = await analyst();
    await idp.stop();
    const r = await post(service.base, '/v1/decide', viewReport(token));
    assert.equal(r.body.decision, 'allow');
    assert.equal((await fetch(`${service.base}/readyz`)).status, 200, 'still ready on the last good keys');
  });

  test('the audit log names the decision, never the token', async () => {
    await sleep(300);
    const lines = readFileSync(service.auditLog, 'utf8').trim().split('\n');
    assert.ok(lines.length >= 3, `${lines.length} audit lines`);
    const text = lines.join('\n');
    const records = lines.map((l) => JSON.parse(l));
    assert.ok(records.some((r) => r.decision === 'allow' && r.tenant === 'contoso' && r.principal === 'User::"contoso/alice"' && /^[0-9a-f]{32}$/.test(r.token_fingerprint)));
    assert.ok(records.some((r) => r.decision === 'unauthenticated' && r.errors.includes('token_keys_unavailable')), 'the fail-closed decision is audited');
    for (const r of records) assert.match(r.decision_id, /^[0-9a-f]+$/);
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\./, 'no JWT in the audit log');
  });
});

describe('bundle reloads', () => {
  let service, dir;
  after(async () => { await service?.stop(); });

  const revision = async (base) => {
    const res = await fetch(`${base}/v1/bundle`);
    assert.equal(res.status, 200);
    return { etag: res.headers.get('etag'), revision: (await res.json()).revision };
  };

  test('SIGHUP reloads a changed directory; a bad bundle never replaces a good one', async () => {
    dir = join(tmp(), 'techfin');
    cpSync(join(ROOT, 'policies/techfin'), dir, { recursive: true });
    // A poll interval far beyond the test: only SIGHUP can cause a reload.
    service = await serve(dir, ['--poll-seconds', '3600']);
    const first = await revision(service.admin);
    assert.ok(first.etag, 'GET /v1/bundle has an ETag');
    const unchanged = await fetch(`${service.admin}/v1/bundle`, { headers: { 'if-none-match': first.etag } });
    assert.equal(unchanged.status, 304);
    // A SIGHUP that finds nothing new says so.
    service.child.kill('SIGHUP');
    assert.ok(await until(async () => /reload asked; the bundle is unchanged \(revision [0-9a-f]+\)/.test(service.output()), 10000, 100),
      'a log line for a SIGHUP that finds nothing new');

    const policy = join(dir, 'policies', 'extra.cedar');
    writeFileSync(policy, '@id("e2e-extra")\nforbid (principal, action, resource) when { false };\n');
    service.child.kill('SIGHUP');
    const second = await until(async () => { const r = await revision(service.admin); return r.revision !== first.revision && r; }, 10000, 200);
    assert.ok(second, 'SIGHUP reloaded the changed directory');
    assert.notEqual(second.etag, first.etag);

    writeFileSync(policy, 'this is not cedar');
    service.child.kill('SIGHUP');
    const refused = await until(async () => (await metrics(service.admin))['portcullis_bundle_reloads_total{result="refused"}'] >= 1, 10000, 200);
    assert.ok(refused, 'the bad bundle is refused and counted');
    assert.equal((await revision(service.admin)).revision, second.revision, 'the good bundle keeps serving');
    assert.match(service.output(), /new bundle refused, the previous one keeps serving/);
    assert.equal((await fetch(`${service.base}/readyz`)).status, 200);
    await service.stop();
    service = undefined;
  });

  test('a URL bundle is polled with ETag and swapped when it changes', async () => {
    const techfin = compileBundle(join(ROOT, 'policies/techfin'));
    const changedDir = join(tmp(), 'techfin');
    cpSync(join(ROOT, 'policies/techfin'), changedDir, { recursive: true });
    writeFileSync(join(changedDir, 'policies', 'extra.cedar'), '@id("e2e-extra")\nforbid (principal, action, resource) when { false };\n');
    const changed = compileBundle(changedDir);
    // Content that does not match its revision: what a corrupted or tampered download looks like.
    const tampered = { ...changed, policies: [...changed.policies, { file: 'x.cedar', source: 'permit (principal, action, resource);' }] };

    // The bundle server: the current document with a strong ETag, 304 on If-None-Match.
    let served = techfin;
    let conditional = 0;
    let full = 0;
    const server = createServer((req, res) => {
      const etag = `"${served.revision}-${served.policies.length}"`;
      if (req.headers['if-none-match'] === undefined) full += 1;
      if (req.headers['if-none-match'] === etag) {
        conditional += 1;
        res.writeHead(304, { etag });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', etag });
      res.end(JSON.stringify(served));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      service = await serve(`http://127.0.0.1:${server.address().port}/bundle.json`, ['--poll-seconds', '1']);
      assert.equal((await revision(service.admin)).revision, techfin.revision);
      assert.ok(await until(() => conditional >= 1, 5000, 100), 'polls are conditional (If-None-Match → 304)');

      served = changed;
      const swapped = await until(async () => (await revision(service.admin)).revision === changed.revision, 10000, 200);
      assert.ok(swapped, 'the changed bundle was picked up');

      served = tampered;
      const refused = await until(async () => (await metrics(service.admin))['portcullis_bundle_reloads_total{result="refused"}'] >= 1, 10000, 200);
      assert.ok(refused, 'the tampered bundle is refused');
      assert.equal((await revision(service.admin)).revision, changed.revision, 'the good bundle keeps serving');
      assert.match(service.output(), /revision does not match its content/);
      // A refused bundle's ETag is forgotten: each retry fetches the whole document again (and
      // reports the refusal again) until the server has a good one.
      const fullAfterRefusal = full;
      assert.ok(await until(() => full > fullAfterRefusal, 5000, 100), 'a full GET after a refusal');
      served = changed;
      const conditionalBefore = conditional;
      assert.ok(await until(() => conditional > conditionalBefore, 10000, 100), 'conditional polls resume');
      assert.equal((await revision(service.admin)).revision, changed.revision);
    } finally {
      await service?.stop();
      service = undefined;
      server.close();
    }
  });
});
