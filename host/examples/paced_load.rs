//! A fixed-rate (open-loop) HTTP load generator for `scripts/bench-http.sh`: what `wrk2` does,
//! which Debian's `wrk` cannot (it sends the next request when the last answer arrives, so it
//! measures a machine at full load, never at a given rate).
//!
//! Requests go out on a schedule — request `k` at `k / rate` seconds, spread round-robin over
//! keep-alive connections — and each latency is measured from the request's *scheduled* time, so
//! a stalled server is charged for the requests it delayed (no coordinated omission). Every
//! request is the same POST; any answer other than `200` counts as an error.
//!
//! ```text
//! cargo run --profile bench -p portcullis --example paced_load -- \
//!     ADDR PATH BODY_FILE RATE SECONDS CONNECTIONS
//! ```
//! prints the achieved rate, errors, and p50/p90/p99/p99.9/max latency.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Read one HTTP/1.1 response (headers and a `Content-Length` body); returns its status.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).expect("headers are ASCII");
    let status: u16 = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a content-length");
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    status
}

/// One connection's share of the schedule: requests `first`, `first + step`, ... below
/// `count`, request `k` due at `start + k * interval`. Returns each request's latency (µs, from
/// its due time) and the number of answers other than 200.
fn connection(
    addr: &str,
    request: &[u8],
    start: Instant,
    interval: Duration,
    (first, step, count): (u32, u32, u32),
) -> (Vec<u32>, u32) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(8192);
    let (mut latencies, mut errors) = (Vec::with_capacity((count / step) as usize + 1), 0);
    let mut k = first;
    while k < count {
        let due = start + interval * k;
        // A thread's sleep is precise to tens of microseconds; an async runtime's timer wheel
        // would round every send to the next millisecond and charge that to the server.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        stream.write_all(request).expect("write");
        if read_response(&mut stream, &mut buf) != 200 {
            errors += 1;
        }
        latencies.push(u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX));
        k += step;
    }
    (latencies, errors)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, body_file, rate, seconds, connections] = &args[..] else {
        panic!("usage: paced_load ADDR PATH BODY_FILE RATE SECONDS CONNECTIONS");
    };
    let body = std::fs::read(body_file).expect("the body file");
    let rate: u32 = rate.parse().expect("RATE: requests per second");
    let seconds: u32 = seconds.parse().expect("SECONDS");
    let connections: u32 = connections.parse().expect("CONNECTIONS");
    let count = rate * seconds;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    // One blocking thread per connection, each asleep until its next request is due.
    let started = Instant::now();
    let start = started + Duration::from_millis(100);
    let interval = Duration::from_secs(1) / rate;
    let (mut latencies, errors) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..connections)
            .map(|c| {
                let (addr, request) = (addr.as_str(), request.as_slice());
                scope.spawn(move || {
                    connection(addr, request, start, interval, (c, connections, count))
                })
            })
            .collect();
        let (mut all, mut errors) = (Vec::with_capacity(count as usize), 0);
        for thread in threads {
            let (l, e) = thread.join().expect("a connection thread");
            all.extend(l);
            errors += e;
        }
        (all, errors)
    });
    let elapsed = started.elapsed().as_secs_f64() - 0.1;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i]) / 1000.0
    };
    println!(
        "target {rate}/s over {connections} connections for {seconds} s: {} requests in {elapsed:.2} s \
         ({:.0}/s), {errors} not 200",
        latencies.len(),
        latencies.len() as f64 / elapsed
    );
    println!(
        "latency from scheduled send (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}
