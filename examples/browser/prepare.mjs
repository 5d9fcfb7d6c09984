// Makes what the playground loads, next to the page (gitignored):
//   techfin.bundle.generated.json   the compiled TechFin bundle (`portcullis bundle`)
//   samples.generated.json          development tokens of sample users (`portcullis token`),
//                                   valid for TTL seconds from now (default 24 hours, within the
//                                   engine's 36-hour token lifetime cap; initech's
//                                   issuer refuses tokens older than a day, auditors' sessions
//                                   are fresh for an hour)
// Run from anywhere: node examples/browser/prepare.mjs [--ttl SECONDS]

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const ttlArg = process.argv.indexOf("--ttl");
const ttl = ttlArg > 0 ? Number(process.argv[ttlArg + 1]) : 24 * 3600;

// Reports are stored facts (the pack's bundle.json): a request names one, never its department.
const report = (tenant, id) => ({ type: "Report", id: `${tenant}/${id}` });

/** Each tenant's stored facts, as the decision service would serve them: q3 reports of finance
 *  and sales, each in its department. */
const TENANTS = ["acme", "globex", "initech", "hooli", "piedpiper", "umbrella", "stark", "wayne", "wonka"];
const data = TENANTS.map((tenant) => ({
  tenant,
  revision: 1,
  entities: ["finance", "sales"].flatMap((department) => [
    { uid: { type: "Department", id: `${tenant}/${department}` }, attrs: {}, parents: [] },
    { uid: { type: "Report", id: `${tenant}/q3-${department}` }, attrs: { department },
      parents: [{ type: "Department", id: `${tenant}/${department}` }] },
  ]),
}));

/** Sample users: claims as each tenant's IdP shapes them (see policies/techfin/tenants.json). */
const SAMPLES = [
  { id: "acme-analyst", label: "Alice — Acme analyst, finance, MFA (Entra ID, RS256)", tenant: "acme",
    claims: { oid: "alice", roles: ["FinanceAnalyst"], department: "finance", amr: ["pwd", "mfa"], preferred_username: "alice@acme.example" },
    try: { action: "view", resource: report("acme", "q3-finance") } },
  { id: "acme-analyst-nomfa", label: "Adam — Acme analyst, sales, no MFA (Entra ID, RS256)", tenant: "acme",
    claims: { oid: "adam", roles: ["FinanceAnalyst"], department: "sales", amr: ["pwd"] },
    try: { action: "export", resource: report("acme", "q3-sales") } },
  { id: "acme-admin", label: "Ada — Acme tenant admin, MFA (Entra ID, RS256)", tenant: "acme",
    claims: { oid: "ada", roles: ["TenantAdmin"], amr: ["mfa"] },
    try: { action: "manage_user", resource: { type: "User", id: "acme/bob", attrs: { tenant: "acme" } } } },
  { id: "acme-auditor", label: "Aurora — Acme auditor (Entra ID, RS256; session fresh for an hour)", tenant: "acme",
    claims: { oid: "aurora", roles: ["Auditor"] },
    try: { action: "view", resource: report("acme", "q3-sales") } },
  { id: "globex-analyst", label: "Gina — Globex analyst, finance (Okta, ES256)", tenant: "globex",
    claims: { sub: "gina", techfin_roles: ["FinanceAnalyst"], department: "finance" },
    try: { action: "view", resource: report("globex", "q3-finance") } },
  { id: "initech-analyst", label: "Ian — Initech analyst, acr 2 (Keycloak, PS256)", tenant: "initech",
    claims: { sub: "ian", realm_access: { roles: ["FinanceAnalyst"] }, department: "finance", acr: "2" },
    try: { action: "export", resource: report("initech", "q3-finance") } },
  { id: "hooli-analyst", label: "Hank — Hooli analyst (Auth0 organization, RS256)", tenant: "hooli",
    claims: { sub: "auth0|hank", "https://techfin.example/roles": ["FinanceAnalyst"], "https://techfin.example/department": "finance" },
    try: { action: "view", resource: report("hooli", "q3-finance") } },
  { id: "umbrella-analyst", label: "Ursula — Umbrella analyst (EdDSA, at+jwt)", tenant: "umbrella",
    claims: { sub: "ursula", client_id: "umbrella-web", roles: ["FinanceAnalyst"], department: "finance" },
    try: { action: "view", resource: report("umbrella", "q3-finance") } },
  { id: "umbrella-partner", label: "Umbrella partner API client, scope reports:read (EdDSA)", tenant: "umbrella",
    claims: { client_id: "umbrella-partner", scope: "reports:read" },
    try: { action: "view", resource: report("umbrella", "q3-finance") } },
];

// PORTCULLIS_BIN: an already built CLI (the test scripts pass theirs); otherwise `cargo run`.
function portcullis(args) {
  const bin = process.env.PORTCULLIS_BIN;
  const [cmd, argv] = bin ? [bin, args] : ["cargo", ["run", "-q", "--locked", "-p", "portcullis", "--", ...args]];
  return execFileSync(cmd, argv, {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
}

portcullis(["bundle", "policies/techfin", "-o", join(here, "techfin.bundle.generated.json")]);
const now = Math.floor(Date.now() / 1000);
const samples = SAMPLES.map((sample) => {
  const token = portcullis(["token", "--bundle", "policies/techfin", "--tenant", sample.tenant, "--now", String(now),
    "--ttl", String(ttl), "--claims", JSON.stringify(sample.claims)]).trim();
  // The full claim set as minted, for display next to the decision. (The SDK never parses
  // tokens in JavaScript; this is the generator describing what it just signed.)
  const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
  return { ...sample, claims, token };
});
writeFileSync(join(here, "samples.generated.json"), `${JSON.stringify({ generatedAt: now, ttl, samples, data }, null, 2)}\n`);
console.log(`examples/browser: bundle and ${samples.length} sample tokens (valid ${ttl} s from ${new Date(now * 1000).toISOString()})`);
