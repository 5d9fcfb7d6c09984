// examples/envoy/envoy.yaml is rendered from EXAMPLE below (BLESS=1 rewrites it) and must pass
// `envoy --mode validate`.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, compileBundle, envoyYaml, validateEnvoy } from './lib.mjs';

const FILE = join(ROOT, 'examples/envoy/envoy.yaml');
const report = (method, path, action) => ({
  methods: [method], path, action,
  resource: { type: 'Report', id: '{tenant}/{id}', attrs: { tenant: '{tenant}', department: { header: 'x-report-department' } } },
});

function render() {
  const filterConfig = {
    bundle: { inline: compileBundle(join(ROOT, 'policies/techfin')) },
    routes: [
      report('GET', '/tenants/{tenant}/reports/{id}', 'view'),
      report('POST', '/tenants/{tenant}/reports/{id}/export', 'export'),
      { methods: ['PUT', 'DELETE'], path: '/tenants/{tenant}/users/{id}', action: 'manage_user',
        resource: { type: 'User', id: '{tenant}/{id}', attrs: { tenant: '{tenant}' } } },
    ],
    unmatched: 'deny',
    token: [{ header: { name: 'authorization', prefix: 'Bearer ' } }, { cookie: { name: 'access_token' } }],
    forward: { tenant: 'x-portcullis-tenant', subject: 'x-portcullis-subject', roles: 'x-portcullis-roles', decision_id: 'x-portcullis-decision-id' },
    dry_run: false,
    cors_preflight: true,
    failure_mode: 'closed',
    log: { level: 'info' },
  };
  return envoyYaml({ port: 10000, adminPort: 9901, upstreamPort: 8080, filterConfig, wasm: 'bindings/envoy/portcullis_envoy.wasm' });
}

test('examples/envoy/envoy.yaml is up to date and valid', () => {
  const yaml = render();
  if (process.env.BLESS === '1') writeFileSync(FILE, yaml);
  assert.equal(readFileSync(FILE, 'utf8'), yaml, 'stale example: rerun with BLESS=1');
  const { ok, output } = validateEnvoy(FILE);
  assert.ok(ok, output);
  assert.match(output, /configuration .* OK/);
});
