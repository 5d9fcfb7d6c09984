#!/usr/bin/env node
// A real OpenID provider (oidc-provider 9) on localhost for end-to-end tests: OIDC discovery,
// JWKS, and RS256 `at+jwt` access tokens from the client-credentials grant, carrying TechFin
// claims. See README.md in this directory for the interface; in short:
//
//   node idp.mjs --port 0 --keys /tmp/idp-keys.json --clients clients.json
//   → prints one line: {"ready":true,"issuer":"http://127.0.0.1:PORT","port":PORT,"kids":[...]}
//
//   POST /token  (client_secret_basic or _post, grant_type=client_credentials)  → access token
//   POST /admin/rotate[?drop_old=1]   new signing key first; the old keys stay published unless
//                                     drop_old=1. Answers {"kids":[...]}. SIGUSR2 does the same.
//   GET  /admin/keys                  {"kids":[...]} (current published kids, signing key first)
//
// The admin endpoints are for tests: the harness only listens on 127.0.0.1.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    keys: { type: 'string' },
    clients: { type: 'string' },
    audience: { type: 'string', default: 'api://techfin' },
    ttl: { type: 'string', default: '600' },
  },
});

/** A fresh RS256 signing key as a private JWK with a unique kid. */
function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `k-${randomUUID()}`, alg: 'RS256', use: 'sig' };
}

// Keys persist in --keys (when given) so that a restarted IdP serves the same keys.
let keys;
if (args.keys && existsSync(args.keys)) {
  keys = JSON.parse(readFileSync(args.keys, 'utf8')).keys;
} else {
  keys = [newKey()];
}
const saveKeys = () => {
  if (args.keys) writeFileSync(args.keys, JSON.stringify({ keys }), { mode: 0o600 });
};
saveKeys();

// Clients: [{client_id, client_secret, claims: {...}}]; `claims` are added to every access
// token of that client (TechFin tenant/role/department claims). The default client set covers
// the TechFin roles.
const defaultClients = [
  { client_id: 'analyst-finance', client_secret: 'secret-analyst', claims: { oid: 'alice', roles: ['FinanceAnalyst'], department: 'finance', amr: ['pwd', 'mfa'] } },
  { client_id: 'analyst-nomfa', client_secret: 'secret-analyst', claims: { oid: 'bob', roles: ['FinanceAnalyst'], department: 'finance', amr: ['pwd'] } },
  { client_id: 'analyst-sales', client_secret: 'secret-analyst', claims: { oid: 'carol', roles: ['FinanceAnalyst'], department: 'sales', amr: ['mfa'] } },
  { client_id: 'admin', client_secret: 'secret-admin', claims: { oid: 'dave', roles: ['TenantAdmin'], amr: ['mfa'] } },
  { client_id: 'nobody', client_secret: 'secret-nobody', claims: { oid: 'erin', roles: [] } },
  // A tenant's back-office application (an Entra app-only token): writes the tenant's stored facts.
  { client_id: 'back-office', client_secret: 'secret-back-office', claims: { idtyp: 'app', azp: 'back-office', roles: ['DataWriter'] } },
  // A role name with a comma: forwarded percent-encoded, so it stays one role.
  { client_id: 'admin-comma', client_secret: 'secret-admin', claims: { oid: 'frank', roles: ['Ops,Team', 'TenantAdmin'], amr: ['mfa'] } },
];
const clients = args.clients ? JSON.parse(readFileSync(args.clients, 'utf8')) : defaultClients;
const audience = args.audience;
const ttl = Number(args.ttl);

let port = Number(args.port);
let provider;

function makeProvider(issuer) {
  const p = new Provider(issuer, {
    jwks: { keys },
    clients: clients.map(({ client_id, client_secret, claims }) => ({
      client_id,
      client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      techfin_claims: claims ?? {},
    })),
    extraClientMetadata: { properties: ['techfin_claims'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== audience) throw new Error(`unknown resource ${resource}`);
          return {
            scope: 'reports',
            audience,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: (_ctx, token) => {
      const client = token.client ?? _ctx?.oidc?.client;
      return { ...(client?.techfin_claims ?? {}) };
    },
  });
  p.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
  return p;
}

function rotate(dropOld) {
  keys = dropOld ? [newKey()] : [newKey(), ...keys];
  saveKeys();
  provider = makeProvider(provider.issuer);
  return keys.map((k) => k.kid);
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/admin/rotate' && req.method === 'POST') {
    const kids = rotate(url.searchParams.get('drop_old') === '1');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kids }));
    return;
  }
  if (url.pathname === '/admin/keys') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    return;
  }
  provider.callback()(req, res);
});

server.listen(port, '127.0.0.1', () => {
  port = server.address().port;
  provider = makeProvider(`http://127.0.0.1:${port}`);
  process.on('SIGUSR2', () => rotate(false));
  console.log(JSON.stringify({ ready: true, issuer: provider.issuer, port, kids: keys.map((k) => k.kid) }));
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    // Clients (Envoy's connection pool) keep connections open: close them, or close() waits.
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
