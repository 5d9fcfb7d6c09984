// `portcullis envoy-config`: the envoy.yaml it writes passes `envoy --mode validate`, names a
// cluster for every identity-provider origin the bundle fetches keys from, and, run by a real
// Envoy, decides with the pack it was written from.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import {
  PORTCULLIS, ROOT, WASM, dataSource, echoServer, freePort, startEnvoy, techfinDir, tmp, validateEnvoy,
} from './lib.mjs';

const envoyConfig = (args, options = {}) => execFileSync(PORTCULLIS, ['envoy-config', ...args], { encoding: 'utf8', ...options });

test('the configuration of a pack with remote issuers is valid and names their clusters', () => {
  const dir = techfinDir();
  const tenantsFile = join(dir, 'tenants.json');
  const tenants = JSON.parse(readFileSync(tenantsFile, 'utf8'));
  // One tenant on its IdP's discovery document over https, one on a loopback JWK set.
  tenants.tenants.acme.issuers[0] = { ...tenants.tenants.acme.issuers[0], jwks_file: undefined, discovery: 'https://login.microsoftonline.com/7c1f3a2e-0d4b-4e8a-9b61-5a2c3d4e5f60/v2.0/.well-known/openid-configuration' };
  tenants.tenants.globex.issuers[0] = { ...tenants.tenants.globex.issuers[0], jwks_file: undefined, jwks_uri: 'http://127.0.0.1:8443/keys' };
  writeFileSync(tenantsFile, JSON.stringify(tenants, null, 2));
  const file = join(tmp(), 'envoy.yaml');
  // Node's own CA list: a machine may have no system CA bundle, and Envoy loads the file.
  const ca = join(tmp(), 'ca.pem');
  writeFileSync(ca, `${rootCertificates.join('\n')}\n`);
  envoyConfig(['--bundle', dir, '--upstream', '127.0.0.1:8080', '--wasm', WASM, '--ca-file', ca, '-o', file,
    '--data', '127.0.0.1:8182', '--data-token-env', 'PORTCULLIS_DATA_TOKEN']);
  const yaml = readFileSync(file, 'utf8');
  // The VM reads the data source's credential from Envoy's environment.
  const validated = validateEnvoy(file, { PORTCULLIS_DATA_TOKEN: 'envoy-config-test-credential' });
  assert.ok(validated.ok, validated.output);
  assert.match(yaml, /"https:\/\/login\.microsoftonline\.com": "idp_login_microsoftonline_com"/);
  assert.match(yaml, /"http:\/\/127\.0\.0\.1:8443": "idp_127_0_0_1_8443"/);
  assert.match(yaml, /- name: idp_login_microsoftonline_com\n {4}type: LOGICAL_DNS/);
  assert.match(yaml, /sni: login\.microsoftonline\.com/);
  assert.match(yaml, /- name: idp_127_0_0_1_8443\n {4}type: STATIC/);
  assert.match(yaml, /path_with_escaped_slashes_action: REJECT_REQUEST/);
  // The pack stores reports: the filter fetches them from the admin listener, with its credential.
  const data = JSON.parse(yaml.match(/value: \|\n([\s\S]*?)\n {10}- name: envoy\.filters\.http\.router/)[1]).data;
  assert.deepEqual(data, { url: 'http://127.0.0.1:8182', cluster: 'portcullis_data', token_env: 'PORTCULLIS_DATA_TOKEN' });
  assert.match(yaml, /host_env_keys: \[PORTCULLIS_DATA_TOKEN\]/);
  assert.match(yaml, /- name: portcullis_data\n {4}type: STATIC/);
  // A bad edge file is refused, naming it.
  const edge = join(tmp(), 'edge.json');
  writeFileSync(edge, '{"token": [{"header": {"name": "Bad Name"}}]}');
  assert.throws(() => envoyConfig(['--bundle', dir, '--upstream', '127.0.0.1:8080', '--edge', edge], { stdio: 'pipe' }), /invalid token source name/);
});

describe('an Envoy run on the written configuration', () => {
  let upstream, envoy, port, source;
  before(async () => {
    upstream = await echoServer(0);
    port = await freePort();
    // The pack stores reports: the filter fetches them from a decision service's admin listener.
    source = await dataSource(join(ROOT, 'policies/techfin'));
    const yaml = envoyConfig(['--bundle', join(ROOT, 'policies/techfin'), '--upstream', `127.0.0.1:${upstream.port}`,
      '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${await freePort()}`, '--wasm', WASM, '--data', new URL(source.service.admin).host]);
    envoy = await startEnvoy(yaml);
  });
  after(async () => { await envoy?.stop(); await source?.service.stop(); await upstream?.close(); });

  test('decides with the pack: an auditor reads, no token is a 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = execFileSync(PORTCULLIS, ['token', '--bundle', join(ROOT, 'policies/techfin'), '--tenant', 'acme',
      '--claims', JSON.stringify({ oid: 'alice', roles: ['Auditor'], auth_time: now - 60 })], { encoding: 'utf8' }).trim();
    const allowed = await fetch(`http://127.0.0.1:${port}/tenants/acme/reports/q3`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(allowed.status, 200, await allowed.text());
    const anonymous = await fetch(`http://127.0.0.1:${port}/tenants/acme/reports/q3`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer/);
  });
});
