//! `portcullis-conformance export [--out FILE] [--root DIR] [--now UNIX]`: write every conformance case,
//! tokens materialised, as one JSON document (stdout by default) for hosts that cannot run
//! the Rust loader (JS SDK, Envoy, HTTP service).

use portcullis_conformance::{default_repo_root, export};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: portcullis-conformance export [--out FILE] [--root REPO_ROOT] [--now UNIX_SECONDS]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("export") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut out: Option<PathBuf> = None;
    let mut root = default_repo_root();
    let mut now: Option<i64> = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--out", Some(path)) => out = Some(PathBuf::from(path)),
            ("--root", Some(path)) => root = PathBuf::from(path),
            ("--now", Some(value)) => match value.parse() {
                Ok(value) => now = Some(value),
                Err(_) => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let document = match export(&root, now) {
        Ok(document) => document,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let text = match serde_json::to_string_pretty(&document) {
        Ok(text) => text + "\n",
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let count = document
        .get("cases")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    match out {
        Some(path) => {
            if let Err(err) = std::fs::write(&path, text) {
                eprintln!("error: cannot write `{}`: {err}", path.display());
                return ExitCode::from(1);
            }
            eprintln!("wrote {count} cases to {}", path.display());
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}
