// Compiled with `tsc --strict --noEmit` by types.test.mjs: the declarations describe the API as
// a TypeScript application uses it. Lines marked @ts-expect-error must stay errors.

import {
  BundleError,
  type Decision,
  type DecisionErrorCode,
  initialize,
  KeyError,
  Portcullis,
  PortcullisError,
  type DataLoaded,
  type Principal,
  RequestError,
  type SubtleCryptoLike,
  TokenError,
} from "portcullis";

declare const bundleJson: string;
declare const token: string;

export async function example(): Promise<void> {
  await initialize();
  const pc: Portcullis = await Portcullis.load(bundleJson, {
    now: () => Date.now(),
    fetchKeys: { cooldownMs: 10_000, maxAgeMs: 3_600_000, retryMs: 5_000, onError: (e: KeyError) => console.warn(e.code, e.message) },
    subtle: globalThis.crypto.subtle,
  });
  const rev: string = pc.revision;
  const d: Decision = await pc.decide({
    token,
    action: "view",
    resource: { type: "Report", id: "acme/q3", attrs: { tenant: "acme", department: "finance", n: 9007199254740993n } },
    context: { ip: { __extn: { fn: "ip", arg: "10.0.0.1" } } },
  });
  if (d.decision === "allow") {
    const reasons: string[] = d.reasons;
    const id: string = d.decisionId;
    console.log(rev, reasons, id, d.principal?.tenant, d.status === 200);
  }
  for (const e of d.errors) {
    const code: DecisionErrorCode = e.code;
    console.log(code, e.message, e.policy ?? "");
  }
  const many: Decision[] = await pc.decideMany({ token, requests: [{ action: "export", resource: { type: "Report", id: "q3" } }] });
  const p: Principal = await pc.authenticate(token);
  const authTime: number | undefined = p.authTime;
  const trusted: Decision = pc.decideTrusted({
    principal: { type: "User", id: "alice" },
    action: { type: "Action", id: "view" },
    resource: { type: "Report", id: "q3" },
    entities: [{ uid: { type: "User", id: "alice" }, attrs: {}, parents: [{ type: "Role", id: "Auditor" }] }],
  });
  pc.setIssuerKeys("https://issuer.example", { keys: [{ kty: "RSA", n: "...", e: "AQAB" }] });
  console.log(many.length, authTime, trusted.decision, pc.remoteIssuers().map((i) => i.loaded));
  try {
    await Portcullis.load({ format: "portcullis.bundle/v1", policies: [] });
  } catch (err) {
    if (err instanceof BundleError) console.log(err.problems.map((x) => `${x.code} ${x.location?.file ?? ""}`));
    else if (err instanceof TokenError) console.log(err.code);
    else if (err instanceof PortcullisError) console.log(err.code, err.help);
  }
  const edged = await Portcullis.load(bundleJson, {
    edge: { token: [{ header: { name: "authorization", prefix: "Bearer " } }, { cookie: { name: "access_token" } }], forward: { tenant: "x-tenant" } },
  });
  const verdict = await edged.decideHttp({ method: "GET", path: "/tenants/acme/reports/q3", headers: { authorization: `Bearer ${token}` } });
  if (verdict.forward) console.log(verdict.identity["x-tenant"], verdict.decision?.decision);
  else console.log(verdict.status, verdict.body.code, verdict.headers["www-authenticate"]);
  await edged.decideHttp({ method: "GET", path: "/", headers: new Headers({ cookie: "access_token=x" }) });
  // @ts-expect-error: unmatched is deny or pass
  await Portcullis.load(bundleJson, { edge: { unmatched: "allow" } });
  const loaded: DataLoaded = await pc.fetchData({
    url: "https://authz.example",
    token,
    resources: [{ type: "Report", id: "acme/q3" }],
    fetch: globalThis.fetch,
  });
  const revision: number = loaded.revision;
  await pc.fetchData({ url: "/authz", token, fetch: (url, init) => fetch(url, init) });
  try {
    await pc.fetchData({ url: "/authz", token });
  } catch (err) {
    if (err instanceof RequestError && (err.code === "data_fetch" || err.code === "data_other_tenant")) console.log(err.message);
  }
  // @ts-expect-error: the token is required
  await pc.fetchData({ url: "/authz" });
  // @ts-expect-error: resources are `{type, id}`
  await pc.fetchData({ url: "/authz", token, resources: ["Report::\"acme/q3\""] });
  const outside: DecisionErrorCode = "data_outside_slice";
  console.log(revision, outside);
  pc.dispose();

  const now: Decision | null = pc.decideSync({ token, action: "view", resource: { type: "Report", id: "q3" } });
  if (now !== null) console.log(now.decision === "allow");
  // @ts-expect-error: decideSync may answer null (the signature is not checked yet)
  const sure: Decision = pc.decideSync({ token, action: "view", resource: { type: "Report", id: "q3" } });
  console.log(sure);
  // @ts-expect-error: decisions are Promises
  const notAwaited: Decision = pc.decide({ token, action: "view", resource: { type: "Report", id: "q3" } });
  // @ts-expect-error: `resource` is required
  await pc.decide({ token, action: "view" });
  // @ts-expect-error: outcomes are a closed set
  const outcome: Decision["decision"] = "maybe";
  // @ts-expect-error: the constructor is private
  new Portcullis();
  console.log(notAwaited, outcome);
}

// WebCrypto as the platform types it fits the SDK's minimal interface.
export const subtle: SubtleCryptoLike = globalThis.crypto.subtle;
