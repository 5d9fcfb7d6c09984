//! The audit trail of `portcullis serve` (the real binary) when the process is stopped under
//! load: SIGTERM answers the requests in flight and writes every queued record before exit;
//! `--audit-mode committed` loses no answered decision's record even to SIGKILL.
//!
//! The audit lines go to standard output, which the test reads slowly: records pile up in the
//! service's queue, as they do behind a slow disk or log shipper, so that a record left in the
//! queue at exit would be missed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{agent, analyst_token, techfin, view_request};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Start `portcullis serve` with `extra` flags, audit lines on its standard output; the child,
/// its decision address, and the reader of its audit lines (a slow one: 2 ms a line), which
/// ends with the ids of every record the process wrote.
fn serve(extra: &[&str]) -> (Child, String, std::thread::JoinHandle<HashSet<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--bundle"])
        .arg(techfin())
        .args(["--listen", "127.0.0.1:0", "--audit-log", "-"])
        .args(["--store", &common::seeded_store("audit", &techfin()).store])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve exited").unwrap();
        if let Some(rest) = line.split("serving decisions at ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so that the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut ids = HashSet::new();
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            std::thread::sleep(Duration::from_millis(2));
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(id) = record["decision_id"].as_str()
            {
                ids.insert(id.to_owned());
            }
        }
        ids
    });
    (child, base, reader)
}

/// Decide from `threads` clients until `stop`: the ids of the decisions answered.
fn load(
    base: &str,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    let body = view_request(&analyst_token(&techfin()));
    (0..threads)
        .map(|_| {
            let (base, body, stop) = (base.to_owned(), body.clone(), Arc::clone(stop));
            std::thread::spawn(move || {
                let agent = agent();
                let mut answered = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut response) = agent
                        .post(&format!("{base}/v1/decide"))
                        .send(body.as_bytes())
                    else {
                        break; // the server is gone
                    };
                    if response.status() != 200 {
                        continue;
                    }
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let decision: serde_json::Value =
                        serde_json::from_str(&text).unwrap_or_default();
                    if let Some(id) = decision["decision_id"].as_str() {
                        answered.push(id.to_owned());
                    }
                }
                answered
            })
        })
        .collect()
}

/// Stop the service with `signal` under load: decisions answered, of which without a record,
/// and its exit code.
fn stop_under_load(mode: &str, signal: &str) -> (usize, usize, Option<i32>) {
    let (mut child, base, reader) = serve(&["--audit-mode", mode, "--audit-queue", "200"]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&base, 4, &stop);
    // Let the load run (records pile up behind the slow reader), then stop the server.
    std::thread::sleep(Duration::from_millis(1500));
    // The shell's own `kill` (a machine may have no `kill` program).
    let status = Command::new("sh")
        .args(["-c", &format!("kill {signal} {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for client in clients {
        answered.extend(client.join().unwrap());
    }
    let records = reader.join().unwrap();
    let missing = answered.iter().filter(|id| !records.contains(*id)).count();
    assert!(
        answered.len() > 50,
        "{mode}: only {} decisions answered",
        answered.len()
    );
    (answered.len(), missing, exit.code())
}

#[test]
fn sigterm_under_load_writes_every_answered_decision() {
    // `no-drop`: no record is dropped while the queue is full, so every answered decision's
    // record is either written or still queued when the signal comes.
    let (answered, missing, code) = stop_under_load("no-drop", "-TERM");
    assert_eq!(
        missing, 0,
        "{missing} of {answered} answered decisions have no record"
    );
    assert_eq!(code, Some(0), "a SIGTERM is a clean exit");
}

#[test]
fn committed_records_survive_sigkill() {
    let (answered, missing, code) = stop_under_load("committed", "-KILL");
    assert_eq!(
        missing, 0,
        "{missing} of {answered} answered decisions have no record"
    );
    assert_eq!(code, None, "killed by the signal");
}
