//! Builds the engine's WASI component (`bindings/component`, wasm32-wasip2) and hands its path
//! to the crate as `PORTCULLIS_COMPONENT_WASM`, so that the `portcullis` binary embeds it and
//! `cargo install --path host` gives one self-contained binary.
//!
//! The nested cargo uses its own target directory (`target/component`): sharing the outer
//! build's would deadlock on its lock. Set `PORTCULLIS_COMPONENT_WASM` to a prebuilt component
//! to skip the nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The cargo profile of the embedded component (see the workspace `Cargo.toml`).
const PROFILE: &str = "component";

fn main() -> ExitCode {
    println!("cargo::rerun-if-env-changed=PORTCULLIS_COMPONENT_WASM");
    if let Some(prebuilt) = env::var_os("PORTCULLIS_COMPONENT_WASM") {
        println!("cargo::rerun-if-changed={}", Path::new(&prebuilt).display());
        println!(
            "cargo::rustc-env=PORTCULLIS_COMPONENT_WASM={}",
            Path::new(&prebuilt).display()
        );
        return ExitCode::SUCCESS;
    }
    let Some(manifest_dir) = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        eprintln!("error: CARGO_MANIFEST_DIR is not set");
        return ExitCode::FAILURE;
    };
    let Some(root) = manifest_dir.parent().map(Path::to_path_buf) else {
        eprintln!("error: the host crate has no parent directory");
        return ExitCode::FAILURE;
    };
    for input in [
        "bindings/component",
        "engine/src",
        "engine/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(input).display());
    }
    let target_dir = root.join("target").join("component");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--locked",
            "-p",
            "portcullis-component",
            "--target",
            "wasm32-wasip2",
        ])
        .args(["--profile", PROFILE, "--target-dir"])
        .arg(&target_dir);
    // What cargo sets for this build script describes the outer build (its target, profile,
    // flags, clippy as rustc wrapper); the nested build must not inherit it. The jobserver
    // (`CARGO_MAKEFLAGS`) is kept so both builds share the same job slots.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS")
            || key.starts_with("__CARGO")
            || matches!(
                key,
                "RUSTC"
                    | "RUSTDOC"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC_LINKER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if outer {
            command.env_remove(key);
        }
    }
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!(
                "error: building the component failed ({status}); is `wasm32-wasip2` installed? (scripts/setup.sh)"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: cannot run cargo for the component: {e}");
            return ExitCode::FAILURE;
        }
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join(PROFILE)
        .join("portcullis_component.wasm");
    println!(
        "cargo::rustc-env=PORTCULLIS_COMPONENT_WASM={}",
        wasm.display()
    );
    ExitCode::SUCCESS
}
