// Tenants' stored data at the edge, measured (not part of CI):
//
// 1. Write → enforced: a backend writes a report's department through `portcullis serve`'s
//    write API (SQLite store), alternately `finance` and `risk`; from the write's
//    acknowledgement, requests of a finance analyst go through Envoy (two workers, a new
//    connection each, so both workers are asked) until one reflects the write (200 after
//    `finance`, 403 after `risk`). p50/p99 over BENCH_WRITES writes (default 100), with the
//    filter's default `poll_ms` (500).
// 2. Memory: Envoy's resident memory (VmRSS) with BENCH_TENANTS tenants' data held (default
//    100, BENCH_ENTITIES entities each, default 1000), against the same Envoy before any data,
//    for 1 and 2 workers.
//
//   node bindings/envoy/bench/data.mjs     (after bindings/envoy/build.sh and a `cargo build -p portcullis`)

import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import {
  analystClaims, backOfficeClaims, compileBundle, devToken, echoServer, envoyYaml, freePort, serve, sleep, startEnvoy,
  techfinDir, tmp, until,
} from '../test/lib.mjs';

const WRITES = Number(process.env.BENCH_WRITES ?? 100);
const TENANTS = Number(process.env.BENCH_TENANTS ?? 100);
const ENTITIES = Number(process.env.BENCH_ENTITIES ?? 1000);
const WORKERS = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number);

/** GET through Envoy on a new connection (so that requests spread over the workers). */
function get(port, path, token) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const rss = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024;

/** The storing TechFin pack with `n` more tenants `t000`… (Entra, acme's dev key). */
function manyTenantsDir(n) {
  const dir = techfinDir();
  const file = join(dir, 'tenants.json');
  const tenants = JSON.parse(readFileSync(file, 'utf8'));
  const acme = tenants.tenants.acme.issuers[0];
  for (let i = 0; i < n; i += 1) {
    const name = `t${String(i).padStart(3, '0')}`;
    tenants.tenants[name] = { issuers: [{ ...acme, issuer: `https://login.microsoftonline.com/${name}/v2.0` }] };
  }
  writeFileSync(file, JSON.stringify(tenants, null, 2));
  return dir;
}

async function put(service, tenant, writer, department) {
  const res = await fetch(`${service.base}/v1/data/${tenant}/entities/Report/q3`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json' },
    body: JSON.stringify({ attrs: { department } }),
  });
  if (res.status !== 200) throw new Error(`write: ${res.status} ${await res.text()}`);
}

function filterConfig(dir, dataPort, extra = {}) {
  return {
    bundle: { inline: compileBundle(dir) },
    log: { level: 'off' },
    data: { url: `http://127.0.0.1:${dataPort}`, cluster: 'data', ...extra },
  };
}

async function writeToEnforced() {
  const dir = techfinDir();
  const upstream = await echoServer();
  const service = await serve(dir, ['--store', `sqlite:${join(tmp(), 'data.db')}`]);
  const dataPort = Number(new URL(service.admin).port);
  const port = await freePort();
  const envoy = await startEnvoy(envoyYaml({
    port, adminPort: await freePort(), upstreamPort: upstream.port, filterConfig: filterConfig(dir, dataPort), clusters: { data: dataPort },
  }), { concurrency: 2 });
  const writer = devToken(dir, 'acme', backOfficeClaims);
  const alice = devToken(dir, 'acme', analystClaims('finance'));
  const path = '/tenants/acme/reports/q3';
  await put(service, 'acme', writer, 'risk');
  // Both workers hold acme's data.
  await until(async () => (await get(port, path, alice)) === 403, 10000, 50);
  for (let i = 0; i < 8; i += 1) await get(port, path, alice);
  const delays = [];
  for (let i = 0; i < WRITES; i += 1) {
    const department = i % 2 === 0 ? 'finance' : 'risk';
    const want = department === 'finance' ? 200 : 403;
    await put(service, 'acme', writer, department);
    const acked = performance.now();
    let status;
    do { status = await get(port, path, alice); } while (status !== want && performance.now() - acked < 5000);
    if (status !== want) throw new Error(`write ${i} not enforced within 5 s`);
    delays.push(performance.now() - acked);
    await sleep(Math.random() * 300); // writes at random points of the poll cycle
  }
  delays.sort((a, b) => a - b);
  await envoy.stop();
  await service.stop();
  await upstream.close();
  return { p50: percentile(delays, 50), p90: percentile(delays, 90), p99: percentile(delays, 99), max: delays.at(-1), n: delays.length };
}

async function memory() {
  const dir = manyTenantsDir(TENANTS);
  const names = Array.from({ length: TENANTS }, (_, i) => `t${String(i).padStart(3, '0')}`);
  const service = await serve(dir, ['--store', `sqlite:${join(tmp(), 'data.db')}`]);
  const dataPort = Number(new URL(service.admin).port);
  const tokens = {};
  let documentBytes = 0;
  for (const tenant of names) {
    const writer = devToken(dir, tenant, backOfficeClaims);
    tokens[tenant] = devToken(dir, tenant, analystClaims('finance'));
    const lines = Array.from({ length: ENTITIES }, (_, j) => JSON.stringify({
      uid: { type: 'Report', id: `${tenant}/r${j}` }, attrs: { department: j % 2 ? 'finance' : 'risk' }, parents: [],
    }));
    const res = await fetch(`${service.base}/v1/data/${tenant}/import`, {
      method: 'POST', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/x-ndjson' }, body: lines.join('\n'),
    });
    if (res.status !== 200) throw new Error(`import ${tenant}: ${res.status} ${await res.text()}`);
    documentBytes += (await (await fetch(`${service.admin}/v1/data/${tenant}`)).text()).length;
  }
  const rows = [];
  for (const workers of WORKERS) {
    const upstream = await echoServer();
    const port = await freePort();
    const envoy = await startEnvoy(envoyYaml({
      port, adminPort: await freePort(), upstreamPort: upstream.port, clusters: { data: dataPort },
      filterConfig: filterConfig(dir, dataPort, { max_bytes: 256 << 20, wait_ms: 10000 }),
    }), { concurrency: workers });
    // Every tenant's token once, spoiled (401: nothing fetched), so that the filter's other
    // work has happened before the baseline is read.
    for (const tenant of names) await get(port, '/tenants/x/reports/q3', `${tokens[tenant]}x`);
    await sleep(3000);
    const before = rss(envoy.child.pid);
    // Each tenant's request on new connections until every worker holds every tenant.
    const loads = () => (envoy.output().match(/data of tenant `t\d{3}` at revision \d+ in use/g) ?? []).length;
    for (let round = 0; round < 20 && loads() < TENANTS * workers; round += 1) {
      await Promise.all(names.map((tenant) => get(port, `/tenants/${tenant}/reports/r1`, tokens[tenant])));
    }
    await sleep(3000);
    const after = rss(envoy.child.pid);
    rows.push({ workers, before, after, loads: loads() });
    await envoy.stop();
    await upstream.close();
  }
  await service.stop();
  return { rows, documentBytes };
}

const delay = await writeToEnforced();
console.log(`write → enforced at the edge (2 workers, poll_ms 500), ${delay.n} writes: p50 ${delay.p50.toFixed(0)} ms, p90 ${delay.p90.toFixed(0)} ms, p99 ${delay.p99.toFixed(0)} ms, max ${delay.max.toFixed(0)} ms`);
const { rows, documentBytes } = await memory();
console.log(`memory: ${TENANTS} tenants × ${ENTITIES} entities, ${(documentBytes / 1048576).toFixed(1)} MiB of snapshot JSON in all`);
console.log('| workers | VmRSS, no data | VmRSS, every tenant held | growth | per worker | tenant loads |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.workers} | ${r.before.toFixed(0)} MiB | ${r.after.toFixed(0)} MiB | ${(r.after - r.before).toFixed(0)} MiB | ${((r.after - r.before) / r.workers).toFixed(0)} MiB | ${r.loads} |`);
}
