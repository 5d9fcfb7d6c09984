//! Abuse of the decision service over loopback: oversized and large batches, slow headers and
//! 2,000 idle connections while a normal client's decisions must stay fast, and the connection
//! cap. A test binary of its own, its tests one at a time, so that the latency it asserts is
//! not the other suites' load on a two-core machine.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{agent, analyst_token, techfin, view_request};
use portcullis::service::{AuditTarget, BundleSource, Options, Server};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Held by each test: they measure, so they never run together.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A service without an admin listener, configured by `configure`.
fn start(configure: impl FnOnce(&mut Options)) -> (tokio::runtime::Runtime, Server) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut options = Options::new(
        BundleSource::Path(techfin()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit.target = AuditTarget::Off;
    options.data = Some(common::seeded_store("abuse", &techfin()));
    configure(&mut options);
    let server = runtime.block_on(Server::start(options)).unwrap();
    (runtime, server)
}

/// One raw HTTP exchange on a fresh connection: the status code (0 when refused or closed).
fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    if stream.write_all(request).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[test]
fn decisions_and_probes_keep_answering_under_abuse() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_runtime, server) = start(|_| {});
    let addr = server.addr();
    let base = format!("http://{addr}");
    let token = analyst_token(&techfin());
    let stop = Arc::new(AtomicBool::new(false));

    // 2,000 idle connections, and 50 that send their headers a byte a second.
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    return;
                };
                for byte in b"POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nx-slow: "
                    .iter()
                    .cycle()
                {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();

    // Four batch clients: two send batches over every limit (1,001 items; 2 MiB), two send
    // batches of 1,000 real decisions.
    let oversized = format!("[{}]", vec!["{}"; 1001].join(","));
    let huge = vec![b' '; 2 << 20];
    let legal = format!("[{}]", vec![view_request(&token); 1000].join(","));
    let (refused, decided) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let batchers: Vec<_> = (0..4)
        .map(|n| {
            let (stop, base) = (Arc::clone(&stop), base.clone());
            let body = match n {
                0 => oversized.clone().into_bytes(),
                1 => huge.clone(),
                _ => legal.clone().into_bytes(),
            };
            let (refused, decided) = (Arc::clone(&refused), Arc::clone(&decided));
            std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::Relaxed) {
                    let status = agent
                        .post(&format!("{base}/v1/decide/batch"))
                        .send(&body[..])
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    match status {
                        413 => refused.fetch_add(1, Ordering::Relaxed),
                        200 => decided.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // A normal client meanwhile: each decision timed, and a probe between them.
    let agent = agent();
    let body = view_request(&token);
    let mut latencies = Vec::new();
    let (mut probes, mut slowest_probe) = (0, Duration::ZERO);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let start = Instant::now();
        let mut response = agent
            .post(&format!("{base}/v1/decide"))
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let decision: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(decision["decision"], "allow");
        latencies.push(start.elapsed());
        // A probe on a new connection, as Kubernetes sends them.
        let probe_start = Instant::now();
        let probe = raw_status(
            addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(probe, 200, "/healthz");
        slowest_probe = slowest_probe.max(probe_start.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for t in batchers.into_iter().chain(slow) {
        t.join().unwrap();
    }
    drop(idle);
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let p50 = latencies[latencies.len() / 2];
    println!(
        "{} decisions: p50 {p50:?}, p99 {p99:?}; {probes} probes, slowest {slowest_probe:?}; \
         {} batches refused (413), {} decided",
        latencies.len(),
        refused.load(Ordering::Relaxed),
        decided.load(Ordering::Relaxed)
    );
    assert!(latencies.len() >= 50, "only {} decisions", latencies.len());
    // The review measured 0.7–1.2 s per decision and 3.7 s per probe under this load.
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(
        slowest_probe < Duration::from_millis(500),
        "probe {slowest_probe:?}"
    );
    assert!(refused.load(Ordering::Relaxed) > 0 && decided.load(Ordering::Relaxed) > 0);
}

#[test]
fn at_the_connection_cap_idle_connections_make_room() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (runtime, server) = start(|options| {
        options.connections.max_connections = 100;
        options.connections.header_timeout = Duration::from_millis(500);
    });
    let addr = server.addr();
    // 300 half-open connections: the cap is 100, so older ones are closed as new ones come.
    let mut idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    for stream in &mut idle {
        let _ = stream.write_all(b"GET /heal");
    }
    // A probe still gets in, at once.
    let start = Instant::now();
    assert_eq!(
        raw_status(
            addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        ),
        200
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Slow headers are cut off after the header timeout.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = server.metrics().render();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(
        value("portcullis_connections_closed_idle_total") >= 200,
        "{metrics}"
    );
    assert!(
        value("portcullis_connections_closed_slow_total") >= 1,
        "{metrics}"
    );
    assert!(value("portcullis_connections_open") <= 100, "{metrics}");
    drop(idle);
    runtime.block_on(server.shutdown()).unwrap();
}
