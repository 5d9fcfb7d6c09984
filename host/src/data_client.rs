//! `portcullis data`: a client of the decision service's data API (`/v1/data/{tenant}/…`).
//!
//! Every call carries the caller's bearer token, which the service authorizes exactly as it
//! does any other client's. The token comes from a file or the environment, never from an
//! argument (arguments show in `ps`), and is never written out, errors included. Redirects are
//! not followed (a redirected request would carry the token elsewhere), every call has a
//! timeout, and what is read back is capped.
//!
//! Exit codes: 0 success, 1 the service refused the call (its `{code, message}` is printed as
//! `error: <message> (<code>)`), 2 usage, configuration or network errors, and answers that are
//! not the data API's.

use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The largest answer read into memory: an entity, a write's answer, a page of a listing.
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// The largest export written out.
const MAX_EXPORT: u64 = 4 * 1024 * 1024 * 1024;

/// The largest error body read.
const MAX_ERROR: u64 = 64 * 1024;

/// The options of `portcullis data`.
#[derive(Args)]
pub struct DataArgs {
    /// The decision service's base URL (`http://127.0.0.1:8080`; its decision listener).
    #[arg(long, env = "PORTCULLIS_SERVICE", global = true)]
    service: Option<String>,
    /// A file holding the bearer token of the calls (else the environment variable
    /// `PORTCULLIS_TOKEN`). There is no `--token`: arguments show in `ps`.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Seconds one HTTP call may take, connecting to reading the whole answer.
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,
    /// Work on a store itself (`sqlite:PATH`, `postgres://…`) instead of through a service:
    /// `import` and `export` only, to fill a store before its first `serve` or to back one
    /// up. The entities are checked against `--bundle` as the service checks them, but the
    /// call is not authorized by policies nor audited: it takes what opening the store takes.
    #[arg(long, global = true, value_name = "SPEC", requires = "bundle")]
    store: Option<String>,
    /// The bundle directory that checks `--store`'s entities.
    #[arg(long, global = true, value_name = "DIR", requires = "store")]
    bundle: Option<PathBuf>,
    #[command(subcommand)]
    command: DataCommand,
}

/// The calls of `portcullis data`. Ids are relative to the tenant, as in the API's paths:
/// `data get acme Report q3` is `Report::"acme/q3"`.
#[derive(Subcommand)]
enum DataCommand {
    /// Print one entity (Cedar entity JSON, one line).
    Get {
        /// Tenant.
        tenant: String,
        /// Entity type (`Report`).
        #[arg(value_name = "TYPE")]
        entity_type: String,
        /// Id within the tenant (`q3` for `acme/q3`).
        id: String,
    },
    /// Store an entity (Cedar entity JSON; `uid` optional, and if given it must be
    /// `<type>::"<tenant>/<id>"`) and print the service's answer,
    /// `{"revision", "written", "entity"}`.
    Put {
        /// Tenant.
        tenant: String,
        /// Entity type.
        #[arg(value_name = "TYPE")]
        entity_type: String,
        /// Id within the tenant.
        id: String,
        /// The entity's JSON file (`-` or left out: standard input).
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// Write only if the tenant's data is still at this revision (else `data_revision`).
        #[arg(long, value_name = "REV")]
        if_match: Option<u64>,
    },
    /// Delete an entity and print the service's answer, `{"revision", "written", "entity"}`.
    Delete {
        /// Tenant.
        tenant: String,
        /// Entity type.
        #[arg(value_name = "TYPE")]
        entity_type: String,
        /// Id within the tenant.
        id: String,
        /// Delete only if the tenant's data is still at this revision.
        #[arg(long, value_name = "REV")]
        if_match: Option<u64>,
    },
    /// Print the tenant's entities as NDJSON, one entity a line, ordered by type and id
    /// (every page, following `next`).
    List {
        /// Tenant.
        tenant: String,
        /// Only this entity type.
        #[arg(long = "type", value_name = "TYPE")]
        entity_type: Option<String>,
        /// Entities asked for per call (1–1000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
        page_size: u16,
    },
    /// Store the entities of an NDJSON file (one entity a line) as one commit and print the
    /// service's answer, `{"revision", "written", "entity"}`.
    Import {
        /// Tenant.
        tenant: String,
        /// The NDJSON file (`-`: standard input).
        file: PathBuf,
        /// Import only if the tenant's data is still at this revision.
        #[arg(long, value_name = "REV")]
        if_match: Option<u64>,
    },
    /// Write every entity of the tenant as NDJSON, at one revision (said on standard error).
    Export {
        /// Tenant.
        tenant: String,
        /// Output file (default `-`: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// Why a call failed.
enum Failure {
    /// The service answered with its JSON error.
    Refused { code: String, message: String },
    /// Anything else: usage, files, the network, an answer that is not the API's.
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

/// Run `portcullis data …`.
pub fn run(args: DataArgs) -> ExitCode {
    if let (Some(store), Some(bundle)) = (&args.store, &args.bundle) {
        return match offline(store, bundle, args.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, ""),
        };
    }
    let token = match token(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => return fail(&Failure::Other(e), ""),
    };
    let result = Client::new(&args, &token).and_then(|client| client.run(args.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, &token),
    }
}

/// `import` and `export` on the store `spec` itself, checked against the bundle in `bundle`.
/// Refusals of the engine's checks exit 1, as the service's do.
fn offline(spec: &str, bundle: &Path, command: DataCommand) -> Result<(), Failure> {
    use portcullis::store;
    let (_, loaded) = portcullis::bundle_dir::load(bundle)
        .map_err(|e| Failure::Other(format!("bundle `{}`: {e}", bundle.display())))?;
    let opened = store::open(spec).map_err(|e| Failure::Other(format!("store: {e}")))?;
    // As the service's refusals: exit 1 with a code (a store that fails mid-call included).
    let refused = |e: store::checked::CheckedError| match e {
        store::checked::CheckedError::Refused { code, message } => Failure::Refused {
            code: code.to_owned(),
            message,
        },
        store::checked::CheckedError::Store(message) => Failure::Refused {
            code: "data_store".to_owned(),
            message,
        },
    };
    match command {
        DataCommand::Import {
            tenant,
            file,
            if_match,
        } => {
            let body = read_input(Some(&file), "the import")?;
            let text = String::from_utf8(body)
                .map_err(|_| Failure::Other("the import is not UTF-8".into()))?;
            let entities = store::checked::parse_ndjson(&text).map_err(|e| Failure::Refused {
                code: e.code().to_owned(),
                message: e.to_string(),
            })?;
            let (revision, written) = store::checked::put_entities(
                opened.as_ref(),
                &loaded,
                &tenant,
                entities,
                if_match,
                "portcullis data import --store",
                super::now_unix(),
            )
            .map_err(refused)?;
            println!(
                "{}",
                serde_json::json!({"revision": revision, "written": written.len()})
            );
            Ok(())
        }
        DataCommand::Export { tenant, output } => {
            let data =
                store::checked::read_tenant(opened.as_ref(), &loaded, &tenant).map_err(refused)?;
            let mut out = String::new();
            for entity in data.document().entities {
                out.push_str(&entity.to_string());
                out.push('\n');
            }
            match output.as_deref() {
                Some(path) if path.as_os_str() != "-" => {
                    std::fs::write(path, out).map_err(|e| {
                        Failure::Other(format!("cannot write `{}`: {e}", path.display()))
                    })?
                }
                _ => std::io::stdout()
                    .lock()
                    .write_all(out.as_bytes())
                    .map_err(|e| Failure::Other(format!("cannot write the output: {e}")))?,
            }
            eprintln!("exported tenant `{tenant}` at revision {}", data.revision());
            Ok(())
        }
        _ => Err(Failure::Other(
            "`--store` serves `import` and `export` only: the other calls go through a service"
                .into(),
        )),
    }
}

/// Print `failure` (never `token`) and give its exit code.
fn fail(failure: &Failure, token: &str) -> ExitCode {
    let redact = |text: &str| {
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "<token>")
        }
    };
    match failure {
        Failure::Refused { code, message } => {
            eprintln!("error: {} ({})", redact(message), redact(code));
            ExitCode::from(1)
        }
        Failure::Other(message) => {
            eprintln!("error: {}", redact(message));
            ExitCode::from(2)
        }
    }
}

/// The bearer token: the file's, else `PORTCULLIS_TOKEN`'s, trimmed.
fn token(file: Option<&Path>) -> Result<String, String> {
    let (token, from) = match file {
        Some(file) => (
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the token file `{}`: {e}", file.display()))?,
            format!("the token file `{}`", file.display()),
        ),
        None => match std::env::var("PORTCULLIS_TOKEN") {
            Ok(token) => (token, "`PORTCULLIS_TOKEN`".to_owned()),
            Err(_) => {
                return Err(
                    "no bearer token: give `--token-file FILE` or set `PORTCULLIS_TOKEN`".into(),
                );
            }
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{from} is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{from} is not a bearer token: it holds spaces, control or non-ASCII characters"
        ));
    }
    Ok(token.to_owned())
}

/// `text` percent-encoded for a URL path segment or query value; `/` kept when `slashes`.
fn encode(text: &str, slashes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b'/' if slashes => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

struct Client {
    agent: ureq::Agent,
    /// The service's base URL, without a final `/`.
    base: String,
    authorization: String,
}

/// A request body and its content type.
type Payload = (&'static str, Vec<u8>);

impl Client {
    fn new(args: &DataArgs, token: &str) -> Result<Self, Failure> {
        let Some(service) = args.service.as_deref() else {
            return Err(Failure::Other(
                "no service: give `--service URL` or set `PORTCULLIS_SERVICE`".into(),
            ));
        };
        let base = service.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('?') {
            return Err(Failure::Other(format!(
                "`--service {service}` is not the service's base URL: use `http://host:port` or `https://host:port`"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(args.timeout.max(1))))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            agent,
            base: base.to_owned(),
            authorization: format!("Bearer {token}"),
        })
    }

    fn run(&self, command: DataCommand) -> Result<(), Failure> {
        let mut stdout = std::io::stdout().lock();
        let mut print = |text: &str| -> Result<(), Failure> {
            writeln!(stdout, "{}", text.trim_end())
                .map_err(|e| Failure::Other(format!("cannot write the output: {e}")))
        };
        match command {
            DataCommand::Get {
                tenant,
                entity_type,
                id,
            } => {
                let url = self.entity_url(&tenant, &entity_type, &id);
                print(&text(self.call("GET", &url, None, None)?, &url)?)
            }
            DataCommand::Put {
                tenant,
                entity_type,
                id,
                file,
                if_match,
            } => {
                let body = read_input(file.as_deref(), "the entity")?;
                let url = self.entity_url(&tenant, &entity_type, &id);
                let answer = self.call("PUT", &url, Some(("application/json", body)), if_match)?;
                print(&text(answer, &url)?)
            }
            DataCommand::Delete {
                tenant,
                entity_type,
                id,
                if_match,
            } => {
                let url = self.entity_url(&tenant, &entity_type, &id);
                print(&text(self.call("DELETE", &url, None, if_match)?, &url)?)
            }
            DataCommand::List {
                tenant,
                entity_type,
                page_size,
            } => {
                let mut after: Option<String> = None;
                loop {
                    let mut url = format!(
                        "{}/v1/data/{}/entities?limit={page_size}",
                        self.base,
                        encode(&tenant, false)
                    );
                    if let Some(entity_type) = &entity_type {
                        url.push_str(&format!("&type={}", encode(entity_type, false)));
                    }
                    if let Some(after) = &after {
                        url.push_str(&format!("&after={}", encode(after, false)));
                    }
                    let text = text(self.call("GET", &url, None, None)?, &url)?;
                    let page: Value = serde_json::from_str(&text).map_err(|_| not_api(&url))?;
                    let entities = page
                        .get("entities")
                        .and_then(Value::as_array)
                        .ok_or_else(|| not_api(&url))?;
                    for entity in entities {
                        print(&entity.to_string())?;
                    }
                    match page.get("next").and_then(Value::as_str) {
                        // A `next` that does not move on would page forever.
                        Some(next) if after.as_deref() != Some(next) && !entities.is_empty() => {
                            after = Some(next.to_owned());
                        }
                        _ => return Ok(()),
                    }
                }
            }
            DataCommand::Import {
                tenant,
                file,
                if_match,
            } => {
                let body = read_input(Some(&file), "the import")?;
                let url = format!("{}/v1/data/{}/import", self.base, encode(&tenant, false));
                let answer =
                    self.call("POST", &url, Some(("application/x-ndjson", body)), if_match)?;
                print(&text(answer, &url)?)
            }
            DataCommand::Export { tenant, output } => {
                let url = format!("{}/v1/data/{}/export", self.base, encode(&tenant, false));
                let answer = self.call("GET", &url, None, None)?;
                let revision = answer
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_owned());
                let mut reader = answer
                    .into_body()
                    .into_with_config()
                    .limit(MAX_EXPORT)
                    .reader();
                let copied = match output.as_deref() {
                    None => std::io::copy(&mut reader, &mut stdout).map(|_| None),
                    Some(path) if path.as_os_str() == "-" => {
                        std::io::copy(&mut reader, &mut stdout).map(|_| None)
                    }
                    Some(path) => std::fs::File::create(path)
                        .and_then(|mut file| {
                            std::io::copy(&mut reader, &mut file)?;
                            file.sync_all()
                        })
                        .map(|()| Some(path))
                        .inspect_err(|_| {
                            let _ = std::fs::remove_file(path);
                        }),
                };
                match copied {
                    Ok(path) => {
                        let to = path.map_or(String::new(), |p| format!(" to `{}`", p.display()));
                        match revision {
                            Some(r) => eprintln!("exported tenant `{tenant}` at revision {r}{to}"),
                            None => eprintln!("exported tenant `{tenant}`{to}"),
                        }
                        Ok(())
                    }
                    Err(e) => Err(Failure::Other(format!("export from `{url}`: {e}"))),
                }
            }
        }
    }

    fn entity_url(&self, tenant: &str, entity_type: &str, id: &str) -> String {
        format!(
            "{}/v1/data/{}/entities/{}/{}",
            self.base,
            encode(tenant, false),
            encode(entity_type, false),
            encode(id, true)
        )
    }

    /// One call: the answer when it is a success, else why not.
    fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<Payload>,
        if_match: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json, application/x-ndjson");
        if let Some(revision) = if_match {
            request = request.header("if-match", format!("\"{revision}\""));
        }
        let (content_type, bytes) = body.unwrap_or(("", Vec::new()));
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let request = request
            .body(bytes)
            .map_err(|_| Failure::Other(format!("`{url}` is not a URL")))?;
        let mut answer = self
            .agent
            .run(request)
            .map_err(|e| Failure::Other(format!("cannot reach `{url}`: {e}")))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        if status.is_redirection() {
            return Err(Failure::Other(format!(
                "`{url}` answered {status}, a redirect, which is not followed: give `--service` the service's own URL"
            )));
        }
        let text = answer
            .body_mut()
            .with_config()
            .limit(MAX_ERROR)
            .read_to_string()
            .unwrap_or_default();
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (
            error.get("code").and_then(Value::as_str),
            error.get("message").and_then(Value::as_str),
        ) {
            (Some(code), Some(message)) => Err(Failure::Refused {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
            _ => Err(Failure::Other(format!(
                "`{url}` answered {status}, without the data API's JSON error: is `--service` a Portcullis decision service?"
            ))),
        }
    }
}

/// A successful answer's body, at most [`MAX_ANSWER`] bytes.
fn text(mut answer: ureq::http::Response<ureq::Body>, url: &str) -> Result<String, Failure> {
    answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| Failure::Other(format!("reading the answer of `{url}`: {e}")))
}

fn not_api(url: &str) -> Failure {
    Failure::Other(format!("`{url}` did not answer a page of entities"))
}

/// A file's bytes, or standard input's for `-` or no file.
fn read_input(file: Option<&Path>, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    match file {
        Some(file) if file.as_os_str() != "-" => std::fs::File::open(file)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {what} `{}`: {e}", file.display()))?,
        _ => std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {what} from standard input: {e}"))?,
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_encoded() {
        assert_eq!(encode("q3/2024 a", true), "q3/2024%20a");
        assert_eq!(
            encode("Report::\"acme/q3\"", false),
            "Report%3A%3A%22acme%2Fq3%22"
        );
    }
}
