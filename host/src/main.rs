//! `portcullis`: the command-line tool of the Portcullis authorization engine.
//!
//! Exit codes: 0 allow (or success), 1 deny / unauthenticated (or failed tests),
//! 2 usage or load errors.

mod demo;
mod policy_tests;

use clap::{Parser, Subcommand};
use portcullis::bundle_dir;
use portcullis::service::{AuditTarget, BundleSource, Options, Server};
use portcullis_engine::{DecisionRequest, DevIssuer, Engine, ResourceRef};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Multi-tenant authorization: JWT verification + claim mapping + Cedar policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one request and print the decision as JSON (exit 0 allow, 1 deny/unauthenticated).
    Check {
        /// Bundle directory or compiled bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// The caller's JWT.
        #[arg(long)]
        token: String,
        /// Action id (`view`).
        #[arg(long)]
        action: String,
        /// Resource, `Type::"id"`.
        #[arg(long)]
        resource: String,
        /// Resource attributes as a JSON object.
        #[arg(long)]
        resource_attrs: Option<String>,
        /// Extra context as a JSON object.
        #[arg(long)]
        context: Option<String>,
        /// Evaluation time (unix seconds; default: now).
        #[arg(long)]
        now: Option<i64>,
    },
    /// Validate a bundle directory; print every problem with its location.
    Validate {
        /// Bundle directory.
        dir: PathBuf,
    },
    /// Compile a bundle directory into one JSON document.
    Bundle {
        /// Bundle directory.
        dir: PathBuf,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run the policy tests in `<dir>/tests/*.json`.
    Test {
        /// Bundle directory.
        dir: PathBuf,
        /// Print passing tests too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Mint a development token signed with a tenant issuer's development key.
    Token {
        /// Bundle directory (with `dev-keys/`).
        #[arg(long)]
        bundle: PathBuf,
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// Which of the tenant's issuers (default the first).
        #[arg(long, default_value_t = 0)]
        issuer: usize,
        /// Claims (JSON object) merged over the standard ones; `null` removes a claim.
        #[arg(long)]
        claims: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Issue time (unix seconds; default: now).
        #[arg(long)]
        now: Option<i64>,
    },
    /// Run the TechFin scenario through the decision service (started on a loopback port) and
    /// print a table.
    Demo {
        /// Bundle directory.
        #[arg(long, default_value = "policies/techfin")]
        bundle: PathBuf,
    },
    /// Serve decisions over HTTP (reloads the bundle on change and on SIGHUP).
    Serve {
        /// Bundle directory, compiled bundle file, or `https://` URL of a compiled bundle.
        #[arg(long)]
        bundle: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Audit log: `-` for stdout, `off`, or a file to append to.
        #[arg(long, default_value = "-")]
        audit_log: String,
        /// Seconds between checks of the bundle source for changes.
        #[arg(long, default_value_t = 2)]
        poll_seconds: u64,
    },
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn json_object(what: &str, text: Option<&str>) -> Result<Map<String, Value>, String> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("--{what} must be a JSON object")),
            Err(e) => Err(format!("--{what} is not valid JSON: {e}")),
        },
    }
}

/// Parse `Type::"id"` (the id is a JSON string literal).
fn parse_resource(text: &str) -> Result<(String, String), String> {
    let err = || {
        format!(
            "--resource must look like Type::\"id\", got `{}`",
            text.chars().take(80).collect::<String>()
        )
    };
    let (ty, rest) = text.split_once("::\"").ok_or_else(err)?;
    let id: String = serde_json::from_str(&format!("\"{rest}")).map_err(|_| err())?;
    if ty.is_empty() {
        return Err(err());
    }
    Ok((ty.to_owned(), id))
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Start the decision service, run `work` against it until it finishes or Ctrl-C / SIGTERM
/// arrives (SIGHUP reloads the bundle), then shut down gracefully.
fn serve_until(
    options: Options,
    work: impl FnOnce(String) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(format!("cannot start the async runtime: {e}")),
    };
    let result: Result<(), String> = runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let server = Server::start(options).await?;
        let base = format!("http://{}", server.addr());
        eprintln!("portcullis: serving decisions at {base}");
        let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut work = work(base);
        let outcome = loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = terminate.recv() => break Ok(()),
                _ = hangup.recv() => server.reload(),
            }
        };
        eprintln!("portcullis: shutting down");
        server.shutdown().await?;
        outcome
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            bundle,
            token,
            action,
            resource,
            resource_attrs,
            context,
            now,
        } => {
            let (entity_type, id) = match parse_resource(&resource) {
                Ok(r) => r,
                Err(e) => return usage_error(e),
            };
            let (attrs, context) = match (
                json_object("resource-attrs", resource_attrs.as_deref()),
                json_object("context", context.as_deref()),
            ) {
                (Ok(a), Ok(c)) => (a, c),
                (Err(e), _) | (_, Err(e)) => return usage_error(e),
            };
            let (_, loaded) = match bundle_dir::load(&bundle) {
                Ok(b) => b,
                Err(e) => return usage_error(e),
            };
            let engine = Engine::new(loaded);
            let request = DecisionRequest {
                token: Some(token),
                action,
                resource: ResourceRef {
                    entity_type,
                    id,
                    attrs,
                },
                context,
            };
            let decision = engine.decide(&request, now.unwrap_or_else(now_unix));
            println!("{}", decision.to_json());
            if decision.is_allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Validate { dir } => match bundle_dir::load(&dir) {
            Ok((compiled, bundle)) => {
                println!(
                    "ok: {} policies, {} tenants, revision {}",
                    bundle.policy_count(),
                    compiled.tenants.len(),
                    bundle.revision()
                );
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Bundle { dir, output } => match bundle_dir::compile(&dir) {
            Ok(compiled) => {
                let json = compiled.to_json();
                let written = if output.as_os_str() == "-" {
                    println!("{json}");
                    Ok(())
                } else {
                    std::fs::write(&output, json + "\n")
                };
                match written {
                    Ok(()) => {
                        eprintln!("bundle revision {}", compiled.revision);
                        ExitCode::SUCCESS
                    }
                    Err(e) => usage_error(format!("cannot write `{}`: {e}", output.display())),
                }
            }
            Err(e) => usage_error(e),
        },
        Command::Test { dir, verbose } => match policy_tests::run(&dir, verbose) {
            Ok(summary) => {
                println!(
                    "{} passed, {} failed",
                    summary.passed,
                    summary.failures.len()
                );
                if summary.failures.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => usage_error(e),
        },
        Command::Token {
            bundle,
            tenant,
            issuer,
            claims,
            ttl,
            now,
        } => {
            let overrides = match json_object("claims", claims.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let compiled = match bundle_dir::compile(&bundle) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let now = now.unwrap_or_else(now_unix);
            let dev = match DevIssuer::for_tenant(&compiled, &tenant, issuer, &mut |p| {
                bundle_dir::read_relative(&bundle, p)
            }) {
                Ok(d) => d,
                Err(e) => return usage_error(e),
            };
            let mut all = dev.base_claims(now, ttl);
            for (k, v) in overrides {
                if v.is_null() {
                    all.remove(&k);
                } else {
                    all.insert(k, v);
                }
            }
            match dev.sign(&all) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(e),
            }
        }
        Command::Demo { bundle } => {
            let mut options = Options::new(
                BundleSource::Path(bundle.clone()),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            );
            options.audit = AuditTarget::Off;
            serve_until(options, |base| {
                let now = now_unix();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || demo::run(&base, &bundle, now))
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|_| ())
                })
            })
        }
        Command::Serve {
            bundle,
            listen,
            audit_log,
            poll_seconds,
        } => {
            let source = match BundleSource::parse(&bundle) {
                Ok(source) => source,
                Err(e) => return usage_error(e),
            };
            let mut options = Options::new(source, listen);
            options.poll_interval = std::time::Duration::from_secs(poll_seconds.max(1));
            options.audit = match audit_log.as_str() {
                "-" => AuditTarget::Stdout,
                "off" => AuditTarget::Off,
                path => AuditTarget::File(PathBuf::from(path)),
            };
            serve_until(options, |_| Box::pin(std::future::pending()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_syntax() {
        assert_eq!(
            parse_resource(r#"Report::"q3""#).unwrap(),
            ("Report".into(), "q3".into())
        );
        assert_eq!(
            parse_resource(r#"A::B::"x\"y""#).unwrap(),
            ("A::B".into(), "x\"y".into())
        );
        assert!(parse_resource("Report").is_err());
        assert!(parse_resource(r#"::"x""#).is_err());
    }
}
