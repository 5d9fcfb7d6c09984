// The filter's bundle fetched over HTTP (`bundle.remote`): a real Envoy 1.40 polls the real
// decision service's admin listener (`GET /v1/bundle`) through a cluster, with ETags, while a
// real OpenID provider
// issues the tokens. Policy changes at the source reach Envoy without touching Envoy; a
// tampered bundle and a source that goes away leave the last good bundle serving.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  echoServer, envoyYaml, freePort, idpToken, serve, sleep, startEnvoy, startIdp, stats, techfinDirWithIdp, tmp, until,
} from './lib.mjs';

describe('a bundle polled from the decision service', () => {
  let upstream, envoy, idp, service, source, adminPort, port, sourcePort, issuer, dir;
  // A tenant administrator manages a user of her tenant (the pack's `manage_user` route).
  const report = async (token) => {
    const res = await fetch(`http://127.0.0.1:${port}/tenants/contoso/users/bob`, {
      method: 'PUT', headers: { authorization: `Bearer ${token}` },
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  const analyst = () => idpToken(issuer, 'admin', 'secret-admin');
  const counter = async (name) => Number((await stats(adminPort))[name] ?? 0);

  before(async () => {
    upstream = await echoServer();
    [port, adminPort, sourcePort] = [await freePort(), await freePort(), await freePort()];
    idp = await startIdp({ keysFile: join(tmp(), 'idp-keys.json') });
    issuer = idp.issuer;
    dir = techfinDirWithIdp(issuer);
    const idpPort = Number(new URL(issuer).port);
    const filterConfig = {
      bundle: { remote: { url: `http://127.0.0.1:${sourcePort}/v1/bundle`, cluster: 'policy', poll_seconds: 1, retry_seconds: 1, timeout_ms: 1000 } },
      // The pack stores reports: the same admin listener serves the tenants' data.
      data: { url: `http://127.0.0.1:${sourcePort}`, cluster: 'policy' },
      keys: { clusters: { [issuer]: 'idp' }, timeout_ms: 1000, refresh: { retry_seconds: 1, unknown_kid_cooldown_seconds: 1 } },
    };
    // Two workers: two VMs, which must share one poll.
    envoy = await startEnvoy(envoyYaml({ port, adminPort, upstreamPort: upstream.port, filterConfig, clusters: { idp: idpPort, policy: sourcePort } }));
  });
  after(async () => {
    await envoy?.stop();
    await service?.stop();
    source?.close();
    await idp?.stop();
    await upstream?.close();
  });

  test('no bundle yet: 503; the first fetch makes the filter decide', async () => {
    const token = await analyst();
    await sleep(1500);
    const early = await report(token);
    assert.equal(early.status, 503);
    assert.equal(early.body.code, 'unavailable');
    assert.match(envoy.output(), /fetching the bundle from `[^`]+` failed \(`[^`]+` answered HTTP 503\); no bundle yet: requests are answered 503/);
    service = await serve(dir, ['--admin-listen', `127.0.0.1:${sourcePort}`, '--poll-seconds', '3600']);
    const allowed = await until(async () => { const r = await report(token); return r.status === 200 && r; });
    assert.equal(allowed.status, 200, 'the filter fetched the bundle, then the IdP keys');
    assert.equal(allowed.body.headers['x-portcullis-tenant'], 'contoso');
    assert.match(envoy.output(), /bundle revision [0-9a-f]+ in use \(fetched from `http:\/\/127\.0\.0\.1:\d+\/v1\/bundle`\)/);
  });

  test('a policy change at the source reaches Envoy; unchanged polls are answered 304', async () => {
    const token = await analyst();
    assert.equal((await report(token)).status, 200);
    await sleep(2500); // a few polls of an unchanged bundle
    const notModified = await counter('cluster.policy.upstream_rq_304');
    assert.ok(notModified >= 1, `cluster.policy.upstream_rq_304 = ${notModified}`);
    writeFileSync(join(dir, 'policies', 'e2e-freeze.cedar'),
      '@id("e2e-freeze-admins")\nforbid (principal, action == Action::"manage_user", resource);\n');
    service.child.kill('SIGHUP');
    const denied = await until(async () => { const r = await report(token); return r.status === 403 && r; }, 10000, 200);
    assert.equal(denied.status, 403, 'the new policy is enforced without an Envoy change');
    // One fetch per revision for both workers: the poll is shared.
    assert.equal(await counter('wasmcustom.portcullis.bundle_updates'), 2);
  });

  test('a tampered bundle is refused and the source going away keeps the last good one', async () => {
    const token = await analyst();
    const good = await (await fetch(`${service.admin}/v1/bundle`)).json();
    await service.stop();
    service = undefined;
    // Another source on the same port: the last revision with its new policy quietly removed.
    const tampered = { ...good, policies: good.policies.filter((p) => !p.file.endsWith('e2e-freeze.cedar')) };
    assert.ok(tampered.policies.length < good.policies.length);
    let requests = 0;
    source = createServer((req, res) => {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/json', etag: '"tampered"' });
      res.end(JSON.stringify(tampered));
    });
    source.listen(sourcePort, '127.0.0.1');
    await once(source, 'listening');
    const refused = await until(async () => (await counter('wasmcustom.portcullis.bundle_refused')) >= 1, 10000, 200);
    assert.ok(refused, 'the tampered bundle was refused');
    assert.ok(requests >= 1);
    assert.match(envoy.output(), /refused: invalid bundle: .*revision/);
    assert.equal((await report(token)).status, 403, 'the last good bundle keeps serving');

    source.close();
    source = undefined;
    await sleep(2500);
    assert.match(envoy.output(), /fetching the bundle from `[^`]+` failed \(`[^`]+` answered HTTP 503\); the previous bundle keeps serving/);
    assert.equal((await report(token)).status, 403, 'still the last good bundle');
    assert.equal(await counter('wasmcustom.portcullis.bundle_updates'), 2);
    assert.doesNotMatch(envoy.output(), /panicked/i);
  });
});
