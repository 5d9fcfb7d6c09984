// The playground: decides with the Portcullis package in the page. Uses only the package API.

import { Portcullis, PortcullisError } from "portcullis";

const $ = (id) => document.getElementById(id);

function setList(id, items) {
  const list = $(id);
  list.replaceChildren(...items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none";
    list.append(li);
  }
}

function parseJson(id, what) {
  const text = $(id).value.trim();
  if (text === "") return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status} (run \`node examples/browser/prepare.mjs\`)`);
  }
  return response.json();
}

let engine;
let samples;
try {
  const [bundle, generated] = await Promise.all([
    fetchJson("./techfin.bundle.generated.json"),
    fetchJson("./samples.generated.json"),
  ]);
  samples = generated.samples;
  engine = await Portcullis.load(bundle);
  // The tenants' stored facts (here from the generated file; an app fetches them from the
  // decision service).
  for (const data of generated.data) engine.loadTenantData(data);
} catch (err) {
  $("status").textContent = `failed: ${err.message}`;
  throw err;
}
$("revision").textContent = engine.revision;

for (const sample of samples) {
  const option = document.createElement("option");
  option.value = sample.id;
  option.textContent = sample.label;
  $("sample").append(option);
}

function useSample(id) {
  const sample = samples.find((s) => s.id === id);
  if (!sample) return;
  $("token").value = sample.token;
  $("action").value = sample.try.action;
  $("resource-type").value = sample.try.resource.type;
  $("resource-id").value = sample.try.resource.id;
  $("resource-attrs").value = JSON.stringify(sample.try.resource.attrs ?? {});
}
$("sample").addEventListener("change", (event) => useSample(event.target.value));

/** The UI-gating case: which of these would the token be allowed? */
function gateRequests(tenant) {
  const report = (id, t = tenant) => ({ type: "Report", id: `${t}/${id}` });
  const other = tenant === "globex" ? "acme" : "globex";
  return [
    ["view finance report", { action: "view", resource: report("q3-finance") }],
    ["export finance report", { action: "export", resource: report("q3-finance") }],
    ["view sales report", { action: "view", resource: report("q3-sales") }],
    [`view ${other}'s finance report`, { action: "view", resource: report("q3-finance", other) }],
    ["manage a user", { action: "manage_user", resource: { type: "User", id: `${tenant}/bob`, attrs: { tenant } } }],
  ];
}

async function renderGate(token, tenant) {
  const rows = gateRequests(tenant ?? "acme");
  const decisions = await engine.decideMany({ token, requests: rows.map(([, r]) => r) });
  $("gate").tBodies[0].replaceChildren(...rows.map(([label], i) => {
    const tr = document.createElement("tr");
    const what = document.createElement("td");
    what.textContent = label;
    const outcome = document.createElement("td");
    outcome.textContent = decisions[i].decision;
    outcome.className = decisions[i].decision;
    tr.append(what, outcome);
    return tr;
  }));
}

async function decide() {
  $("error").textContent = "";
  const token = $("token").value.trim() || null;
  const request = {
    token,
    action: $("action").value,
    resource: { type: $("resource-type").value, id: $("resource-id").value, attrs: parseJson("resource-attrs", "resource attributes") },
    context: parseJson("context", "context"),
  };
  const started = performance.now();
  const decision = await engine.decide(request);
  const elapsed = performance.now() - started;

  const out = $("decision");
  out.textContent = decision.decision;
  out.dataset.decision = decision.decision;
  $("elapsed").textContent = `${elapsed.toFixed(2)} ms · status ${decision.status} · id ${decision.decisionId}`;
  setList("reasons", decision.reasons);
  setList("errors", decision.errors.map((e) => `${e.code}: ${e.message}`));

  if (decision.principal !== null && token !== null) {
    $("principal").textContent = JSON.stringify(await engine.authenticate(token), null, 2);
  } else {
    $("principal").textContent = "– (not authenticated)";
  }
  const sample = samples.find((s) => s.token === token);
  $("claims").textContent = sample
    ? JSON.stringify(sample.claims, null, 2)
    : "– (shown for sample users, as they were minted; the SDK does not parse tokens in JavaScript)";
  await renderGate(token, decision.principal?.tenant);
}

$("decide").addEventListener("click", () => {
  $("decide").disabled = true;
  decide()
    .catch((err) => {
      $("error").textContent = err instanceof PortcullisError ? `${err.code}: ${err.message}` : String(err.message ?? err);
    })
    .finally(() => {
      $("decide").disabled = false;
    });
});

$("decide").disabled = false;
$("status").textContent = "ready";
document.body.dataset.ready = "true";
