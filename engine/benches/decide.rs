//! Decision-cost benchmarks for `Engine::decide`, each against a floor measured in the same run.
//!
//! Absolute times on a shared machine are noise; the ratios to the floors are what we track:
//!
//! | group | measured | floor | target |
//! | --- | --- | --- | --- |
//! | `cached_decision` | `engine`: `decide` with a token already in the cache, over 64 reports in turn (more than the token's memo holds: Cedar evaluates each) | `cedar_floor`: `Authorizer::is_authorized` on a prebuilt request, policy set and entities | ≤ 1.5 |
//! | `fresh_token_<alg>` | `engine`: `decide` on a token the engine has not seen | `floor`: `RustCryptoVerifier::verify` of the same kind of signature + a cached decision as above | ≤ 1.2 |
//! | `tenant_scaling` | `10000`: cached decision as above in a bundle with 10,000 tenants | `10`: the same with 10 tenants | ≤ 1.3 |
//!
//! `cached_decision/remembered` is information: the same request again, answered by the token's
//! memo without Cedar.
//!
//! Each ratio is measured twice: as criterion's median over the floor's median, and as a
//! *paired* ratio (both sides in alternating short rounds, see `Paired`), which holds when
//! other work on the machine starts or stops between two criterion benchmarks. The paired
//! ratios go to `target/criterion/paired-ratios.json`.
//!
//! Run with `scripts/bench.sh` (writes `BENCHMARKS.md`) or
//! `cargo bench -p portcullis-engine --features mint --bench decide`. After criterion's own
//! output the binary prints the ratios. Environment: `BENCH_QUICK=1` shortens the paired
//! rounds (pass criterion's `--warm-up-time`/`--measurement-time` too), `BENCH_PAIRED=0`
//! skips them, `BENCH_BREAKDOWN=1` also times the steps of a decision.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema,
};
use criterion::{BatchSize, Criterion};
mod common;

use common::{NOW, Paired, cedar_files, criterion_dir, engine, median, mint, read, techfin, timed};
use portcullis_engine::{
    Bundle, CompiledBundle, DecisionRequest, Engine, EngineOptions, IssuerConfig, PolicySource,
    ResourceRef, RustCryptoVerifier, SignatureVerifier, TenantConfig, TokenStep,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;
/// Distinct reports a cached token's requests rotate over (more than its memo holds).
const REPORTS: usize = 64;

/// `REPORTS` requests of one token, one per report.
fn rotation(tenant: &str, token: &str) -> Vec<DecisionRequest> {
    (0..REPORTS)
        .map(|n| view_report_n(tenant, token.to_owned(), n))
        .collect()
}

/// The next of `requests`, round and round.
fn rotate<'a>(requests: &'a [DecisionRequest], at: &mut usize) -> &'a DecisionRequest {
    *at = (*at + 1) % requests.len();
    &requests[*at]
}

/// Distinct tokens minted per algorithm for the fresh-token benchmarks; each engine sees each
/// token once, then the benchmark moves on to a new engine (outside the timing).
const FRESH_POOL: usize = 256;
/// Tenant counts of the scaling benchmark.
const TENANT_COUNTS: [usize; 3] = [10, 1_000, 10_000];

/// A finance analyst of the acme tenant (Entra ID claims).
fn acme_analyst() -> Value {
    json!({
        "oid": "alice", "sub": "alice-pairwise", "tid": "acme",
        "roles": ["FinanceAnalyst"], "department": "finance", "preferred_username": "alice@acme.example",
    })
}

/// A request to view a finance report of `tenant`, with `token`.
fn view_report(tenant: &str, token: String) -> DecisionRequest {
    view_report_n(tenant, token, 3)
}

/// The same request for report `n`: a token's memo remembers its last 8 requests, so
/// rotating over [`REPORTS`] of them has every decision evaluated by Cedar.
fn view_report_n(tenant: &str, token: String, n: usize) -> DecisionRequest {
    let mut resource = ResourceRef::new("Report", format!("{tenant}-finance-q{n}"));
    resource.attrs.insert("tenant".into(), tenant.into());
    resource.attrs.insert("department".into(), "finance".into());
    DecisionRequest {
        token: Some(token),
        action: "view".into(),
        resource,
        context: Map::new(),
    }
}

fn assert_allowed(engine: &Engine, request: &DecisionRequest) {
    let decision = engine.decide(request, NOW);
    assert!(
        decision.is_allowed(),
        "benchmark request must be allowed: {decision:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Cached-token decision vs raw Cedar.

/// The same Cedar evaluation as the engine's, with everything built beforehand.
struct CedarFloor {
    request: Request,
    policies: PolicySet,
    entities: Entities,
}

impl CedarFloor {
    fn techfin_acme_analyst() -> Self {
        let (schema, _) =
            Schema::from_cedarschema_str(&read("schema.cedarschema").unwrap()).unwrap();
        // The shared policies (acme has none of its own), with their `@id`s as ids.
        let mut policies = PolicySet::new();
        for file in cedar_files("policies") {
            for policy in PolicySet::from_str(&read(&file).unwrap())
                .unwrap()
                .policies()
            {
                let id = policy.annotation("id").unwrap().to_owned();
                policies
                    .add(policy.clone().new_id(PolicyId::new(id)))
                    .unwrap();
            }
        }
        let uid = |text: &str| EntityUid::from_str(text).unwrap();
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let principal = Entity::new(
            uid(r#"User::"acme/alice""#),
            HashMap::from([
                ("tenant".to_owned(), string("acme")),
                ("department".to_owned(), string("finance")),
                ("email".to_owned(), string("alice@acme.example")),
            ]),
            HashSet::from([uid(r#"Role::"FinanceAnalyst""#)]),
        )
        .unwrap();
        let resource = Entity::new(
            uid(r#"Report::"acme-finance-q3""#),
            HashMap::from([
                ("tenant".to_owned(), string("acme")),
                ("department".to_owned(), string("finance")),
            ]),
            HashSet::new(),
        )
        .unwrap();
        let entities = Entities::from_entities([principal, resource], Some(&schema)).unwrap();
        let context = Context::from_pairs([
            ("mfa".to_owned(), RestrictedExpression::new_bool(false)),
            ("session_age".to_owned(), RestrictedExpression::new_long(60)),
            ("scopes".to_owned(), RestrictedExpression::new_set([])),
            ("token_type".to_owned(), string("user")),
        ])
        .unwrap();
        let request = Request::new(
            uid(r#"User::"acme/alice""#),
            uid(r#"Action::"view""#),
            uid(r#"Report::"acme-finance-q3""#),
            context,
            Some(&schema),
        )
        .unwrap();
        let floor = Self {
            request,
            policies,
            entities,
        };
        assert_eq!(floor.decide(), cedar_policy::Decision::Allow);
        floor
    }

    /// The same, with only the policies whose scope can match a `User` viewing a `Report`
    /// (the engine evaluates such a slice of the policy set): a stricter floor, for information.
    fn sliced(&self) -> Self {
        use cedar_policy::{ActionConstraint, PrincipalConstraint, ResourceConstraint};
        let ty = |name: &str| cedar_policy::EntityTypeName::from_str(name).unwrap();
        let (user, report) = (ty("User"), ty("Report"));
        let view = EntityUid::from_str(r#"Action::"view""#).unwrap();
        let mut policies = PolicySet::new();
        for policy in self.policies.policies() {
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => t == user,
                PrincipalConstraint::Eq(uid) => uid.type_name() == &user,
                PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
            };
            let action = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(uid) => uid == view,
                ActionConstraint::In(uids) => uids.contains(&view),
            };
            let resource = match policy.resource_constraint() {
                ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => t == report,
                ResourceConstraint::Eq(uid) => uid.type_name() == &report,
                ResourceConstraint::Any | ResourceConstraint::In(_) => true,
            };
            if principal && action && resource {
                policies.add(policy.clone()).unwrap();
            }
        }
        let floor = Self {
            request: self.request.clone(),
            policies,
            entities: self.entities.clone(),
        };
        assert_eq!(floor.decide(), cedar_policy::Decision::Allow);
        floor
    }

    fn decide(&self) -> cedar_policy::Decision {
        Authorizer::new()
            .is_authorized(&self.request, &self.policies, &self.entities)
            .decision()
    }
}

fn cached_decision(c: &mut Criterion, paired: &mut Paired) {
    let compiled = techfin();
    let engine = engine(compiled.clone());
    let request = view_report("acme", mint(&compiled, "acme", &acme_analyst(), "cached"));
    assert_allowed(&engine, &request);
    assert_eq!(engine.cached_tokens(), 1);
    let requests = rotation("acme", request.token.as_deref().unwrap());
    for request in &requests {
        assert_allowed(&engine, request);
    }
    let floor = CedarFloor::techfin_acme_analyst();
    let sliced = floor.sliced();

    let mut group = c.benchmark_group("cached_decision");
    let mut at = 0;
    group.bench_function("engine", |b| {
        b.iter(|| engine.decide(black_box(rotate(&requests, &mut at)), NOW))
    });
    group.bench_function("remembered", |b| {
        b.iter(|| engine.decide(black_box(&request), NOW))
    });
    group.bench_function("cedar_floor", |b| b.iter(|| black_box(&floor).decide()));
    group.bench_function("cedar_floor_sliced", |b| {
        b.iter(|| black_box(&sliced).decide())
    });
    group.finish();
    paired.measure(
        "cached_decision",
        || timed(|| engine.decide(black_box(rotate(&requests, &mut at)), NOW)),
        || timed(|| black_box(&floor).decide()),
    );
    paired.measure(
        "cached_decision_remembered",
        || timed(|| engine.decide(black_box(&request), NOW)),
        || timed(|| black_box(&floor).decide()),
    );
    let mut sliced_at = 0;
    paired.measure(
        "cached_decision_sliced",
        || timed(|| engine.decide(black_box(rotate(&requests, &mut sliced_at)), NOW)),
        || timed(|| black_box(&sliced).decide()),
    );
}

// ---------------------------------------------------------------------------------------------
// 2. First decision on a fresh token vs signature verification + cached decision.

fn fresh_token(c: &mut Criterion, paired: &mut Paired) {
    let compiled = techfin();
    let bundle = Arc::new(Bundle::load(compiled.clone()).unwrap());
    let cases = [
        ("rs256", "acme", acme_analyst()),
        (
            "es256",
            "globex",
            json!({"sub": "bob", "techfin_roles": ["FinanceAnalyst"], "department": "finance", "email": "bob@globex.example"}),
        ),
        (
            "eddsa",
            "umbrella",
            json!({"sub": "carol", "roles": ["FinanceAnalyst"], "department": "finance"}),
        ),
    ];
    for (name, tenant, claims) in cases {
        let requests: Vec<DecisionRequest> = (0..FRESH_POOL)
            .map(|i| {
                view_report(
                    tenant,
                    mint(&compiled, tenant, &claims, &format!("fresh-{i}")),
                )
            })
            .collect();
        let new_engine = || {
            Arc::new(Engine::with_options(
                Arc::clone(&bundle),
                EngineOptions::default(),
            ))
        };

        // The floor's parts: one signature check of this algorithm, one cached-token decision
        // that Cedar evaluates (rotating over reports, so that the token's memo never answers).
        let cached = new_engine();
        let cached_requests = rotation(tenant, &mint(&compiled, tenant, &claims, "cached"));
        for request in &cached_requests {
            assert_allowed(&cached, request);
        }
        let mut cached_at = 0;
        let TokenStep::NeedsSignature(pending) = new_engine()
            .begin_token(requests[0].token.as_deref().unwrap(), NOW)
            .unwrap()
        else {
            panic!("a fresh engine has no cached token");
        };
        let verifier = RustCryptoVerifier;
        assert!(
            verifier
                .verify(
                    pending.algorithm,
                    &pending.key,
                    &pending.signing_input,
                    &pending.signature
                )
                .unwrap()
        );
        assert_allowed(&new_engine(), &requests[0]);

        let mut group = c.benchmark_group(format!("fresh_token_{name}"));
        let mut current = new_engine();
        let mut next = 0;
        group.bench_function("engine", |b| {
            b.iter_batched(
                || {
                    // Each engine sees each token once: a new engine per round of the pool.
                    if next == FRESH_POOL {
                        current = new_engine();
                        next = 0;
                    }
                    next += 1;
                    (Arc::clone(&current), next - 1)
                },
                // The engine is returned so that dropping it is not timed.
                |(engine, i)| (engine.decide(&requests[i], NOW), engine),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("floor", |b| {
            b.iter(|| {
                let ok = verifier.verify(
                    pending.algorithm,
                    &pending.key,
                    black_box(&pending.signing_input),
                    black_box(&pending.signature),
                );
                let request = rotate(&cached_requests, &mut cached_at);
                (ok, cached.decide(black_box(request), NOW))
            });
        });
        group.bench_function("verify", |b| {
            b.iter(|| {
                verifier.verify(
                    pending.algorithm,
                    &pending.key,
                    black_box(&pending.signing_input),
                    black_box(&pending.signature),
                )
            });
        });
        if breakdown() {
            // The fresh-token path without the signature check, in its two halves.
            let engine = new_engine();
            let token = requests[0].token.as_deref().unwrap();
            group.bench_function("begin_token", |b| {
                b.iter(|| engine.begin_token(black_box(token), NOW).unwrap())
            });
            let mut current = new_engine();
            let mut next = 0;
            group.bench_function("finish_token", |b| {
                b.iter_batched(
                    || {
                        if next == FRESH_POOL {
                            current = new_engine();
                            next = 0;
                        }
                        next += 1;
                        let token = requests[next - 1].token.as_deref().unwrap();
                        let Ok(TokenStep::NeedsSignature(pending)) =
                            current.begin_token(token, NOW)
                        else {
                            panic!("not seen by this engine");
                        };
                        (Arc::clone(&current), pending)
                    },
                    |(engine, pending)| (engine.finish_token(*pending, true, NOW), engine),
                    BatchSize::SmallInput,
                );
            });
        }
        group.finish();

        let mut current = new_engine();
        let mut next = 0;
        paired.measure(
            &format!("fresh_token_{name}"),
            || {
                if next == FRESH_POOL {
                    current = new_engine();
                    next = 0;
                }
                next += 1;
                timed(|| current.decide(&requests[next - 1], NOW))
            },
            || {
                timed(|| {
                    let ok = verifier.verify(
                        pending.algorithm,
                        &pending.key,
                        black_box(&pending.signing_input),
                        black_box(&pending.signature),
                    );
                    let request = rotate(&cached_requests, &mut cached_at);
                    (ok, cached.decide(black_box(request), NOW))
                })
            },
        );
    }
}

/// Whether to run the breakdown benchmarks too (`BENCH_BREAKDOWN=1`).
fn breakdown() -> bool {
    std::env::var_os("BENCH_BREAKDOWN").is_some_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------------
// 3. Tenant scaling.

/// The TechFin schema and shared policies with `n` generated tenants `t00000`, ..., each with
/// its own issuer (the acme development key) and one policy of its own.
fn scaled_bundle(n: usize) -> CompiledBundle {
    let base = techfin();
    let acme = &base.tenants["acme"].issuers[0];
    let mut policies: Vec<PolicySource> = base
        .policies
        .iter()
        .filter(|p| p.tenant.is_none())
        .cloned()
        .collect();
    let mut compiled = CompiledBundle::new(base.settings.clone(), base.schema.clone(), Vec::new());
    for i in 0..n {
        let tenant = format!("t{i:05}");
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
            tenant: Some(tenant.clone()),
            source: format!(
                "@id(\"{tenant}-controllers\")\npermit (principal is User in Role::\"Controller\", \
                 action in [Action::\"view\", Action::\"export\"], resource is Report)\n\
                 when {{ resource.tenant == \"{tenant}\" && principal.tenant == \"{tenant}\" }};\n"
            ),
        });
    }
    compiled.policies = policies;
    compiled.seal()
}

fn tenant_scaling(c: &mut Criterion, paired: &mut Paired) {
    // Cached-token decisions that Cedar evaluates (rotating over reports).
    let cases: Vec<(usize, Engine, Vec<DecisionRequest>)> = TENANT_COUNTS
        .into_iter()
        .map(|n| {
            let compiled = scaled_bundle(n);
            let engine = engine(compiled.clone());
            let token = mint(&compiled, "t00000", &acme_analyst(), "scaling");
            let requests = rotation("t00000", &token);
            for request in &requests {
                assert_allowed(&engine, request);
            }
            (n, engine, requests)
        })
        .collect();
    let mut group = c.benchmark_group("tenant_scaling");
    for (n, engine, requests) in &cases {
        let mut at = 0;
        group.bench_function(n.to_string(), |b| {
            b.iter(|| engine.decide(black_box(rotate(requests, &mut at)), NOW))
        });
    }
    group.finish();
    let ((_, small, small_requests), (_, large, large_requests)) =
        (&cases[0], &cases[cases.len() - 1]);
    let (mut small_at, mut large_at) = (0, 0);
    paired.measure(
        "tenant_scaling",
        || timed(|| large.decide(black_box(rotate(large_requests, &mut large_at)), NOW)),
        || timed(|| small.decide(black_box(rotate(small_requests, &mut small_at)), NOW)),
    );
}

// ---------------------------------------------------------------------------------------------
// Where a cached decision's time goes (only with `BENCH_BREAKDOWN=1`): the steps the engine
// takes, rebuilt from the public APIs, next to the floor they add to.

fn cached_breakdown(c: &mut Criterion) {
    let compiled = techfin();
    let engine = engine(compiled.clone());
    let request = view_report("acme", mint(&compiled, "acme", &acme_analyst(), "cached"));
    let token = request.token.clone().unwrap();
    assert_allowed(&engine, &request);
    let (schema, _) = Schema::from_cedarschema_str(&read("schema.cedarschema").unwrap()).unwrap();
    let floor = CedarFloor::techfin_acme_analyst();
    let principal_uid = EntityUid::from_str(r#"User::"acme/alice""#).unwrap();
    let principal = floor.entities.get(&principal_uid).unwrap().clone();
    let resource_uid = EntityUid::from_str(r#"Report::"acme-finance-q3""#).unwrap();
    let action_uid = EntityUid::from_str(r#"Action::"view""#).unwrap();
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let resource_entity = || {
        Entity::new(
            resource_uid.clone(),
            HashMap::from([
                ("tenant".to_owned(), string("acme")),
                ("department".to_owned(), string("finance")),
            ]),
            HashSet::new(),
        )
        .unwrap()
    };
    let context_pairs = || {
        vec![
            ("mfa".to_owned(), RestrictedExpression::new_bool(false)),
            ("session_age".to_owned(), RestrictedExpression::new_long(60)),
            ("scopes".to_owned(), RestrictedExpression::new_set([])),
            ("token_type".to_owned(), string("user")),
        ]
    };
    let mut cache: HashMap<Box<str>, u64> = HashMap::new();
    cache.insert(token.as_str().into(), 1);

    let mut group = c.benchmark_group("cached_breakdown");
    group.bench_function("engine_decide", |b| {
        b.iter(|| engine.decide(black_box(&request), NOW))
    });
    group.bench_function("engine_authenticate", |b| {
        b.iter(|| engine.authenticate(black_box(&token), NOW))
    });
    let anonymous = DecisionRequest {
        token: None,
        ..request.clone()
    };
    group.bench_function("engine_decide_no_token", |b| {
        b.iter(|| engine.decide(black_box(&anonymous), NOW))
    });
    group.bench_function("token_hash_lookup", |b| {
        b.iter(|| cache.get(black_box(token.as_str())).copied())
    });
    group.bench_function("parse_type_names", |b| {
        b.iter(|| {
            let action = cedar_policy::EntityTypeName::from_str(black_box("Action")).unwrap();
            let resource = cedar_policy::EntityTypeName::from_str(black_box("Report")).unwrap();
            (action, resource)
        });
    });
    group.bench_function("build_entities", |b| {
        b.iter(|| (principal.clone(), resource_entity()))
    });
    group.bench_function("entities_with_schema", |b| {
        b.iter(|| {
            Entities::from_entities([principal.clone(), resource_entity()], Some(&schema)).unwrap()
        });
    });
    group.bench_function("entities_without_schema", |b| {
        b.iter(|| Entities::from_entities([principal.clone(), resource_entity()], None).unwrap());
    });
    // What a per-token prebuilt store (principal + the schema's actions) would cost per request.
    let prebuilt = Entities::from_entities([principal.clone()], Some(&schema)).unwrap();
    group.bench_function("prebuilt_entities_add_resource", |b| {
        b.iter(|| {
            prebuilt
                .clone()
                .add_entities([resource_entity()], Some(&schema))
                .unwrap()
        });
    });
    group.bench_function("request_with_schema", |b| {
        b.iter(|| {
            let context = Context::from_pairs(context_pairs()).unwrap();
            Request::new(
                principal_uid.clone(),
                action_uid.clone(),
                resource_uid.clone(),
                context,
                Some(&schema),
            )
            .unwrap()
        });
    });
    group.bench_function("request_without_schema", |b| {
        b.iter(|| {
            let context = Context::from_pairs(context_pairs()).unwrap();
            Request::new(
                principal_uid.clone(),
                action_uid.clone(),
                resource_uid.clone(),
                context,
                None,
            )
            .unwrap()
        });
    });
    group.bench_function("is_authorized", |b| b.iter(|| black_box(&floor).decide()));
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Ratios, from the estimates criterion wrote during this run.

/// (what, measured, floor, target): benchmark ids as `group/function`; the group is also
/// the name of the paired ratio.
const RATIOS: [(&str, &str, &str, f64); 5] = [
    (
        "cached decision / raw Cedar",
        "cached_decision/engine",
        "cached_decision/cedar_floor",
        1.5,
    ),
    (
        "fresh RS256 / (verify + cached)",
        "fresh_token_rs256/engine",
        "fresh_token_rs256/floor",
        1.2,
    ),
    (
        "fresh ES256 / (verify + cached)",
        "fresh_token_es256/engine",
        "fresh_token_es256/floor",
        1.2,
    ),
    (
        "fresh EdDSA / (verify + cached)",
        "fresh_token_eddsa/engine",
        "fresh_token_eddsa/floor",
        1.2,
    ),
    (
        "10,000 tenants / 10 tenants",
        "tenant_scaling/10000",
        "tenant_scaling/10",
        1.3,
    ),
];

fn print_ratios(dir: &Path, since: SystemTime, paired: &Paired) {
    println!("\nratios to the floor measured in this run (criterion medians | paired rounds):");
    for (what, measured, floor, target) in RATIOS {
        let group = measured.split('/').next().unwrap_or(measured);
        let pair = paired
            .results
            .iter()
            .find(|r| r.name == group)
            .map(|r| r.median);
        if let (Some(m), Some(f)) = (median(dir, measured, since), median(dir, floor, since)) {
            let ratio = m / f;
            let pair = pair.map_or_else(|| "-".to_owned(), |p| format!("{p:.2}"));
            println!(
                "  {what:<34} {m:>10.0} ns / {f:>10.0} ns = {ratio:>5.2} | {pair:>5}  (target <= {target})"
            );
        }
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let mut paired = Paired::from_env();
    cached_decision(&mut c, &mut paired);
    fresh_token(&mut c, &mut paired);
    tenant_scaling(&mut c, &mut paired);
    if breakdown() {
        cached_breakdown(&mut c);
    }
    c.final_summary();
    if let Some(dir) = criterion_dir() {
        paired.write(&dir, "paired-ratios.json");
        print_ratios(&dir, started, &paired);
    }
}
