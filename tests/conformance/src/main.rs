//! `portcullis-conformance`:
//! - `export [--out FILE] [--root DIR] [--now UNIX]`: write every conformance case, tokens
//!   materialised, as one JSON document (stdout by default) for hosts that cannot run the Rust
//!   loader (JS SDK, Envoy, HTTP service);
//! - `check-http --answers FILE [--root DIR]`: check what such a host did with every HTTP case
//!   (`{"<file>: <name>": answer}`), with the same checker as the Rust runners; exit 1 when a
//!   case fails.

use portcullis_conformance::{HttpAnswer, check_http_answers, default_repo_root, export, load_all};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: portcullis-conformance export [--out FILE] [--root REPO_ROOT] [--now UNIX_SECONDS]
       portcullis-conformance check-http --answers FILE [--root REPO_ROOT]";

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let mut out: Option<PathBuf> = None;
    let mut answers: Option<PathBuf> = None;
    let mut root = default_repo_root();
    let mut now: Option<i64> = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--out", Some(path)) => out = Some(PathBuf::from(path)),
            ("--answers", Some(path)) => answers = Some(PathBuf::from(path)),
            ("--root", Some(path)) => root = PathBuf::from(path),
            ("--now", Some(value)) => match value.parse() {
                Ok(value) => now = Some(value),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    match (command.as_deref(), answers) {
        (Some("export"), None) => write_export(&root, now, out),
        (Some("check-http"), Some(answers)) if out.is_none() && now.is_none() => {
            check(&root, &answers)
        }
        _ => usage(),
    }
}

fn write_export(root: &std::path::Path, now: Option<i64>, out: Option<PathBuf>) -> ExitCode {
    let document = match export(root, now) {
        Ok(document) => document,
        Err(err) => return fail(err),
    };
    let text = match serde_json::to_string_pretty(&document) {
        Ok(text) => text + "\n",
        Err(err) => return fail(err),
    };
    let count = |key: &str| {
        document
            .get(key)
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len)
    };
    match out {
        Some(path) => {
            if let Err(err) = std::fs::write(&path, text) {
                return fail(format!("cannot write `{}`: {err}", path.display()));
            }
            eprintln!(
                "wrote {} cases and {} HTTP cases to {}",
                count("cases"),
                count("http_cases"),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

fn check(root: &std::path::Path, answers: &std::path::Path) -> ExitCode {
    let cases = match load_all(root, None) {
        Ok(cases) => cases.http,
        Err(err) => return fail(err),
    };
    let answers: BTreeMap<String, HttpAnswer> = match std::fs::read_to_string(answers)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(answers) => answers,
        Err(err) => return fail(format!("`{}`: {err}", answers.display())),
    };
    if let Some(unknown) = answers
        .keys()
        .find(|id| !cases.iter().any(|c| &c.id() == *id))
    {
        return fail(format!("an answer for no HTTP case: `{unknown}`"));
    }
    match check_http_answers(&cases, &answers) {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
