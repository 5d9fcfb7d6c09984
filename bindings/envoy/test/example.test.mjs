// examples/envoy/envoy.yaml and envoy-remote-bundle.yaml are rendered below (BLESS=1 rewrites
// them) and must pass `envoy --mode validate`.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, compileBundle, envoyYaml, validateEnvoy } from './lib.mjs';

const report = (method, path, action) => ({
  methods: [method], path, action,
  resource: { type: 'Report', id: '{tenant}/{id}', attrs: { tenant: '{tenant}', department: { header: 'x-report-department' } } },
});

/** The example's configuration; `remote`: the bundle polled from `portcullis serve` instead. */
function render(remote = false) {
  const filterConfig = {
    bundle: remote
      ? { remote: { url: 'http://127.0.0.1:8181/v1/bundle', cluster: 'policy', poll_seconds: 30 } }
      : { inline: compileBundle(join(ROOT, 'policies/techfin')) },
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
  const clusters = remote ? { policy: 8181 } : {};
  return envoyYaml({ port: 10000, adminPort: 9901, upstreamPort: 8080, filterConfig, clusters, wasm: 'bindings/envoy/portcullis_envoy.wasm' });
}

for (const [file, remote] of [['envoy.yaml', false], ['envoy-remote-bundle.yaml', true]]) {
  test(`examples/envoy/${file} is up to date and valid`, () => {
    const path = join(ROOT, 'examples/envoy', file);
    const yaml = render(remote);
    if (process.env.BLESS === '1') writeFileSync(path, yaml);
    assert.equal(readFileSync(path, 'utf8'), yaml, 'stale example: rerun with BLESS=1');
    const { ok, output } = validateEnvoy(path);
    assert.ok(ok, output);
    assert.match(output, /configuration .* OK/);
  });
}
