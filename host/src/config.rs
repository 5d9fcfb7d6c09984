//! `portcullis serve --config <file.json>`: the service's options in a file, by their long
//! names. The file becomes command-line flags placed before the real ones, for the options
//! that neither the command line nor the environment (`PORTCULLIS_<NAME>`) gives: a flag wins,
//! then the environment, then the file. A name that is no option, or a value of the wrong
//! kind, is an error at its line and column; values are then checked as the flags are.

use clap::Command;
use serde_json::Value;
use std::ffi::OsString;

/// `args` with the `--config` file of `serve`, if any, expanded into flags.
///
/// # Errors
/// The file cannot be read, is not a JSON object, or names what `serve` does not take.
pub fn expand(args: Vec<OsString>, cli: &Command) -> Result<Vec<OsString>, String> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(args);
    }
    let given: Vec<String> = args
        .iter()
        .skip(2)
        .filter_map(|a| a.to_str().map(str::to_owned))
        .collect();
    let mut path = None;
    for (i, arg) in given.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--config=") {
            path = Some(value.to_owned());
        } else if arg == "--config" {
            path = given.get(i + 1).cloned();
        }
    }
    let path = match path.or_else(|| std::env::var("PORTCULLIS_CONFIG").ok()) {
        Some(path) => path,
        None => return Ok(args),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the configuration file `{path}`: {e}"))?;
    let serve = cli.find_subcommand("serve").ok_or("no `serve` command")?;
    let options: serde_json::Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{path}:{}:{}: {}",
            e.line(),
            e.column(),
            portcullis_engine::json_message(&e)
        )
    })?;
    let mut flags: Vec<OsString> = Vec::new();
    for (name, value) in &options {
        let at = position(&text, name);
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && name != "config")
        else {
            let names: Vec<&str> = serve
                .get_arguments()
                .filter_map(clap::Arg::get_long)
                .filter(|n| *n != "config" && *n != "help")
                .collect();
            return Err(format!(
                "{path}:{at}: `{name}` is not an option of `portcullis serve` (they are: {})",
                names.join(", ")
            ));
        };
        let flag = format!("--{name}");
        let on_command_line = given
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let in_environment = arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        match value {
            Value::Bool(true) => flags.push(flag.into()),
            Value::Bool(false) => {}
            Value::String(text) => flags.extend([flag.into(), text.into()]),
            Value::Number(n) => flags.extend([flag.into(), n.to_string().into()]),
            _ => {
                return Err(format!(
                    "{path}:{at}: `{name}` takes a string, a number or a boolean"
                ));
            }
        }
    }
    let mut expanded: Vec<OsString> = args.iter().take(2).cloned().collect();
    expanded.extend(flags);
    expanded.extend(args.into_iter().skip(2));
    Ok(expanded)
}

/// `line:column` of the key `name` in `text` (its first occurrence as a JSON string).
fn position(text: &str, name: &str) -> String {
    let needle = format!("\"{name}\"");
    let offset = text.find(&needle).unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{column}")
}
