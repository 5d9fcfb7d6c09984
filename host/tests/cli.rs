//! The CLI as a policy author meets it: errors that point at the problem (file, line, column)
//! and only at it, and the development-token tools.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::copy_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn techfin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin")
}

/// A scratch copy of the TechFin pack.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&techfin(), &dir);
    dir
}

/// Run `portcullis ARGS`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "`{from}` not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_bad_tenants_json_is_one_error_at_its_position() {
    let dir = scratch("tenants");
    let pack = dir.to_str().unwrap();
    // A field name typo: one error, located once; no "policies for unknown tenant" after it.
    edit(&dir.join("tenants.json"), "\"audiences\"", "\"audience\"");
    let (code, _, stderr) = run(&["validate", pack]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tenants.json:"), "{stderr}");
    assert!(stderr.contains("unknown field `audience`"), "{stderr}");
    assert!(!stderr.contains("unknown tenant"), "{stderr}");
    assert!(!stderr.contains(" at line "), "{stderr}");
    assert_eq!(stderr.matches("tenants.json:").count(), 1, "{stderr}");
    edit(&dir.join("tenants.json"), "\"audience\"", "\"audiences\"");

    // An unsupported algorithm: at its line and column, and nothing else.
    edit(&dir.join("tenants.json"), "\"RS256\"", "\"RS265\"");
    let (code, _, stderr) = run(&["validate", pack]);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let text = std::fs::read_to_string(dir.join("tenants.json")).unwrap();
    let before = &text[..text.find("\"RS265\"").unwrap()];
    let (line, column) = (
        before.matches('\n').count() + 1,
        before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1,
    );
    assert!(
        stderr.contains(&format!("tenants.json:{line}:{column}: tenant `")),
        "{stderr}"
    );
    assert!(stderr.contains("unsupported algorithm `RS265`"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_policy_directory_the_compiler_does_not_read_is_refused() {
    let dir = scratch("subdir");
    std::fs::create_dir_all(dir.join("policies/shared")).unwrap();
    std::fs::write(
        dir.join("policies/shared/deny.cedar"),
        "@id(\"x\") forbid(principal, action, resource);\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["validate", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`policies/shared/` is not read"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_tests_refuse_an_unknown_expectation_when_read() {
    let dir = scratch("expect");
    let tests = dir.join("tests");
    let file = std::fs::read_dir(&tests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("\"expect\": \"allow\"")
        })
        .unwrap();
    edit(&file, "\"expect\": \"allow\"", "\"expect\": \"denied\"");
    let (code, stdout, stderr) = run(&["test", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(&format!("{name}:")), "{stderr}");
    assert!(
        stderr.contains(
            "unknown variant `denied`, expected one of `allow`, `deny`, `unauthenticated`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(" at line "), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn development_tokens_say_what_is_wrong() {
    let pack = techfin();
    let pack = pack.to_str().unwrap();
    // A compiled bundle instead of the pack.
    let compiled = std::env::temp_dir().join(format!("portcullis-cli-{}.json", std::process::id()));
    let (code, _, stderr) = run(&["bundle", pack, "-o", compiled.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&[
        "token",
        "--bundle",
        compiled.to_str().unwrap(),
        "--tenant",
        "acme",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    std::fs::remove_file(&compiled).unwrap();
    // An unknown tenant lists the tenants.
    let (code, _, stderr) = run(&["token", "--bundle", pack, "--tenant", "acne"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown tenant `acne`"), "{stderr}");
    assert!(stderr.contains("acme, globex"), "{stderr}");
    // A negative lifetime (past the clock skew allowed): a token that has already expired,
    // which `check` refuses as such.
    let claims = r#"{"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance"}"#;
    let (code, token, stderr) = run(&[
        "token", "--bundle", pack, "--tenant", "acme", "--claims", claims, "--ttl", "-3600",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, decision, _) = run(&[
        "check",
        "--bundle",
        pack,
        "--token",
        token.trim(),
        "--action",
        "view",
        "--resource",
        "Report::\"q3\"",
        "--resource-attrs",
        r#"{"tenant": "acme", "department": "finance"}"#,
    ]);
    assert_eq!(code, 1, "{decision}");
    let decision: serde_json::Value = serde_json::from_str(&decision).unwrap();
    assert_eq!(decision["decision"], "unauthenticated");
    assert_eq!(decision["errors"][0]["code"], "token_expired", "{decision}");
}

#[test]
fn bundle_keygen_appends_to_a_dotted_prefix() {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("signing.v2");
    let (code, _, stderr) = run(&["bundle-keygen", "-o", prefix.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.join("signing.v2.pem").is_file());
    assert!(dir.join("signing.v2.jwks.json").is_file());
    assert!(!dir.join("signing.pem").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_writes_a_pack_that_passes_and_keygen_keeps_it_testable_with_production_keys() {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pack = dir.to_str().unwrap();
    let (code, stdout, stderr) = run(&["init", pack, "--tenant", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("dev-keys/acme-rs256.pem"), "{stdout}");
    // A second init refuses to write over it.
    let (code, _, stderr) = run(&["init", pack]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let (code, _, stderr) = run(&["validate", pack]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = run(&["test", pack]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");

    // The tenant moves to its IdP's discovery document, as production must: its tests need
    // the development key, which keygen registers in the overlay.
    edit(
        &dir.join("tenants.json"),
        r#""jwks_file": "dev-keys/acme-rs256.jwks.json""#,
        r#""discovery": "https://idp.acme.example/.well-known/openid-configuration""#,
    );
    let (code, stdout, _) = run(&["test", pack]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("portcullis keygen --tenant acme"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&["keygen", "--bundle", pack, "--tenant", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("reusing the development key `acme-rs256`"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["test", pack]);
    assert_eq!(code, 0, "{stdout}");
    // The production bundle keeps the discovery document: the overlay is not in it.
    let (code, _, _) = run(&["bundle", pack, "-o", dir.join("out.json").to_str().unwrap()]);
    assert_eq!(code, 0);
    let out = std::fs::read_to_string(dir.join("out.json")).unwrap();
    assert!(
        out.contains("openid-configuration") && !out.contains("\"kty\""),
        "{out}"
    );

    // A new key for an algorithm the issuer does not allow is refused; an existing file is
    // never overwritten.
    let (code, _, stderr) = run(&[
        "keygen",
        "--bundle",
        pack,
        "--tenant",
        "acme",
        "--algorithm",
        "ES256",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does not allow `ES256`"), "{stderr}");
    std::fs::remove_file(dir.join("dev-keys/acme-rs256.jwks.json")).unwrap();
    let (code, _, stderr) = run(&["keygen", "--bundle", pack, "--tenant", "acme"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("exists; not overwriting"), "{stderr}");

    // A bad overlay is an error at its position, never silently ignored.
    std::fs::write(dir.join("dev-keys/issuers.json"), "{\"acme\": [\"x\"],}").unwrap();
    let (code, stdout, stderr) = run(&["test", pack]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stderr.contains("dev-keys/issuers.json:1:"), "{stderr}");
    // keygen reports it too, and leaves the file as it is.
    std::fs::remove_file(dir.join("dev-keys/acme-rs256.pem")).unwrap();
    let (code, _, stderr) = run(&["keygen", "--bundle", pack, "--tenant", "acme"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("dev-keys/issuers.json:1:"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("dev-keys/issuers.json")).unwrap(),
        "{\"acme\": [\"x\"],}"
    );
    assert!(
        !dir.join("dev-keys/acme-rs256.pem").exists(),
        "no key written either"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_takes_a_configuration_file_and_logs_json_lines_with_time_and_level() {
    use std::io::BufRead as _;
    // The options from a configuration file; the command line's `--audit-log` wins over the
    // file's.
    let config =
        std::env::temp_dir().join(format!("portcullis-config-{}.json", std::process::id()));
    let store = std::env::temp_dir().join(format!("portcullis-config-{}.db", std::process::id()));
    let options = serde_json::json!({
        "bundle": techfin(), "listen": "localhost:0", "log-format": "json",
        "audit-log": "/nonexistent/dir/audit.jsonl", "metrics-tenants": true,
        "store": format!("sqlite:{}", store.display()),
    });
    std::fs::write(&config, options.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--audit-log", "off"])
        .env_remove("PORTCULLIS_LOG_FORMAT")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let ts = record["ts"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        assert!(["info", "warn", "error"].contains(&record["level"].as_str().unwrap()));
        let msg = record["msg"].as_str().unwrap().to_owned();
        seen.push(msg.clone());
        if msg.starts_with("serving decisions at http://127.0.0.1:") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().any(|m| m.starts_with("compiling the engine")),
        "{seen:?}"
    );
    assert!(
        seen.last()
            .is_some_and(|m| m.starts_with("serving decisions at")),
        "{seen:?}"
    );
}

#[test]
fn a_configuration_file_is_checked_with_positions() {
    let config =
        std::env::temp_dir().join(format!("portcullis-badconfig-{}.json", std::process::id()));
    let run_with = |text: &str| {
        std::fs::write(&config, text).unwrap();
        run(&["serve", "--config", config.to_str().unwrap()])
    };
    let (code, _, stderr) = run_with("{\n  \"bundle\": \"x\",\n  \"lisen\": \":8080\"\n}");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(":3:3: `lisen` is not an option of `portcullis serve`"),
        "{stderr}"
    );
    assert!(stderr.contains("listen"), "{stderr}");
    let (code, _, stderr) = run_with("{\"bundle\": [\"x\"]}");
    assert_eq!(code, 2);
    assert!(stderr.contains(":1:2: `bundle` takes a string"), "{stderr}");
    let (code, _, stderr) = run_with("{\"bundle\": \"x\",}");
    assert_eq!(code, 2);
    assert!(stderr.contains(":1:"), "{stderr}");
    // A value is checked as the flag is.
    let (code, _, stderr) = run_with(r#"{"bundle": "x", "listen": "example.com:80"}"#);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a listen address"), "{stderr}");
    // The environment wins over the file (and the command line over both).
    std::fs::write(&config, r#"{"bundle": "x", "listen": "localhost:1"}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("PORTCULLIS_LISTEN", "example.com:80")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`example.com:80` is not a listen address"),
        "{stderr}"
    );
    std::fs::remove_file(&config).unwrap();
}

#[test]
fn check_and_test_decide_with_stored_entities_never_with_a_callers() {
    let dir = common::techfin_storing_reports("cli-data");
    let pack = dir.to_str().unwrap();
    let data = dir.join("data.json");
    let report = |department: &str| {
        format!(
            r#"{{"tenants": {{"acme": [{{"uid": {{"type": "Report", "id": "acme/q3"}}, "attrs": {{"department": "{department}"}}}}]}}}}"#
        )
    };
    std::fs::write(&data, report("risk")).unwrap();
    let claims = r#"{"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance"}"#;
    let (code, token, stderr) = run(&[
        "token", "--bundle", pack, "--tenant", "acme", "--claims", claims,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--bundle",
            pack,
            "--token",
            token,
            "--action",
            "view",
            "--resource",
            r#"Report::"acme/q3""#,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let data_arg = data.to_str().unwrap();
    // Stored in risk: denied, with the data revision in the decision.
    let (code, stdout, stderr) = check(&["--data", data_arg]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains(r#""data_revision":1"#), "{stdout}");
    // Moved to finance: allowed.
    std::fs::write(&data, report("finance")).unwrap();
    let (code, stdout, _) = check(&["--data", data_arg]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("analyst-view-own-department"), "{stdout}");
    // No data: no facts, denied (not an error about missing data).
    let (code, stdout, _) = check(&[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(!stdout.contains("data_unavailable"), "{stdout}");
    // The caller cannot supply the department instead.
    let (code, stdout, _) = check(&[
        "--resource-attrs",
        r#"{"tenant": "acme", "department": "finance"}"#,
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("request_stored_attrs"), "{stdout}");
    // A data file with another tenant's report in acme is refused, with its code.
    std::fs::write(
        &data,
        r#"{"tenants": {"acme": [{"uid": {"type": "Report", "id": "globex/q3"}, "attrs": {}}]}}"#,
    )
    .unwrap();
    let (code, _, stderr) = check(&["--data", data_arg]);
    assert_eq!(code, 2);
    assert!(stderr.contains("data_other_tenant"), "{stderr}");
    std::fs::write(&data, "{\"tenants\": {\"acme\": [}").unwrap();
    let (code, _, stderr) = check(&["--data", data_arg]);
    assert_eq!(code, 2);
    assert!(stderr.contains("data.json:1:"), "{stderr}");

    // Policy tests carry their data.
    let test = format!(
        r#"{{"now": 1767225600, "data": {}, "tests": [
            {{"name": "stored finance report", "tenant": "acme", "claims": {claims},
              "action": "view", "resource": {{"type": "Report", "id": "acme/q3"}},
              "expect": "allow", "reasons": ["analyst-view-own-department"]}},
            {{"name": "a report not stored", "tenant": "acme", "claims": {claims},
              "action": "view", "resource": {{"type": "Report", "id": "acme/q4"}},
              "expect": "deny"}}
        ]}}"#,
        report("finance")
    );
    // Only this file: the pack's own tests are run elsewhere.
    std::fs::remove_dir_all(dir.join("tests")).unwrap();
    std::fs::create_dir(dir.join("tests")).unwrap();
    std::fs::write(dir.join("tests/stored.json"), test).unwrap();
    let (code, stdout, stderr) = run(&["test", pack]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `portcullis data ARGS --service BASE` with `stdin`: exit code, stdout, stderr. The token,
/// given in `PORTCULLIS_TOKEN` when `env_token` is, or in a `--token-file` within `ARGS`,
/// must appear in neither output.
fn data(
    base: &str,
    args: &[&str],
    env_token: Option<&str>,
    stdin: &str,
    token: &str,
) -> (i32, String, String) {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .arg("data")
        .args(args)
        .args(["--service", base])
        .env_remove("PORTCULLIS_TOKEN")
        .env_remove("PORTCULLIS_SERVICE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(token) = env_token {
        command.env("PORTCULLIS_TOKEN", token);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    );
    assert!(
        !stdout.contains(token) && !stderr.contains(token),
        "the token was written out by `data {args:?}`"
    );
    (output.status.code().unwrap(), stdout, stderr)
}

fn ndjson(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn data_commands_read_and_write_a_tenants_entities_through_the_service() {
    use common::{Running, techfin_storing_reports, token_of};
    use portcullis::service::{AuditTarget, BundleSource, DataOptions, Options};
    use serde_json::json;

    let dir = techfin_storing_reports("cli-data-service");
    let mut options = Options::new(
        BundleSource::Path(dir.clone()),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit.target = AuditTarget::Off;
    options.data = Some(DataOptions {
        store: format!("sqlite:{}", dir.join("data.db").display()),
        ..DataOptions::default()
    });
    let running = Running::start(options);
    let base = running.base.as_str();
    // acme's back office: an Entra app-only token with the `DataWriter` role.
    let token = token_of(
        &dir,
        "acme",
        json!({
            "oid": "b0ff1ce0-0000-4000-8000-000000000001",
            "sub": "b0ff1ce0-0000-4000-8000-000000000001",
            "azp": "backoffice-app", "idtyp": "app", "roles": ["DataWriter"]
        }),
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let tf = token_file.to_str().unwrap();
    let env = Some(token.as_str());
    let run = |args: &[&str], stdin: &str| data(base, args, env, stdin, &token);

    // put (from standard input) then get: the entity as stored, the tenant filled in.
    let (code, stdout, stderr) = run(
        &["put", "acme", "Report", "q3"],
        r#"{"attrs": {"department": "finance"}}"#,
    );
    assert_eq!(code, 0, "{stderr}");
    let written: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (written["revision"].clone(), written["written"].clone()),
        (json!(1), json!(1))
    );
    let (code, stdout, stderr) = data(
        base,
        &["get", "acme", "Report", "q3", "--token-file", tf],
        None,
        "",
        &token,
    );
    assert_eq!(code, 0, "{stderr}");
    let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(got, written["entity"]);
    assert_eq!(got["uid"], json!({"type": "Report", "id": "acme/q3"}));
    assert_eq!(got["attrs"]["tenant"], "acme");

    // A conditional write on a revision the tenant has moved past is refused, exit 1.
    let entity = dir.join("q3.json");
    std::fs::write(&entity, r#"{"attrs": {"department": "risk"}}"#).unwrap();
    let (code, _, stderr) = run(
        &[
            "put",
            "acme",
            "Report",
            "q3",
            "--file",
            entity.to_str().unwrap(),
            "--if-match",
            "0",
        ],
        "",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.trim_end().ends_with("(data_revision)"),
        "{stderr}"
    );

    // import then export: one commit of three; the export holds them and q3.
    let lines: String = (1..=3)
        .map(|i| format!("{}\n", json!({"uid": {"type": "Report", "id": format!("acme/r{i}")}, "attrs": {"department": "sales"}})))
        .collect();
    let import = dir.join("import.ndjson");
    std::fs::write(&import, &lines).unwrap();
    let (code, stdout, stderr) = run(&["import", "acme", import.to_str().unwrap()], "");
    assert_eq!(code, 0, "{stderr}");
    let imported: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (imported["revision"].clone(), imported["written"].clone()),
        (json!(2), json!(3))
    );
    let export = dir.join("export.ndjson");
    let (code, stdout, stderr) = run(&["export", "acme", "-o", export.to_str().unwrap()], "");
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    assert!(stderr.contains("at revision 2"), "{stderr}");
    let exported = std::fs::read_to_string(&export).unwrap();
    let entities = ndjson(&exported);
    assert_eq!(entities.len(), 4, "{exported}");
    for line in ndjson(&lines) {
        assert!(
            entities.iter().any(|e| e["uid"] == line["uid"]
                && e["attrs"]["department"] == line["attrs"]["department"]),
            "{line} not in {exported}"
        );
    }
    // The export imported again (from standard input) is the same data.
    let (code, stdout, stderr) = run(&["import", "acme", "-"], &exported);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["written"],
        4
    );
    let (code, again, stderr) = run(&["export", "acme"], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ndjson(&again), entities);

    // list follows `next` across pages of two: the same entities, in order.
    let (code, stdout, stderr) = run(
        &["list", "acme", "--type", "Report", "--page-size", "2"],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let listed = ndjson(&stdout);
    let ids: Vec<&str> = listed
        .iter()
        .map(|e| e["uid"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme/q3", "acme/r1", "acme/r2", "acme/r3"]);
    let (_, stdout, _) = run(&["list", "acme", "--type", "Folder"], "");
    assert_eq!(stdout, "");

    // delete: gone, and a get of it is the service's `data_not_found`.
    let (code, stdout, stderr) = run(&["delete", "acme", "Report", "q3"], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["revision"],
        4
    );
    let (code, _, stderr) = run(&["get", "acme", "Report", "q3"], "");
    assert_eq!(code, 1);
    assert_eq!(stderr.trim_end(), "error: no such entity (data_not_found)");

    // Refused writes and reads: a parent in another tenant, another tenant's path.
    let (code, _, stderr) = run(
        &["put", "acme", "Report", "x"],
        r#"{"parents": [{"type": "Folder", "id": "globex/team"}]}"#,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.trim_end().ends_with("(data_parent_tenant)"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["get", "globex", "Report", "q3"], "");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.trim_end().ends_with("(data_other_tenant)"),
        "{stderr}"
    );

    // No token, an unreadable token file, a service that is not there: exit 2, saying so.
    let (code, _, stderr) = data(base, &["get", "acme", "Report", "r1"], None, "", &token);
    assert_eq!(code, 2);
    assert!(stderr.contains("no bearer token"), "{stderr}");
    assert!(stderr.contains("PORTCULLIS_TOKEN"), "{stderr}");
    let (code, _, stderr) = data(
        base,
        &[
            "get",
            "acme",
            "Report",
            "r1",
            "--token-file",
            "/nonexistent",
        ],
        None,
        "",
        &token,
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the token file `/nonexistent`"),
        "{stderr}"
    );
    let (code, _, stderr) = data(
        "http://127.0.0.1:9",
        &["get", "acme", "Report", "r1"],
        env,
        "",
        &token,
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot reach `http://127.0.0.1:9/v1/data/acme/entities/Report/r1`"),
        "{stderr}"
    );
    // A broken token is the service's `unauthenticated`, and is not echoed either.
    let (code, _, stderr) = data(
        base,
        &["get", "acme", "Report", "r1"],
        Some("x.y.z"),
        "",
        "x.y.z",
    );
    assert_eq!(code, 1);
    assert!(stderr.trim_end().ends_with("(unauthenticated)"), "{stderr}");
    drop(running);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `portcullis data import|export --store`: a store filled before its first `serve`, checked
/// against the bundle as the service checks a write, and read back; the other calls refused.
#[test]
fn data_import_and_export_work_on_a_store_itself_with_the_bundles_checks() {
    use serde_json::json;
    let dir = common::techfin_storing_reports("cli-data-offline");
    let store = format!("sqlite:{}", dir.join("data.db").display());
    let bundle = dir.to_str().unwrap();
    let file = dir.join("acme.ndjson");
    let offline = |args: &[&str]| {
        let mut all = vec!["data"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", &store, "--bundle", bundle]);
        run(&all)
    };
    std::fs::write(
        &file,
        concat!(
            r#"{"uid": {"type": "Department", "id": "acme/finance"}}"#,
            "\n\n",
            r#"{"uid": {"type": "Report", "id": "acme/q3"}, "attrs": {"department": "finance"}, "parents": [{"type": "Department", "id": "acme/finance"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = offline(&["import", "acme", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        json!({"revision": 1, "written": 2})
    );
    let (code, stdout, stderr) = offline(&["export", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("at revision 1"), "{stderr}");
    let exported = ndjson(&stdout);
    assert_eq!(exported.len(), 2);
    let report = exported
        .iter()
        .find(|e| e["uid"]["type"] == "Report")
        .unwrap();
    assert_eq!(report["attrs"]["tenant"], "acme", "the tenant filled in");

    // The bundle's checks hold: another tenant's entity, an undeclared attribute, a line that is
    // not JSON, a revision moved past; each exit 1 with its code, nothing written.
    for (lines, code) in [
        (
            r#"{"uid": {"type": "Report", "id": "globex/q3"}}"#,
            "data_other_tenant",
        ),
        (
            r#"{"uid": {"type": "Report", "id": "acme/q9"}, "attrs": {"owner": "x"}}"#,
            "data_schema",
        ),
        ("{not json", "data_malformed"),
        ("", "data_malformed"),
    ] {
        std::fs::write(&file, lines).unwrap();
        let (status, _, stderr) = offline(&["import", "acme", file.to_str().unwrap()]);
        assert_eq!(status, 1, "{lines}: {stderr}");
        assert!(stderr.contains(&format!("({code})")), "{lines}: {stderr}");
    }
    std::fs::write(
        &file,
        r#"{"uid": {"type": "Department", "id": "acme/risk"}}"#,
    )
    .unwrap();
    let (status, _, stderr) =
        offline(&["import", "acme", file.to_str().unwrap(), "--if-match", "7"]);
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("(data_revision)"), "{stderr}");
    let (_, stdout, _) = offline(&["export", "acme"]);
    assert_eq!(ndjson(&stdout).len(), 2, "nothing more was written");

    // What a store cannot do alone: calls that go through a service, and `--store` without
    // the bundle that checks its entities.
    let (status, _, stderr) = offline(&["get", "acme", "Report", "q3"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("`import` and `export` only"), "{stderr}");
    let (status, _, _) = run(&["data", "export", "acme", "--store", &store]);
    assert_eq!(status, 2, "--store needs --bundle");
}
