//! Decisions with stored authorization data (`Engine::decide` joining the tenant's stored
//! entities), against raw Cedar on the same entities prebuilt, and against the same decision
//! with little data loaded; each ratio from the same run.
//!
//! | group | measured | floor | target |
//! | --- | --- | --- | --- |
//! | `stored_data` | `large`: a cached-token decision that joins the principal's stored parents and the resource's stored ancestors, with 10,000 tenants × 1,000 entities loaded | `cedar_floor`: `Authorizer::is_authorized` with the same request, policies and entities (principal, resource, ancestors) prebuilt as Cedar `Entities` | ≤ 1.5 |
//! | `stored_data` | `large` | `small`: the same decision with 10 tenants × 10 entities loaded | ≤ 1.3 |
//!
//! `stored_data/remembered` is information: the same request again, answered by the token's
//! memo without Cedar.
//!
//! **The shape.** A TechFin-like schema where reports sit in departments and folders
//! (`Report in [Department, Folder]`, `Department in [Division]`, `Folder in [Folder]`), users
//! in teams, and a report's `department`, `folder` and `shared_with` are stored attributes.
//! Each tenant stores one division, departments, teams, folders (a root and its children, each
//! owned by a team), users and reports ([`tenant_entities`]). The principal is a stored user
//! (its stored `department` wins over the token's, its team is a stored parent) with the
//! `FinanceAnalyst` role from the token; the resource is one of its tenant's reports, so each
//! decision joins 6 stored entities (the user's team; the report, its department and
//! division, its folder and the root folder) to the token's principal.
//!
//! **Evaluated, not remembered.** The engine remembers a token's last 8 evaluations, keyed by
//! request, data revision and session age. The timed requests rotate over many (tenant,
//! report) pairs with a decision time that advances by a second each request (over a 61 s
//! window), so that no token sees the same key within its last 8: Cedar evaluates every timed
//! decision, in the small data set too (10 tenants × 2 reports).
//!
//! Scale: `BENCH_DATA_TENANTS` × `BENCH_DATA_ENTITIES` (default 10,000 × 1,000; with
//! `BENCH_QUICK=1`, 1,000 × 100). Building the large data set is timed and its memory measured
//! (resident set before and after, `/proc/self/status`); both go to
//! `target/criterion/data-build.json` next to the paired ratios
//! (`target/criterion/paired-ratios-data.json`), for `scripts/bench.sh`.
//!
//! Run with `scripts/bench.sh` or `cargo bench -p portcullis-engine --features mint --bench
//! data`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cedar_policy::{Authorizer, Context, Entities, Entity, EntityUid, PolicyId, PolicySet};
use cedar_policy::{Request, RestrictedExpression, Schema};
use common::{NOW, Paired, criterion_dir, median, mint, techfin, timed};
use criterion::Criterion;
use portcullis_engine::{
    Bundle, CompiledBundle, DataDocument, DataSettings, DecisionRequest, Engine, IssuerConfig,
    PolicySource, ResourceRef, TenantConfig,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

const SCHEMA: &str = r#"
entity Role;
entity Division { tenant: String };
entity Department in [Division] { tenant: String };
entity Team { tenant: String };
entity User in [Role, Team] { tenant: String, department?: String, email?: String };
entity Folder in [Folder] { tenant: String, owner?: Team };
entity Report in [Department, Folder] {
  tenant: String,
  department?: String,
  folder?: Folder,
  shared_with?: Set<User>,
};
entity Tenant { tenant: String };
type Session = {
  mfa: Bool,
  session_age?: Long,
  scopes: Set<String>,
  token_type: String,
  client_id?: String,
};
action view, export appliesTo { principal: [User], resource: Report, context: Session };
action "data.read", "data.write" appliesTo { principal: [User], resource: Tenant, context: Session };
"#;

/// The shared policies: TechFin's analysts, auditors and guardrails, plus rules that rest on
/// stored facts (a report's folder's owning team, its `shared_with`).
const POLICIES: &str = r#"
@id("analyst-view-own-department")
permit (principal is User in Role::"FinanceAnalyst", action == Action::"view", resource is Report)
when { principal has department && resource has department
       && resource.department == principal.department && resource.tenant == principal.tenant };

@id("analyst-export-own-department")
permit (principal is User in Role::"FinanceAnalyst", action == Action::"export", resource is Report)
when { principal has department && resource has department
       && resource.department == principal.department && resource.tenant == principal.tenant };

@id("team-folder")
permit (principal is User, action == Action::"view", resource is Report)
when { resource has folder && resource.folder has owner && principal in resource.folder.owner };

@id("shared-with-me")
permit (principal is User, action == Action::"view", resource is Report)
when { resource has shared_with && resource.shared_with.contains(principal) };

@id("auditor-view-fresh-session")
permit (principal is User in Role::"Auditor", action == Action::"view", resource is Report)
when { resource.tenant == principal.tenant && context has session_age && context.session_age < 3600 };

@id("auditor-read-only")
forbid (principal in Role::"Auditor", action == Action::"export", resource);

@id("no-cross-tenant")
forbid (principal, action, resource) when { resource.tenant != principal.tenant };

@id("sensitive-actions-need-mfa")
forbid (principal is User, action == Action::"export", resource) unless { context.mfa };

@id("admins-data")
permit (principal is User in Role::"TenantAdmin", action in [Action::"data.read", Action::"data.write"], resource is Tenant)
when { resource.tenant == principal.tenant };
"#;

/// Each tenant's own policy.
fn tenant_policy(tenant: &str) -> String {
    format!(
        "@id(\"{tenant}-controllers\")\npermit (principal is User in Role::\"Controller\", \
         action in [Action::\"view\", Action::\"export\"], resource is Report)\n\
         when {{ resource.tenant == \"{tenant}\" && principal.tenant == \"{tenant}\" }};\n"
    )
}

/// A data set: `tenants` tenants of `entities` stored entities each.
#[derive(Clone, Copy, Debug)]
struct Scale {
    tenants: usize,
    entities: usize,
}

impl Scale {
    /// The large data sets to measure, `BENCH_DATA_SCALES` (`<tenants>x<entities>`, comma
    /// separated): 10,000 × 1,000 unless told, 1,000 × 100 with `BENCH_QUICK=1`.
    fn large() -> Vec<Self> {
        let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| v == "1");
        let text = std::env::var("BENCH_DATA_SCALES")
            .unwrap_or_else(|_| if quick { "1000x100" } else { "10000x1000" }.into());
        text.split(',')
            .map(|scale| {
                let (t, e) = scale
                    .trim()
                    .split_once('x')
                    .expect("BENCH_DATA_SCALES: <tenants>x<entities>, comma separated");
                Self {
                    tenants: t.parse().expect("a number of tenants"),
                    entities: e.parse().expect("a number of entities per tenant"),
                }
            })
            .collect()
    }

    const SMALL: Self = Self {
        tenants: 10,
        entities: 10,
    };

    /// `10000x1000`: the name of its benchmarks.
    fn name(self) -> String {
        format!("{}x{}", self.tenants, self.entities)
    }

    fn total(self) -> usize {
        self.tenants * self.entities
    }
}

fn tenant_name(i: usize) -> String {
    format!("t{i:05}")
}

/// The bundle: the schema and shared policies above, and `n` tenants, each with its own issuer
/// (the acme development key) and one policy of its own.
fn data_bundle(n: usize) -> CompiledBundle {
    let base = techfin();
    let acme = &base.tenants["acme"].issuers[0];
    let mut settings = base.settings.clone();
    settings.data = DataSettings {
        stored: ["Division", "Department", "Team", "User", "Folder", "Report"]
            .map(str::to_owned)
            .to_vec(),
        max_depth: 4,
        ..DataSettings::default()
    };
    let mut policies = vec![PolicySource {
        file: "policies/shared.cedar".into(),
        tenant: None,
        source: POLICIES.into(),
    }];
    let mut compiled = CompiledBundle::new(settings, Some(SCHEMA.into()), Vec::new());
    for i in 0..n {
        let tenant = tenant_name(i);
        let issuer = IssuerConfig {
            issuer: format!("https://idp.example/{tenant}/"),
            ..acme.clone()
        };
        compiled.tenants.insert(
            tenant.clone(),
            TenantConfig {
                display_name: None,
                issuers: vec![issuer],
            },
        );
        policies.push(PolicySource {
            file: format!("policies/tenants/{tenant}/controllers.cedar"),
            source: tenant_policy(&tenant),
            tenant: Some(tenant),
        });
    }
    compiled.policies = policies;
    compiled.seal()
}

/// How a tenant's `entities` entities are made up.
#[derive(Clone, Copy, Debug)]
struct Shape {
    departments: usize,
    teams: usize,
    folders: usize,
    users: usize,
    reports: usize,
}

impl Shape {
    /// One division; departments, teams, folders (a root and the others in it) and users in
    /// proportion; the rest reports: 10 departments, 10 teams, 20 folders, 50 users and 909
    /// reports for 1,000 entities; one department and team, 2 folders, 3 users and 2 reports
    /// for 10. Whatever the size, a report is in a department (in the division) and in a folder
    /// that is in the root, and is shared with two users other than `u0`: every decision of
    /// `u0` joins the same number of entities with the same kinds of attributes.
    fn of(entities: usize) -> Self {
        let departments = (entities / 100).max(1);
        let teams = (entities / 100).max(1);
        let folders = (entities / 50).max(2);
        let users = (entities / 20).max(3);
        let reports = entities
            .checked_sub(1 + departments + teams + folders + users)
            .filter(|r| *r > 0)
            .expect("at least 10 entities per tenant");
        Self {
            departments,
            teams,
            folders,
            users,
            reports,
        }
    }
}

fn uid_json(ty: &str, id: &str) -> Value {
    json!({"type": ty, "id": id})
}

fn entity_ref(ty: &str, id: &str) -> Value {
    json!({"__entity": uid_json(ty, id)})
}

fn entity_json(ty: &str, id: String, attrs: Value, parents: Vec<Value>) -> Value {
    json!({"uid": uid_json(ty, &id), "attrs": attrs, "parents": parents})
}

/// Tenant `t`'s stored entities (Cedar entity JSON), a pure function of the tenant and shape.
fn tenant_entities(t: &str, shape: Shape) -> Vec<Value> {
    let s = shape;
    let mut out = Vec::with_capacity(1 + s.departments + s.teams + s.folders + s.users + s.reports);
    let id = |kind: &str, n: usize| format!("{t}/{kind}{n}");
    out.push(entity_json("Division", id("div", 0), json!({}), vec![]));
    for d in 0..s.departments {
        let parents = vec![uid_json("Division", &id("div", 0))];
        out.push(entity_json("Department", id("dept", d), json!({}), parents));
    }
    for k in 0..s.teams {
        out.push(entity_json("Team", id("team", k), json!({}), vec![]));
    }
    for f in 0..s.folders {
        // Folder 0 is the root; the others are in it. Each is owned by a team.
        let parents = if f == 0 {
            vec![]
        } else {
            vec![uid_json("Folder", &id("f", 0))]
        };
        let owner = entity_ref("Team", &id("team", f % s.teams));
        out.push(entity_json(
            "Folder",
            id("f", f),
            json!({"owner": owner}),
            parents,
        ));
    }
    for u in 0..s.users {
        let attrs = json!({"department": format!("dept{}", u % s.departments)});
        let parents = vec![uid_json("Team", &id("team", u % s.teams))];
        out.push(entity_json("User", id("u", u), attrs, parents));
    }
    for r in 0..s.reports {
        let (d, f) = (r % s.departments, 1 + r % (s.folders - 1));
        let shared: Vec<Value> = [r, r + 1]
            .iter()
            .map(|u| entity_ref("User", &id("u", 1 + u % (s.users - 1))))
            .collect();
        let attrs = json!({
            "department": format!("dept{d}"),
            "folder": entity_ref("Folder", &id("f", f)),
            "shared_with": shared,
        });
        let parents = vec![
            uid_json("Department", &id("dept", d)),
            uid_json("Folder", &id("f", f)),
        ];
        out.push(entity_json("Report", id("r", r), attrs, parents));
    }
    out
}

/// The resident set and its peak so far, bytes (`/proc/self/status`; 0 where there is none).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `MemAvailable` of `/proc/meminfo`, bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What loading a data set cost.
struct Built {
    scale: Scale,
    seconds: f64,
    threads: usize,
    rss_before: u64,
    rss_after: u64,
    peak: u64,
}

impl Built {
    fn bytes_per_entity(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.scale.total() as f64
    }

    fn json(&self) -> Value {
        json!({
            "tenants": self.scale.tenants,
            "entities_per_tenant": self.scale.entities,
            "entities": self.scale.total(),
            "seconds": self.seconds,
            "threads": self.threads,
            "rss_before": self.rss_before,
            "rss_after": self.rss_after,
            "peak_rss": self.peak,
            "bytes_per_entity": self.bytes_per_entity(),
        })
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// An engine over `data_bundle(scale.tenants)` with every tenant's data loaded (as snapshot
/// documents, each entity checked against the schema as a host's would be), on as many
/// threads as the process may use. The first tenants are a probe: when the whole set would
/// not fit in the memory available (less 2 GiB for the rest of the machine), the benchmark
/// stops there rather than push a shared machine into swap or the OOM killer.
fn loaded_engine(scale: Scale) -> (CompiledBundle, Engine, Built) {
    let compiled = data_bundle(scale.tenants);
    let engine = Engine::new(Bundle::load(compiled.clone()).unwrap());
    let shape = Shape::of(scale.entities);
    let load = |i: usize| {
        let tenant = tenant_name(i);
        let entities = tenant_entities(&tenant, shape);
        let document = DataDocument {
            tenant,
            revision: 1,
            entities,
            ..DataDocument::default()
        };
        let loaded = engine.apply_tenant_data(document).unwrap();
        assert_eq!(loaded.entities, scale.entities);
    };
    let (rss_before, _) = memory();
    let started = Instant::now();
    let probe = scale.tenants.min((20_000 / scale.entities).max(10));
    (0..probe).for_each(load);
    let per_entity = memory().0.saturating_sub(rss_before) as f64 / (probe * scale.entities) as f64;
    let needed = per_entity * scale.total() as f64;
    if let Some(available) = available_memory() {
        let budget = available.saturating_sub(2 << 30) as f64;
        assert!(
            needed <= budget,
            "{} tenants × {} entities need about {:.1} GiB ({:.0} bytes an entity, measured on \
             the first {probe} tenants); {:.1} GiB are available: set BENCH_DATA_SCALES to a \
             smaller data set",
            scale.tenants,
            scale.entities,
            needed / (1024.0 * MIB),
            per_entity,
            available as f64 / (1024.0 * MIB),
        );
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(scale.tenants);
    let next = AtomicUsize::new(probe);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= scale.tenants {
                        break;
                    }
                    load(i);
                    if (i + 1).is_multiple_of(1000) {
                        eprintln!(
                            "  loaded {} of {} tenants ({:.0} s)",
                            i + 1,
                            scale.tenants,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let (rss_after, peak) = memory();
    let built = Built {
        scale,
        seconds,
        threads,
        rss_before,
        rss_after,
        peak,
    };
    (compiled, engine, built)
}

/// One timed decision: a request and its time.
struct Asked {
    request: DecisionRequest,
    now: i64,
}

/// The tenants and reports a rotation visits: up to 64 tenants spread over the data set, each
/// with reports spread over its own, interleaved (tenant after tenant). A token of each
/// tenant's user `u0`.
fn rotation(compiled: &CompiledBundle, scale: Scale, len: usize) -> Vec<(usize, usize, Asked)> {
    let shape = Shape::of(scale.entities);
    let tenants = scale.tenants.min(64);
    let tokens: Vec<String> = (0..tenants)
        .map(|k| {
            let t = tenant_name(k * (scale.tenants / tenants));
            let claims = json!({
                "oid": "u0", "sub": "u0-pairwise", "roles": ["FinanceAnalyst"], "department": "finance",
                "preferred_username": format!("u0@{t}.example"),
            });
            mint(compiled, &t, &claims, &format!("data-{t}"))
        })
        .collect();
    (0..len)
        .map(|i| {
            let k = i % tenants;
            let t = k * (scale.tenants / tenants);
            let r = (i / tenants * 57 + k * 13) % shape.reports;
            let request = DecisionRequest {
                token: Some(tokens[k].clone()),
                action: "view".into(),
                resource: ResourceRef::new("Report", format!("{}/r{r}", tenant_name(t))),
                context: Map::new(),
            };
            // 61 s of advancing time, prime to every rotation's length: a token never meets
            // the same (request, session age) within its last 8.
            let now = NOW + i64::try_from(i % 61).unwrap();
            (t, r, Asked { request, now })
        })
        .collect()
}

/// The same evaluations as the engine's, prebuilt: for each request of a rotation, a Cedar
/// `Request` and `Entities` holding the principal (its token entity merged with its stored
/// one), the stored entities the engine joins, and the policies that apply to its tenant.
struct CedarFloor {
    cases: Vec<(Request, usize, Entities)>,
    policies: Vec<PolicySet>,
}

impl CedarFloor {
    fn new(scale: Scale, rotation: &[(usize, usize, Asked)]) -> Self {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).unwrap();
        let shape = Shape::of(scale.entities);
        let uid = |text: String| EntityUid::from_str(&text).unwrap();
        let mut data: HashMap<usize, HashMap<EntityUid, Value>> = HashMap::new();
        let mut policies = Vec::new();
        let mut policy_of = HashMap::new();
        let mut cases = Vec::new();
        for (t, r, _) in rotation {
            let tenant = tenant_name(*t);
            let stored = data.entry(*t).or_insert_with(|| {
                tenant_entities(&tenant, shape)
                    .into_iter()
                    .map(|e| {
                        let u = &e["uid"];
                        let text = format!("{}::{}", u["type"].as_str().unwrap(), u["id"]);
                        (uid(text), e)
                    })
                    .collect()
            });
            let with_tenant = |mut e: Value| {
                e["attrs"]["tenant"] = tenant.clone().into();
                Entity::from_json_value(e, Some(&schema)).unwrap()
            };
            // The token's principal with the stored user's attributes and parents.
            let principal = uid(format!("User::\"{tenant}/u0\""));
            let stored_user = &stored[&principal];
            let mut parents = stored_user["parents"].as_array().unwrap().clone();
            parents.push(uid_json("Role", "FinanceAnalyst"));
            let mut entities = vec![with_tenant(json!({
                "uid": uid_json("User", &format!("{tenant}/u0")),
                "attrs": {
                    "department": stored_user["attrs"]["department"],
                    "email": format!("u0@{tenant}.example"),
                },
                "parents": parents,
            }))];
            // The stored ancestors of the principal's parents and of the resource.
            let resource = uid(format!("Report::\"{tenant}/r{r}\""));
            let mut level: Vec<EntityUid> = vec![resource.clone()];
            level.extend(
                stored_user["parents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| uid(format!("{}::{}", p["type"].as_str().unwrap(), p["id"]))),
            );
            let mut seen = std::collections::HashSet::new();
            while !level.is_empty() {
                let mut next = Vec::new();
                for u in level {
                    if !seen.insert(u.clone()) {
                        continue;
                    }
                    if let Some(e) = stored.get(&u) {
                        for p in e["parents"].as_array().unwrap() {
                            next.push(uid(format!("{}::{}", p["type"].as_str().unwrap(), p["id"])));
                        }
                        entities.push(with_tenant(e.clone()));
                    }
                }
                level = next;
            }
            let entities = Entities::from_entities(entities, Some(&schema)).unwrap();
            let index = *policy_of.entry(*t).or_insert_with(|| {
                let mut set = PolicySet::new();
                for source in [POLICIES.to_owned(), tenant_policy(&tenant)] {
                    for policy in PolicySet::from_str(&source).unwrap().policies() {
                        let id = policy.annotation("id").unwrap().to_owned();
                        set.add(policy.clone().new_id(PolicyId::new(id))).unwrap();
                    }
                }
                policies.push(set);
                policies.len() - 1
            });
            let context = Context::from_pairs([
                ("mfa".to_owned(), RestrictedExpression::new_bool(false)),
                ("session_age".to_owned(), RestrictedExpression::new_long(60)),
                ("scopes".to_owned(), RestrictedExpression::new_set([])),
                (
                    "token_type".to_owned(),
                    RestrictedExpression::new_string("user".into()),
                ),
            ])
            .unwrap();
            let request = Request::new(
                principal,
                uid("Action::\"view\"".into()),
                resource,
                context,
                Some(&schema),
            )
            .unwrap();
            cases.push((request, index, entities));
        }
        Self { cases, policies }
    }

    /// Case `i`'s decision and the ids of the policies that decided it.
    fn decide(&self, i: usize) -> (bool, Vec<String>) {
        let (request, policies, entities) = &self.cases[i];
        let response =
            Authorizer::new().is_authorized(request, &self.policies[*policies], entities);
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        (
            response.decision() == cedar_policy::Decision::Allow,
            reasons,
        )
    }

    fn decide_only(&self, i: usize) -> cedar_policy::Decision {
        let (request, policies, entities) = &self.cases[i];
        Authorizer::new()
            .is_authorized(request, &self.policies[*policies], entities)
            .decision()
    }
}

/// The engine's decision and reasons, checked to be without errors.
fn engine_decision(engine: &Engine, asked: &Asked) -> (bool, Vec<String>) {
    let decision = engine.decide(&asked.request, asked.now);
    assert!(decision.errors.is_empty(), "{decision:?}");
    assert!(decision.data_revision.is_some(), "{decision:?}");
    let mut reasons = decision.reasons.clone();
    reasons.sort();
    (decision.is_allowed(), reasons)
}

/// The next index of a rotation of `len`, round and round.
fn step(at: &mut usize, len: usize) -> usize {
    *at = (*at + 1) % len;
    *at
}

/// The small data set, its rotation and engine: what each large one is compared with.
struct Small {
    engine: Engine,
    asked: Vec<Asked>,
}

impl Small {
    fn new() -> Self {
        let (compiled, engine, _) = loaded_engine(Scale::SMALL);
        let asked: Vec<Asked> = rotation(&compiled, Scale::SMALL, ROTATION)
            .into_iter()
            .map(|(_, _, asked)| asked)
            .collect();
        for asked in &asked {
            engine_decision(&engine, asked);
        }
        Self { engine, asked }
    }
}

/// Requests a timed rotation goes round.
const ROTATION: usize = 1024;

fn decide(engine: &Engine, asked: &Asked) -> portcullis_engine::Decision {
    engine.decide(black_box(&asked.request), asked.now)
}

/// One large data set: loaded, checked against the floor, then timed against the floor and
/// the small data set.
fn stored_data(c: &mut Criterion, paired: &mut Paired, large: Scale, small: &Small) -> Built {
    let name = large.name();
    eprintln!(
        "stored_data: loading {} tenants × {} entities",
        large.tenants, large.entities
    );
    let (compiled, engine, built) = loaded_engine(large);
    eprintln!(
        "stored_data: {} entities loaded in {:.1} s on {} threads; resident set {:.0} → {:.0} MiB \
         (peak {:.0} MiB, {:.0} bytes an entity)",
        large.total(),
        built.seconds,
        built.threads,
        built.rss_before as f64 / MIB,
        built.rss_after as f64 / MIB,
        built.peak as f64 / MIB,
        built.bytes_per_entity(),
    );
    let rotation = rotation(&compiled, large, ROTATION);
    let floor = CedarFloor::new(large, &rotation);

    // The floor decides exactly as the engine does, request by request.
    let mut allowed = 0;
    for (i, (_, _, asked)) in rotation.iter().enumerate() {
        let decision = engine_decision(&engine, asked);
        assert_eq!(decision, floor.decide(i), "request {i}: engine vs floor");
        allowed += usize::from(decision.0);
    }
    eprintln!(
        "stored_data: {allowed} of {} requests of the rotation allowed, as by Cedar on the \
         prebuilt entities",
        rotation.len()
    );
    let asked: Vec<&Asked> = rotation.iter().map(|(_, _, a)| a).collect();
    let remembered = asked[0];

    let mut group = c.benchmark_group("stored_data");
    let mut at = 0;
    group.bench_function(format!("large_{name}"), |b| {
        b.iter(|| decide(&engine, asked[step(&mut at, asked.len())]))
    });
    group.bench_function(format!("small_{name}"), |b| {
        b.iter(|| {
            decide(
                &small.engine,
                &small.asked[step(&mut at, small.asked.len())],
            )
        })
    });
    group.bench_function(format!("cedar_floor_{name}"), |b| {
        b.iter(|| black_box(&floor).decide_only(step(&mut at, floor.cases.len())))
    });
    group.bench_function(format!("remembered_{name}"), |b| {
        b.iter(|| decide(&engine, remembered))
    });
    group.finish();

    let (mut large_at, mut small_at, mut floor_at) = (0, 0, 0);
    paired.measure(
        &format!("stored_data_{name}"),
        || timed(|| decide(&engine, asked[step(&mut large_at, asked.len())])),
        || timed(|| black_box(&floor).decide_only(step(&mut floor_at, floor.cases.len()))),
    );
    paired.measure(
        &format!("stored_data_scaling_{name}"),
        || timed(|| decide(&engine, asked[step(&mut large_at, asked.len())])),
        || {
            timed(|| {
                decide(
                    &small.engine,
                    &small.asked[step(&mut small_at, small.asked.len())],
                )
            })
        },
    );
    paired.measure(
        &format!("stored_data_remembered_{name}"),
        || timed(|| decide(&engine, remembered)),
        || timed(|| black_box(&floor).decide_only(step(&mut floor_at, floor.cases.len()))),
    );
    built
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let mut paired = Paired::from_env();
    let small = Small::new();
    let mut built = Vec::new();
    // One large data set at a time: each is dropped before the next is loaded.
    for large in Scale::large() {
        built.push(stored_data(&mut c, &mut paired, large, &small));
    }
    c.final_summary();
    let Some(dir) = criterion_dir() else { return };
    paired.write(&dir, "paired-ratios-data.json");
    let report = Value::Array(built.iter().map(Built::json).collect());
    let _ = std::fs::write(dir.join("data-build.json"), report.to_string());
    println!("\nratios to the floor measured in this run (criterion medians | paired rounds):");
    for b in &built {
        let name = b.scale.name();
        for (what, floor, pair, target) in [
            (
                "raw Cedar",
                format!("cedar_floor_{name}"),
                format!("stored_data_{name}"),
                1.5,
            ),
            (
                "10 x 10",
                format!("small_{name}"),
                format!("stored_data_scaling_{name}"),
                1.3,
            ),
        ] {
            let pair = paired
                .results
                .iter()
                .find(|r| r.name == pair)
                .map_or_else(|| "-".to_owned(), |r| format!("{:.2}", r.median));
            let measured = format!("stored_data/large_{name}");
            let floor = format!("stored_data/{floor}");
            if let (Some(m), Some(f)) = (
                median(&dir, &measured, started),
                median(&dir, &floor, started),
            ) {
                println!(
                    "  {name} / {what:<10} {m:>10.0} ns / {f:>10.0} ns = {:>5.2} | {pair:>5}  (target <= {target})",
                    m / f
                );
            }
        }
        println!(
            "  {name}: loaded in {:.1} s on {} threads, resident set +{:.0} MiB ({:.0} bytes an entity)",
            b.seconds,
            b.threads,
            b.rss_after.saturating_sub(b.rss_before) as f64 / MIB,
            b.bytes_per_entity(),
        );
    }
}
