// Envoy benchmark, one run on one machine: Envoy with no auth filter (the ceiling), with a
// proxy-wasm filter that does nothing (the floor of any Wasm filter in this Envoy), Envoy's
// native jwt_authn (with jwt_cache_config) + rbac enforcing the analyst rule, and Portcullis
// (the full TechFin bundle). "Every request verified": native without jwt_cache_config against
// Portcullis with its token cache off (`tokens.cache_entries: 0`), signatures checked by
// Envoy's `verify_signature` (crypto: envoy) or in Wasm (crypto: wasm), the cost of a fresh
// token on every request. Each Envoy runs one worker and answers with a direct response, so
// the difference between configurations is the auth filters' cost. Portcullis forwards identity
// headers by default and native jwt_authn + rbac forwards none, so the valid-token scenario is
// also run with the same work on both sides: the same three identity headers (native's
// `claim_to_headers`), and none. Main figure: Envoy's CPU
// time per request (utime + stime of the Envoy process from /proc, before/after each wrk run);
// requests/s and p50/p99 (noisy on shared machines) and Envoy's memory (VmRSS) are reported too.
// Run by bindings/envoy/bench.sh.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, PORTCULLIS, compileBundle, envoyYaml, freePort, sleep, startEnvoy, tmp } from '../test/lib.mjs';

const DURATION = process.env.BENCH_DURATION ?? '5s';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FLOOR = process.env.FLOOR_WASM ?? join(ROOT, 'target/wasm32-wasip1/release/portcullis_envoy_floor.wasm');
const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? '16').split(',').map(Number);
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** A development token of `tenant` (signed with its key in policies/techfin/dev-keys). */
const mint = (tenant, claims) => execFileSync(PORTCULLIS, ['token', '--bundle', join(ROOT, 'policies/techfin'), '--tenant', tenant,
  '--ttl', '7200', '--claims', JSON.stringify(claims)], { encoding: 'utf8' }).trim();
const issuerOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url')).iss;

// Acme (Entra ID, RS256) is the main scenario; Globex (Okta, ES256, roles in `techfin_roles`)
// only for every-request verification.
const acme = { tenant: 'acme', key: 'acme-rs256', rolesClaim: 'roles',
  token: mint('acme', { oid: 'alice', roles: ['FinanceAnalyst'], department: 'finance', amr: ['mfa'] }) };
const globex = { tenant: 'globex', key: 'globex-es256', rolesClaim: 'techfin_roles',
  token: mint('globex', { sub: 'bob', techfin_roles: ['FinanceAnalyst'], department: 'finance', amr: ['mfa'] }) };
const { token } = acme;
const [h, p, sig] = token.split('.');
const forgedToken = `${h}.${p}.${sig.slice(0, -4)}${sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;

// The identity headers both sides forward in the "same identity headers" rows: native
// jwt_authn copies claims (`claim_to_headers`), Portcullis its principal (`forward`).
const IDENTITY = { tenant: 'x-portcullis-tenant', subject: 'x-portcullis-subject', roles: 'x-portcullis-roles' };
const claimHeaders = (t) => `                  claim_to_headers:
                  - { header_name: ${IDENTITY.tenant}, claim_name: iss }
                  - { header_name: ${IDENTITY.subject}, claim_name: oid }
                  - { header_name: ${IDENTITY.roles}, claim_name: ${t.rolesClaim} }
`;
const native = (cache, t = acme, identity = false) => `          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                ${t.tenant}:
                  issuer: "${issuerOf(t.token)}"
                  audiences: ["api://techfin"]
                  local_jwks: { inline_string: ${JSON.stringify(JSON.stringify(JSON.parse(readFileSync(join(ROOT, `policies/techfin/dev-keys/${t.key}.jwks.json`), 'utf8'))))} }
                  payload_in_metadata: jwt_payload
                  forward: true
${cache ? '                  jwt_cache_config: { jwt_cache_size: 1000 }\n' : ''}${identity ? claimHeaders(t) : ''}              rules:
              - match: { prefix: "/" }
                requires: { provider_name: ${t.tenant} }
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  analyst-view-own-department:
                    permissions:
                    - and_rules:
                        rules:
                        - header: { name: ":method", string_match: { exact: "GET" } }
                        - url_path: { path: { prefix: "/tenants/${t.tenant}/reports/" } }
                        - header: { name: "x-report-department", string_match: { exact: "finance" } }
                    principals:
                    - and_ids:
                        ids:
                        - metadata:
                            filter: envoy.filters.http.jwt_authn
                            path: [{ key: jwt_payload }, { key: ${t.rolesClaim} }]
                            value: { list_match: { one_of: { string_match: { exact: FinanceAnalyst } } } }
                        - metadata:
                            filter: envoy.filters.http.jwt_authn
                            path: [{ key: jwt_payload }, { key: department }]
                            value: { string_match: { exact: finance } }
`;

/**
 * The TechFin bundle with the benchmark's route (the department from a client header, as the
 * peers' configurations read it from the token: the same work on both sides), and the
 * engine's token cache off when `cache` is false. The pack's `bundle.json` (which stores
 * reports, so that no request may give a report's department) is replaced: Envoy's RBAC has no
 * stored facts to compare with. Decisions on stored facts are `bench/data.mjs`'s.
 */
function techfin(cache) {
  const dir = join(tmp(), 'techfin');
  cpSync(join(ROOT, 'policies/techfin'), dir, { recursive: true });
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({ routes: [{ methods: ['GET'], path: '/tenants/{tenant}/reports/{id}', action: 'view',
    resource: { type: 'Report', id: '{tenant}/{id}', attrs: { tenant: '{tenant}', department: { client_header: 'x-report-department' } } } }] }));
  writeFileSync(join(dir, 'bundle.json'), JSON.stringify(cache ? {} : { tokens: { cache_entries: 0 } }));
  return compileBundle(dir);
}

// `forward` undefined: the default identity headers (tenant, subject, roles, decision id).
const portcullisConfig = ({ cache = true, crypto = 'envoy', forward } = {}) => ({
  bundle: { inline: techfin(cache) },
  crypto,
  // The Wasm rows measure what a signature check in Wasm costs: no budget (by default 200 a
  // second, past which new tokens are answered 503).
  ...(crypto === 'wasm' && { wasm_signatures_per_second: 0 }),
  edge: { unmatched: 'pass', ...(forward && { forward }) },
  log: { level: 'off' },
});

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

// A wrk script that asks for another report on every request (`/tenants/acme/reports/r1`, `r2`,
// ...), with the command line's headers.
const newReportEachTime = join(tmp(), 'new-report.lua');
writeFileSync(newReportEachTime, `local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/tenants/acme/reports/r" .. n)
end
`);

function wrk(port, connections, bearer, path = '/tenants/acme/reports/q3', script, duration = DURATION) {
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${duration}`, '--latency',
    '-H', `authorization: Bearer ${bearer}`, '-H', 'x-report-department: finance',
    ...(script ? ['-s', script] : []),
    `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(out)[1]);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  // Anchored: "Thread Stats" lines end in percentages too (a Stdev of 94.99% is not the p99).
  const pct = (q) => {
    const m = /([\d.]+)(us|ms|s)$/.exec(new RegExp(`^\\s+${q}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '');
    if (!m) throw new Error(`no ${q}th percentile in wrk's output:\n${out}`);
    return m;
  };
  const ms = (m) => Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  return { requests, non2xx, rps, p50: ms(pct(50)), p99: ms(pct(99)) };
}

const valid = ['valid token, repeated', token];
// The same token for a report never asked for before: Portcullis evaluates the policies every
// time (its memo of a token's evaluations never hits), native rbac does what it always does.
const newReport = ['valid token, another report each time', token, undefined, newReportEachTime];
const forged = ['forged token, repeated', forgedToken];
const everyTime = ['valid token, every request verified', token];
const everyTimeEs = ['ES256 token, every request verified', globex.token, '/tenants/globex/reports/q3'];
// The last scenario only exists for Portcullis: a path no route matches (`unmatched: pass`),
// which costs the filter's glue (hostcalls, header removal) without a decision.
const noRoute = ['no route (filter glue only)', token, '/other'];
const configs = [
  ['no auth filter', {}, [valid]],
  ['empty proxy-wasm filter (floor)', { filterConfig: {}, wasm: FLOOR }, [valid]],
  ['native jwt_authn + rbac', { extraFilters: native(true) }, [valid, newReport, forged]],
  ['native jwt_authn + rbac, no JWT cache', { extraFilters: native(false) }, [everyTime]],
  ['native jwt_authn + rbac, no JWT cache (Globex)', { extraFilters: native(false, globex) }, [everyTimeEs]],
  ['native jwt_authn + rbac, identity headers', { extraFilters: native(true, acme, true) }, [valid]],
  ['portcullis', { filterConfig: portcullisConfig() }, [valid, newReport, forged, noRoute]],
  ['portcullis, identity headers: tenant, subject, roles', { filterConfig: portcullisConfig({ forward: IDENTITY }) }, [valid]],
  ['portcullis, no identity headers', { filterConfig: portcullisConfig({ forward: {} }) }, [valid]],
  ['portcullis, token cache off, crypto: envoy', { filterConfig: portcullisConfig({ cache: false }) }, [everyTime, everyTimeEs]],
  ['portcullis, token cache off, crypto: wasm', { filterConfig: portcullisConfig({ cache: false, crypto: 'wasm' }) }, [everyTime, everyTimeEs]],
];
// Every configuration's Envoy runs for the whole bench, and the rows are measured in rounds:
// each round runs every (configuration, scenario, connections) once, in the same order. The
// shared machine's load drifts by tens of percent within minutes; alternating spreads that
// drift over all rows alike, and each row reports its median round (and its range).
const envoys = [];
const runs = [];
try {
  for (const [name, extra, scenarios] of configs) {
    const port = await freePort();
    const envoy = await startEnvoy(envoyYaml({ port, adminPort: await freePort(), upstreamPort: 1, direct: true, ...extra }), { concurrency: 1, logLevel: 'warn' });
    envoys.push({ name, scenarios, port, envoy });
    wrk(port, 4, token, undefined, undefined, '2s'); // warm-up (also fills caches)
  }
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const { name, scenarios, port, envoy } of envoys) {
      const pid = envoy.child.pid;
      for (const [scenario, bearer, path, script] of scenarios) {
        for (const c of CONNECTIONS) {
          const before = cpuTicks(pid);
          const r = wrk(port, c, bearer, path, script);
          // A row whose answers are not what its scenario is about measures something else.
          const forged = scenario.startsWith('forged');
          if (forged ? r.non2xx !== r.requests : r.non2xx !== 0) {
            throw new Error(`${name} / ${scenario}: ${r.non2xx} of ${r.requests} answers were not 2xx`);
          }
          const cpu = (cpuTicks(pid) - before) / TICKS;
          runs.push({ name, scenario, c, ...r, cpuUs: (cpu / r.requests) * 1e6, rss: rssMiB(pid) });
          await sleep(300);
        }
      }
    }
  }
} finally {
  for (const { envoy } of envoys) await envoy.stop(); // also when a row fails: no Envoy outlives the bench
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const run of runs) {
  if (rows.some((r) => r.name === run.name && r.scenario === run.scenario && r.c === run.c)) continue;
  const same = runs.filter((r) => r.name === run.name && r.scenario === run.scenario && r.c === run.c);
  const cpus = same.map((r) => r.cpuUs);
  const at = (key) => median(same.map((r) => r[key]));
  rows.push({ ...run, cpuUs: median(cpus), min: Math.min(...cpus), max: Math.max(...cpus),
    rps: at('rps'), p50: at('p50'), p99: at('p99'), non2xx: at('non2xx'), rss: Math.max(...same.map((r) => r.rss)) });
}

console.log(`Median of ${ROUNDS} rounds of ${DURATION} per row (CPU range over the rounds in brackets).\n`);
console.log(`| configuration | scenario | conns | Envoy CPU µs/req | req/s | p50 ms | p99 ms | non-2xx | Envoy RSS MiB |`);
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.name} | ${r.scenario} | ${r.c} | ${r.cpuUs.toFixed(1)} (${r.min.toFixed(0)}–${r.max.toFixed(0)}) | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.non2xx} | ${r.rss.toFixed(1)} |`);
}
const cpu = (name, scenario) => rows.find((r) => r.name === name && r.scenario === scenario && r.c === CONNECTIONS[0])?.cpuUs;
const ratio = (label, [ours, theirs], scenario) => {
  console.log(`\n${label}: ${ours} / ${theirs} CPU per request = ${(cpu(ours, scenario) / cpu(theirs, scenario)).toFixed(2)}x (at ${CONNECTIONS[0]} connections)`);
};
ratio(valid[0], ['portcullis', 'native jwt_authn + rbac'], valid[0]);
// The same work on both sides: the same three identity headers, or none.
ratio(`${valid[0]}, the same identity headers`, ['portcullis, identity headers: tenant, subject, roles', 'native jwt_authn + rbac, identity headers'], valid[0]);
ratio(`${valid[0]}, no identity headers`, ['portcullis, no identity headers', 'native jwt_authn + rbac'], valid[0]);
ratio(newReport[0], ['portcullis', 'native jwt_authn + rbac'], newReport[0]);
ratio(`${valid[0]}, the floor`, ['empty proxy-wasm filter (floor)', 'native jwt_authn + rbac'], valid[0]);
ratio(forged[0], ['portcullis', 'native jwt_authn + rbac'], forged[0]);
for (const crypto of ['envoy', 'wasm']) {
  ratio(everyTime[0], [`portcullis, token cache off, crypto: ${crypto}`, 'native jwt_authn + rbac, no JWT cache'], everyTime[0]);
  ratio(everyTimeEs[0], [`portcullis, token cache off, crypto: ${crypto}`, 'native jwt_authn + rbac, no JWT cache (Globex)'], everyTimeEs[0]);
}

// Memory: Envoy's RSS with no filter, with the filter on a one-policy bundle and on TechFin,
// with one and two workers (after 50 requests), to tell the engine's data from the VM's cost.
const onePolicy = (() => {
  const dir = join(tmp(), 'one-policy');
  mkdirSync(join(dir, 'policies'), { recursive: true });
  writeFileSync(join(dir, 'policies/all.cedar'), '@id("all")\npermit (principal, action, resource);\n');
  writeFileSync(join(dir, 'tenants.json'), '{"tenants": {}}');
  return compileBundle(dir);
})();
const memoryRows = [['no auth filter', undefined], ['empty proxy-wasm filter (floor)', {}, FLOOR], ['portcullis, one-policy bundle', { ...portcullisConfig(), bundle: { inline: onePolicy } }], ['portcullis, TechFin', portcullisConfig()]];
// Each with `memory_allocator_manager` returning free heap pages to the OS (what envoyYaml
// renders, as in examples/envoy) and without it (Envoy's default: free pages stay mapped).
const rssOf = {};
console.log('\n| configuration | workers | Envoy RSS MiB, free pages returned | Envoy RSS MiB, free pages kept |');
console.log('|---|---:|---:|---:|');
for (const [name, filterConfig, wasm] of memoryRows) {
  for (const concurrency of [1, 2]) {
    const rss = [];
    for (const releaseMemory of [true, false]) {
      const port = await freePort();
      const envoy = await startEnvoy(envoyYaml({ port, adminPort: await freePort(), upstreamPort: 1, direct: true, filterConfig, releaseMemory, ...(wasm && { wasm }) }), { concurrency, logLevel: 'warn' });
      for (let i = 0; i < 50; i += 1) await fetch(`http://127.0.0.1:${port}/tenants/acme/reports/q3`, { headers: { authorization: `Bearer ${token}`, 'x-report-department': 'finance' } });
      await sleep(3000); // 16 MiB/s are returned: enough for what start-up left free
      rss.push(rssMiB(envoy.child.pid));
      await envoy.stop();
    }
    rssOf[`${name}/${concurrency}`] = rss;
    console.log(`| ${name} | ${concurrency} | ${rss[0].toFixed(1)} | ${rss[1].toFixed(1)} |`);
  }
}
const over = (name) => {
  const [base, rss] = [rssOf['no auth filter/1'], rssOf[`${name}/1`]];
  console.log(`\nMemory, one worker, ${name} over no filter: +${(rss[0] - base[0]).toFixed(1)} MiB with free pages returned, +${(rss[1] - base[1]).toFixed(1)} MiB without`);
};
over('portcullis, TechFin');
over('empty proxy-wasm filter (floor)');
