// examples/envoy/envoy.yaml, envoy-remote-bundle.yaml and envoy-ext-authz.yaml are rendered
// below (BLESS=1 rewrites them) and must pass `envoy --mode validate`; every example must have
// Envoy's path normalization and underscore rejection on.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, envoyYaml, exampleFilterConfig, extAuthzFilter, validateEnvoy } from './lib.mjs';

/**
 * The example's configuration: `inline` the filter with the bundle in it, `remote` the filter
 * polling the bundle from `portcullis serve` (both fetch the stored data from its admin
 * listener at 8182), `ext_authz` no filter: Envoy asks `portcullis
 * serve` (its decision listener at 8181) for every request.
 */
function render(kind) {
  const base = { port: 10000, adminPort: 9901, upstreamPort: 8080, wasm: 'bindings/envoy/portcullis_envoy.wasm' };
  if (kind === 'ext_authz') return envoyYaml({ ...base, extraFilters: extAuthzFilter(), clusters: { portcullis: 8181 } });
  // The decision service's admin listener: the stored data, and the remote bundle.
  return envoyYaml({ ...base, filterConfig: exampleFilterConfig(kind === 'remote'), clusters: { policy: 8182 } });
}

for (const [file, kind] of [['envoy.yaml', 'inline'], ['envoy-remote-bundle.yaml', 'remote'], ['envoy-ext-authz.yaml', 'ext_authz']]) {
  test(`examples/envoy/${file} is up to date, valid and hardened`, () => {
    const path = join(ROOT, 'examples/envoy', file);
    const yaml = render(kind);
    if (process.env.BLESS === '1') writeFileSync(path, yaml);
    const text = readFileSync(path, 'utf8');
    assert.equal(text, yaml, 'stale example: rerun with BLESS=1');
    for (const setting of [
      /\n\s+normalize_path: true\n/,
      /\n\s+merge_slashes: true\n/,
      /\n\s+path_with_escaped_slashes_action: REJECT_REQUEST\n/,
      /\n\s+headers_with_underscores_action: REJECT_REQUEST\n/,
    ]) {
      assert.match(text, setting, `${file} lacks ${setting}`);
    }
    // No fact a policy depends on is read from a header the client sets.
    assert.doesNotMatch(text, /x-report-department|"client_header"/);
    const { ok, output } = validateEnvoy(path);
    assert.ok(ok, output);
    assert.match(output, /configuration .* OK/);
  });
}
