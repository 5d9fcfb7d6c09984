use super::*;
use serde_json::json;

const SCHEMA: &str = r#"
entity Role;
entity User in [Role] { tenant: String, department?: String };
entity Report { tenant: String };
action view appliesTo { principal: [User], resource: Report };
"#;

fn policy(file: &str, source: &str) -> PolicySource {
    PolicySource {
        file: file.into(),
        tenant: None,
        source: source.into(),
    }
}

fn rsa_jwks() -> serde_json::Value {
    let text = include_str!("../../../policies/techfin/dev-keys/acme-rs256.jwks.json");
    serde_json::from_str(text).unwrap()
}

fn issuer(url: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: url.into(),
        audiences: vec!["api".into()],
        algorithms: vec!["RS256".into()],
        jwks: Some(rsa_jwks()),
        ..Default::default()
    }
}

fn bundle(policies: Vec<PolicySource>, tenants: &[(&str, Vec<IssuerConfig>)]) -> CompiledBundle {
    let mut compiled = CompiledBundle::new(Settings::default(), Some(SCHEMA.into()), policies);
    for (name, issuers) in tenants {
        compiled.tenants.insert(
            (*name).into(),
            TenantConfig {
                display_name: None,
                issuers: issuers.clone(),
            },
        );
    }
    compiled
}

fn problems(compiled: CompiledBundle) -> Vec<BundleProblem> {
    Bundle::load(compiled)
        .expect_err("bundle should be rejected")
        .problems
}

const GOOD: &str = "@id(\"view\")\npermit(principal, action == Action::\"view\", resource);\n";

#[test]
fn good_bundle_loads_with_stable_revision() {
    let a = Bundle::load(bundle(
        vec![policy("p.cedar", GOOD)],
        &[("acme", vec![issuer("https://a")])],
    ))
    .unwrap();
    let b = Bundle::load(bundle(
        vec![policy("p.cedar", GOOD)],
        &[("acme", vec![issuer("https://a")])],
    ))
    .unwrap();
    assert_eq!(a.revision(), b.revision());
    assert_eq!(a.revision().len(), 32);
    let c = Bundle::load(bundle(
        vec![policy("p.cedar", &GOOD.replace("view\")", "see\")"))],
        &[],
    ))
    .unwrap();
    assert_ne!(a.revision(), c.revision(), "revision follows content");
    let json = a.compiled().to_json();
    assert_eq!(
        Bundle::from_json(&json).unwrap().revision(),
        a.revision(),
        "round trip keeps the revision"
    );
}

#[test]
fn edited_compiled_bundle_is_refused() {
    let good = Bundle::load(bundle(vec![policy("p.cedar", GOOD)], &[])).unwrap();
    let mut edited = good.compiled().clone();
    edited.policies[0].source = edited.policies[0].source.replace("permit", "forbid");
    assert_eq!(problems(edited)[0].code, "revision");
}

#[test]
fn syntax_error_has_file_line_and_column() {
    let src = "@id(\"a\")\npermit(principal, action, resource);\n\n@id(\"b\")\npermit(principal, action, resource) when { 1 + };\n";
    let p = problems(bundle(vec![policy("policies/x.cedar", src)], &[]));
    assert_eq!(p[0].code, "policy_parse");
    let loc = p[0].location.clone().unwrap();
    assert_eq!(loc.file, "policies/x.cedar");
    assert_eq!(loc.line, Some(5), "{:?}", p);
}

#[test]
fn missing_and_duplicate_ids_are_located() {
    let src = "@id(\"a\")\npermit(principal, action, resource);\npermit(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);\n";
    let p = problems(bundle(vec![policy("p.cedar", src)], &[]));
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        (p[0].code, p[0].location.as_ref().unwrap().line),
        ("policy_id", Some(3))
    );
    assert_eq!(
        (p[1].code, p[1].location.as_ref().unwrap().line),
        ("policy_id", Some(4))
    );
    assert!(p[1].message.contains("duplicate"));
}

#[test]
fn schema_violations_are_located_in_their_file() {
    let src = "@id(\"ok\")\npermit(principal, action, resource);\n@id(\"bad\")\npermit(principal, action, resource) when { principal.salary > 5 };\n";
    let p = problems(bundle(
        vec![policy("a.cedar", GOOD), policy("b.cedar", src)],
        &[],
    ));
    assert_eq!(p[0].code, "policy_validation");
    assert!(p[0].message.contains("`bad`"), "{}", p[0]);
    assert_eq!(p[0].location.as_ref().unwrap().file, "b.cedar");
    assert_eq!(p[0].location.as_ref().unwrap().line, Some(4));
}

#[test]
fn bad_schema_is_reported() {
    let mut compiled = bundle(vec![policy("p.cedar", GOOD)], &[]);
    compiled.schema = Some("entity User in [Nope] {".into());
    assert_eq!(problems(compiled)[0].code, "schema");
}

#[test]
fn shared_issuer_needs_distinguishing_match() {
    let p = problems(bundle(
        vec![],
        &[
            ("a", vec![issuer("https://shared")]),
            ("b", vec![issuer("https://shared")]),
        ],
    ));
    assert!(
        p[0].message.contains("shared by tenants `a` and `b`"),
        "{}",
        p[0]
    );
    let mut x = issuer("https://shared");
    x.match_claims.insert("org_id".into(), "x".into());
    let mut y = issuer("https://shared");
    y.match_claims.insert("org_id".into(), "y".into());
    Bundle::load(bundle(vec![], &[("a", vec![x]), ("b", vec![y])])).unwrap();
}

#[test]
fn a_shared_issuer_has_one_key_source() {
    // Two tenants' entries of one issuer naming different HMAC secrets: the host holds keys per
    // issuer, so one tenant's secret would verify the other's tokens. Refused.
    let hmac = |org: &str, secret: &str| {
        let mut entry = IssuerConfig {
            issuer: "https://shared".into(),
            audiences: vec!["api".into()],
            algorithms: vec!["HS256".into()],
            secret: Some(SecretRef {
                name: secret.into(),
                kid: None,
            }),
            ..Default::default()
        };
        entry.match_claims.insert("org_id".into(), org.into());
        entry
    };
    let p = problems(bundle(
        vec![],
        &[
            ("a", vec![hmac("x", "a-secret")]),
            ("b", vec![hmac("y", "b-secret")]),
        ],
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].message.contains("with different keys"), "{}", p[0]);
    // Remote keys too: one URL per issuer.
    let remote = |org: &str, url: &str| {
        let mut entry = IssuerConfig {
            jwks: None,
            jwks_uri: Some(url.into()),
            ..issuer("https://shared")
        };
        entry.match_claims.insert("org_id".into(), org.into());
        entry
    };
    let p = problems(bundle(
        vec![],
        &[
            ("a", vec![remote("x", "https://idp/a.json")]),
            ("b", vec![remote("y", "https://idp/b.json")]),
        ],
    ));
    assert!(p[0].message.contains("with different keys"), "{}", p[0]);
    // The same source is fine.
    Bundle::load(bundle(
        vec![],
        &[("a", vec![hmac("x", "one")]), ("b", vec![hmac("y", "one")])],
    ))
    .unwrap();
}

#[test]
fn issuer_listed_twice_for_one_tenant() {
    let p = problems(bundle(
        vec![],
        &[("a", vec![issuer("https://i"), issuer("https://i")])],
    ));
    assert!(p[0].message.contains("twice"), "{}", p[0]);
}

#[test]
fn issuer_configuration_errors() {
    let mut no_keys = issuer("https://a");
    no_keys.jwks = None;
    let mut two_sources = issuer("https://b");
    two_sources.jwks_uri = Some("https://b/keys".into());
    let mut mixed = issuer("https://c");
    mixed.algorithms = vec!["RS256".into(), "HS256".into()];
    let mut none_alg = issuer("https://d");
    none_alg.algorithms = vec!["none".into()];
    let mut no_aud = issuer("https://e");
    no_aud.audiences.clear();
    let mut http = issuer("https://f");
    http.jwks = None;
    http.discovery = Some("http://idp.example/.well-known/openid-configuration".into());
    let mut unknown_attr = issuer("https://g");
    unknown_attr
        .claims
        .attributes
        .insert("salary".into(), "salary".into());
    let mut skew = issuer("https://h");
    skew.clock_skew = Some(3600);
    let cases = [
        (no_keys, "exactly one of"),
        (two_sources, "exactly one of"),
        (mixed, "mixes HMAC"),
        (none_alg, "unsupported algorithm `none`"),
        (no_aud, "audiences"),
        (http, "not https"),
        (unknown_attr, "unknown claim mapping"),
        (skew, "clock skew"),
    ];
    for (config, expected) in cases {
        let p = problems(bundle(vec![], &[("t", vec![config])]));
        assert!(
            p.iter().any(|p| p.message.contains(expected)),
            "expected `{expected}` in {p:?}"
        );
    }
}

#[test]
fn unknown_fields_and_presets_are_json_errors_with_lines() {
    let sources = BundleSources {
        policies: vec![policy("policies/p.cedar", GOOD)],
        tenants: Some((
            "tenants.json".into(),
            "{\"tenants\": {\"a\": {\"issuers\": [{\n\"issuer\": \"https://a\", \"audiences\": [\"x\"], \"algorithms\": [\"RS256\"],\n\"claims\": {\"preset\": \"facebook\"}}]}}}".into(),
        )),
        ..Default::default()
    };
    let err = sources
        .compile(&mut |_| Err("no files".into()))
        .unwrap_err();
    assert_eq!(err.problems[0].code, "json");
    assert_eq!(err.problems[0].location.as_ref().unwrap().line, Some(3));
    assert!(err.problems[0].message.contains("facebook"));
}

#[test]
fn jwks_file_is_inlined_and_private_keys_refused() {
    let tenants = json!({"tenants": {"a": {"issuers": [{"issuer": "https://a", "audiences": ["x"], "algorithms": ["RS256"], "jwks_file": "keys.json"}]}}});
    let sources = BundleSources {
        schema: Some(("schema.cedarschema".into(), SCHEMA.into())),
        policies: vec![policy("policies/p.cedar", GOOD)],
        tenants: Some(("tenants.json".into(), tenants.to_string())),
        ..Default::default()
    };
    let compiled = sources.clone().compile(&mut |path| {
        assert_eq!(path, "keys.json");
        Ok(rsa_jwks().to_string())
    });
    let compiled = compiled.unwrap();
    assert!(compiled.tenants["a"].issuers[0].jwks.is_some());
    assert!(compiled.tenants["a"].issuers[0].jwks_file.is_none());
    let err = sources
        .compile(&mut |_| {
            let mut jwks = rsa_jwks();
            jwks["keys"][0]["d"] = json!("AQAB");
            Ok(jwks.to_string())
        })
        .unwrap_err();
    assert!(err.to_string().contains("private key material"), "{err}");
}

#[test]
fn tenant_policies_stay_in_their_tenant() {
    let mut own = policy(
        "policies/tenants/b/x.cedar",
        "@id(\"b-only\")\npermit(principal, action, resource);",
    );
    own.tenant = Some("b".into());
    let loaded = Bundle::load(bundle(
        vec![policy("p.cedar", GOOD), own.clone()],
        &[
            ("a", vec![issuer("https://a")]),
            ("b", vec![issuer("https://b")]),
        ],
    ))
    .unwrap();
    assert_eq!(loaded.tenant_set(Some("a")).policies().count(), 1);
    assert_eq!(loaded.tenant_set(Some("b")).policies().count(), 2);
    assert_eq!(loaded.policy_count(), 2);
    own.tenant = Some("nope".into());
    let p = problems(bundle(vec![own], &[]));
    assert!(p[0].message.contains("unknown tenant"));
}

/// Sources with `routes.json`, compiled as a directory would be.
fn compile_routes(routes: &str) -> Result<CompiledBundle, BundleError> {
    BundleSources {
        schema: Some(("schema.cedarschema".into(), SCHEMA.into())),
        policies: vec![policy("policies/p.cedar", GOOD)],
        routes: Some(("routes.json".into(), routes.into())),
        ..Default::default()
    }
    .compile(&mut |_| Err("no files".into()))
}

#[test]
fn routes_are_checked_against_the_schema_with_locations() {
    let good = r#"{"routes": [
  {"methods": ["GET"], "path": "/tenants/{tenant}/reports/{id}", "action": "view",
   "resource": {"type": "Report", "id": "{tenant}/{id}", "attrs": {"tenant": "{tenant}"}}}
]}"#;
    let compiled = compile_routes(good).unwrap();
    assert_eq!(compiled.routes.len(), 1);
    assert_eq!(Bundle::load(compiled).unwrap().route_count(), 1);

    let bad = r#"{"routes": [
  {"path": "/r/{id}", "action": "veiw",
   "resource": {"type": "Report", "id": "{id}", "attrs": {"tenant": "x"}}},
  {"path": "/u/{id}", "action": "view",
   "resource": {"type": "Reprot", "id": "{id}"}},
  {"path": "/r/{id}", "action": "view",
   "resource": {"type": "Report", "id": "{id}", "attrs": {"tenant": "t", "departement": "{id}"}}},
  {"path": "/r/{id}", "action": "view",
   "resource": {"type": "Report", "id": "{id}"}},
  {"path": "/r/{id}", "action": "view", "context": {"mfa": "yes"},
   "resource": {"type": "Report", "id": "{idd}"}}
]}"#;
    let problems = compile_routes(bad).unwrap_err().problems;
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = [
        "routes.json:2:33: route 0 (`/r/{id}`): unknown action `veiw` (help: did you mean `view`?)",
        "routes.json:5:25: route 1 (`/u/{id}`): unknown entity type `Reprot` (help: did you mean `Report`?)",
        "routes.json:7:89: route 2 (`/r/{id}`): `Report` declares no attribute `departement`",
        "routes.json:9:16: route 3 (`/r/{id}`): `Report` requires `tenant` and the route gives no value for it",
        "routes.json:11:41: route 4 (`/r/{id}`): `{idd}` is not a parameter of the path",
    ];
    assert_eq!(text.len(), expect.len(), "{text:#?}");
    for (got, want) in text.iter().zip(expect) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
    // The compiled form names the route's field when there is no file to point into.
    let mut compiled = compile_routes(good).unwrap();
    compiled.routes[0].action = "delete".into();
    let problems = Bundle::load(compiled.seal()).unwrap_err().problems;
    assert_eq!(
        problems[0].location.as_ref().unwrap().file,
        "routes: routes[0].action"
    );
}

/// Sources with `tenants.json` (and a tenant policy directory for `acme`), compiled as a
/// directory would be; `files` answers `jwks_file` reads.
fn compile_tenants(
    tenants: &str,
    schema: &str,
    files: &[(&str, String)],
) -> Result<CompiledBundle, BundleError> {
    let mut own = policy(
        "policies/tenants/acme/p.cedar",
        "@id(\"acme-view\")\npermit(principal, action == Action::\"view\", resource);\n",
    );
    own.tenant = Some("acme".into());
    BundleSources {
        schema: Some(("schema.cedarschema".into(), schema.into())),
        policies: vec![policy("policies/p.cedar", GOOD), own],
        tenants: Some(("tenants.json".into(), tenants.into())),
        ..Default::default()
    }
    .compile(&mut |path| {
        files
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, text)| text.clone())
            .ok_or_else(|| "no such file".to_owned())
    })
}

fn texts(err: BundleError) -> Vec<String> {
    err.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn problems_in_tenants_json_point_at_their_line_and_only_at_the_problem() {
    let jwks = rsa_jwks().to_string();
    // A shape error stops there: no false "policies for unknown tenant" after it, and the
    // location is said once.
    let shape = r#"{"tenants": {"acme": {"issuers": [
  {"issuer": "https://a", "audience": ["api"], "algorithms": ["RS256"], "jwks_file": "k.json"}
]}}}"#;
    let got = texts(compile_tenants(shape, SCHEMA, &[]).unwrap_err());
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("tenants.json:2:36: unknown field `audience`"),
        "{got:#?}"
    );
    assert!(!got[0].contains(" at line "), "{got:#?}");

    // A problem found after parsing is at its field: one error for one bad algorithm.
    let algorithm = r#"{"tenants": {"acme": {"issuers": [
  {"issuer": "https://a", "audiences": ["api"],
   "algorithms": ["RS265"], "jwks_file": "k.json"}
]}}}"#;
    let got = texts(compile_tenants(algorithm, SCHEMA, &[("k.json", jwks.clone())]).unwrap_err());
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(
            "tenants.json:3:19: tenant `acme` issuer 0 (`https://a`): unsupported algorithm `RS265`"
        ),
        "{got:#?}"
    );

    // A private key in a JWK set file is reported against that file.
    let mut private = rsa_jwks();
    private["keys"][0]["d"] = json!("AAAA");
    let good = r#"{"tenants": {"acme": {"issuers": [
  {"issuer": "https://a", "audiences": ["api"], "algorithms": ["RS256"], "jwks_file": "k.json"}
]}}}"#;
    let got = texts(compile_tenants(good, SCHEMA, &[("k.json", private.to_string())]).unwrap_err());
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("k.json: tenant `acme`"), "{got:#?}");
    assert!(got[0].contains("private key material"), "{got:#?}");
    compile_tenants(good, SCHEMA, &[("k.json", jwks)]).unwrap();
}

#[test]
fn an_unresolved_schema_type_has_a_line_and_a_suggestion() {
    let schema = SCHEMA.replace("tenant: String, department", "tenant: Strng, department");
    let got = texts(
        compile_tenants(r#"{"tenants": {"acme": {"issuers": []}}}"#, &schema, &[]).unwrap_err(),
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(
            "schema.cedarschema:3:33: failed to resolve type: Strng (help: did you mean `String`?)"
        ),
        "{got:#?}"
    );
}
