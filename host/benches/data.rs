//! Writes to the tenants' stored data, through the real `portcullis serve` binary:
//!
//! 1. **Write throughput.** Single-entity `PUT`s a second and entities a second of NDJSON
//!    imports, through the service's write API over HTTP (bearer token verified, the call
//!    authorized by the engine, the entity checked against the schema and the tenant's data,
//!    committed, published to every engine instance, audited), against two floors measured in
//!    the same run on the same disk or database: the store's own commit
//!    ([`portcullis::store::Store::commit`], no HTTP, no authorization, no engine) and the
//!    database's own durable insert (SQLite: one `INSERT` a transaction with the store's
//!    settings, WAL and `synchronous=FULL`; PostgreSQL: one `INSERT` a transaction). The sides
//!    alternate in rounds; each ratio is the median of the per-round ratios.
//! 2. **Write → enforced delay.** The time from a write's acknowledgement to a decision that
//!    reflects it. One replica: the write is published to every engine instance before it is
//!    acknowledged, so the first decision sent after the acknowledgement must reflect it (the
//!    delay is 0; checked for every write). Two replicas on one PostgreSQL database: written
//!    through the first, decided by the second, which learns of the write by polling the store
//!    every `--data-poll-ms`; decisions are sent back to back from the acknowledgement until
//!    one reflects the write, and the delay is when that one was sent.
//!
//! Tokens are real: signed with the TechFin pack's development keys (an Entra back-office
//! application with the `DataWriter` role writes; an Entra finance analyst asks the
//! decisions), as in `host/tests/data.rs`. Each tenant holds 1,000 reports before timing, so
//! a write is checked against, and published with, a tenant of realistic size.
//!
//! Run: `scripts/bench-data.sh` (builds the release binary, starts a throwaway PostgreSQL,
//! runs this and stops it), or `cargo bench -p portcullis --bench data` with
//! `PORTCULLIS_BENCH_POSTGRES=<url>` for the PostgreSQL parts and `PORTCULLIS_BIN=<path>` for
//! another build of the binary (default: the one cargo builds for this benchmark).
//! `BENCH_QUICK=1` for a short run. The results also go to `target/data-writes.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{agent, send, techfin_storing_reports, token_of};
use portcullis::store::{self, EntityKey, Write};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Reports each tenant holds before timing.
const TENANT_SIZE: usize = 1_000;

struct Plan {
    rounds: usize,
    puts: usize,
    imports: usize,
    import_size: usize,
    delays: usize,
}

impl Plan {
    fn from_env() -> Self {
        if std::env::var_os("BENCH_QUICK").is_some_and(|v| v == "1") {
            Self {
                rounds: 3,
                puts: 30,
                imports: 1,
                import_size: 1_000,
                delays: 100,
            }
        } else {
            Self {
                rounds: 7,
                puts: 100,
                imports: 2,
                import_size: 1_000,
                delays: 200,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service, as a process.

/// A `portcullis serve` process on a free loopback port, killed when dropped.
struct Service {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_portcullis")),
        PathBuf::from,
    )
}

impl Service {
    fn start(bundle: &Path, store: &str, poll_ms: u64, audit: &Path) -> Self {
        let port = free_port();
        let child = Command::new(binary())
            .arg("serve")
            .arg("--bundle")
            .arg(bundle)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--store", store])
            .args(["--data-poll-ms", &poll_ms.to_string()])
            .arg("--audit-log")
            .arg(audit)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let agent = agent();
        loop {
            let ready = agent
                .get(format!("{}/readyz", service.base))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return service;
            }
            assert!(Instant::now() < deadline, "the service did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The calls the benchmark makes, with their tokens.
struct Client {
    agent: ureq::Agent,
    writer: String,
    analyst: String,
}

impl Client {
    fn new(bundle: &Path) -> Self {
        let writer = token_of(
            bundle,
            "acme",
            json!({
                "oid": "b0ff1ce0-0000-4000-8000-000000000001",
                "sub": "b0ff1ce0-0000-4000-8000-000000000001",
                "azp": "backoffice-app", "idtyp": "app", "roles": ["DataWriter"]
            }),
        );
        let analyst = token_of(
            bundle,
            "acme",
            json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance"}),
        );
        Self {
            agent: agent(),
            writer: format!("Bearer {writer}"),
            analyst,
        }
    }

    /// `PUT` report `acme/<id>` in `department`: its revision.
    fn put(&self, base: &str, id: &str, department: &str) -> u64 {
        let (status, _, body) = send(
            &self.agent,
            "PUT",
            &format!("{base}/v1/data/acme/entities/Report/{id}"),
            &[
                ("authorization", self.writer.as_str()),
                ("content-type", "application/json"),
            ],
            json!({"attrs": {"department": department}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        revision_of(&body)
    }

    /// Import `lines` (NDJSON): the revision.
    fn import(&self, base: &str, lines: &str) -> u64 {
        let (status, _, body) = send(
            &self.agent,
            "POST",
            &format!("{base}/v1/data/acme/import"),
            &[("authorization", self.writer.as_str())],
            lines.as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        revision_of(&body)
    }

    /// The analyst's decision on viewing `acme/<id>`: allowed, and the data revision.
    fn view(&self, base: &str, id: &str) -> (bool, u64) {
        let body = json!({
            "token": self.analyst, "action": "view",
            "resource": {"type": "Report", "id": format!("acme/{id}")},
        });
        let (status, _, text) = send(
            &self.agent,
            "POST",
            &format!("{base}/v1/decide"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
        let decision: Value = serde_json::from_str(&text).unwrap();
        (
            decision["decision"] == "allow",
            decision["data_revision"].as_u64().unwrap(),
        )
    }
}

fn revision_of(body: &str) -> u64 {
    serde_json::from_str::<Value>(body).unwrap()["revision"]
        .as_u64()
        .unwrap()
}

/// NDJSON of reports `acme/<prefix><n>` for `n` in `range`, in `department`.
fn ndjson(prefix: &str, range: std::ops::Range<usize>, department: &str) -> String {
    range
        .map(|n| {
            json!({"uid": {"type": "Report", "id": format!("acme/{prefix}{n}")},
                   "attrs": {"department": department}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The canonical text the service stores for report `acme/<id>`.
fn stored_text(id: &str, department: &str) -> String {
    json!({"uid": {"type": "Report", "id": format!("acme/{id}")},
           "attrs": {"department": department, "tenant": "acme"}, "parents": []})
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Floors.

/// One of the database's own durable inserts a transaction, with the store's settings.
trait Bare {
    /// Insert `rows` rows in one transaction.
    fn insert(&mut self, rows: &[(String, String)]);
}

struct BareSqlite(rusqlite::Connection);

impl BareSqlite {
    fn open(path: &Path) -> Self {
        let connection = rusqlite::Connection::open(path).unwrap();
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        connection
            .pragma_update(None, "synchronous", "FULL")
            .unwrap();
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS bare (id TEXT NOT NULL PRIMARY KEY, json TEXT NOT NULL) \
                 WITHOUT ROWID",
            )
            .unwrap();
        Self(connection)
    }
}

impl Bare for BareSqlite {
    fn insert(&mut self, rows: &[(String, String)]) {
        let tx = self.0.transaction().unwrap();
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT INTO bare (id, json) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                )
                .unwrap();
            for (id, json) in rows {
                statement.execute([id, json]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

struct BarePostgres(postgres::Client);

impl BarePostgres {
    fn connect(url: &str) -> Self {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS bare (id TEXT NOT NULL PRIMARY KEY, json TEXT NOT NULL)",
            )
            .unwrap();
        Self(client)
    }
}

impl Bare for BarePostgres {
    fn insert(&mut self, rows: &[(String, String)]) {
        let mut tx = self.0.transaction().unwrap();
        let statement = tx
            .prepare(
                "INSERT INTO bare (id, json) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
            )
            .unwrap();
        for (id, json) in rows {
            tx.execute(&statement, &[id, json]).unwrap();
        }
        tx.commit().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput.

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[at]
}

/// Per-round rates (operations a second) of each side.
#[derive(Default)]
struct Rates {
    service: Vec<f64>,
    store: Vec<f64>,
    bare: Vec<f64>,
}

impl Rates {
    fn json(&self) -> Value {
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
        json!({
            "service": median(self.service.clone()),
            "store": median(self.store.clone()),
            "bare": median(self.bare.clone()),
            "service_over_store": ratio(&self.service, &self.store),
            "service_over_bare": ratio(&self.service, &self.bare),
            "store_over_bare": ratio(&self.store, &self.bare),
            "rounds": self.service.len(),
        })
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Throughput on one kind of store: `spec` for the service, `floor_store` for the store's own
/// commits (another database of the same kind, on the same disk or server), `bare` the
/// database's own inserts.
fn throughput(
    plan: &Plan,
    name: &str,
    bundle: &Path,
    spec: &str,
    floor_store: &str,
    bare: &mut dyn Bare,
) -> Value {
    let audit = bundle.join(format!("audit-{name}.jsonl"));
    let service = Service::start(bundle, spec, 500, &audit);
    let client = Client::new(bundle);
    let floor = store::open(floor_store).unwrap();
    // Each tenant holds TENANT_SIZE reports first.
    client.import(&service.base, &ndjson("base", 0..TENANT_SIZE, "sales"));
    let base: Vec<Write> = (0..TENANT_SIZE)
        .map(|n| {
            let id = format!("base{n}");
            Write::put(
                EntityKey::new("Report", format!("acme/{id}")),
                stored_text(&id, "sales"),
            )
        })
        .collect();
    let mut revision = floor.revision("acme").unwrap();
    revision = floor.commit("acme", revision, &base, "bench", 0).unwrap();

    let (mut puts, mut imports) = (Rates::default(), Rates::default());
    let mut put_latency = Vec::new();
    for round in 0..plan.rounds {
        let department = if round % 2 == 0 { "finance" } else { "risk" };
        // Each side in turn, the order alternating by round.
        let mut sides: Vec<u8> = vec![0, 1, 2];
        if round % 2 == 1 {
            sides.reverse();
        }
        for side in sides {
            match side {
                0 => {
                    let started = Instant::now();
                    for n in 0..plan.puts {
                        let at = Instant::now();
                        client.put(&service.base, &format!("p{n}"), department);
                        put_latency.push(at.elapsed().as_secs_f64() * 1e3);
                    }
                    puts.service.push(rate(plan.puts, started.elapsed()));
                    let started = Instant::now();
                    for i in 0..plan.imports {
                        let lines = ndjson(&format!("i{i}-"), 0..plan.import_size, department);
                        client.import(&service.base, &lines);
                    }
                    imports
                        .service
                        .push(rate(plan.imports * plan.import_size, started.elapsed()));
                }
                1 => {
                    let started = Instant::now();
                    for n in 0..plan.puts {
                        let id = format!("p{n}");
                        let write = Write::put(
                            EntityKey::new("Report", format!("acme/{id}")),
                            stored_text(&id, department),
                        );
                        revision = floor
                            .commit("acme", revision, &[write], "bench", 0)
                            .unwrap();
                    }
                    puts.store.push(rate(plan.puts, started.elapsed()));
                    let started = Instant::now();
                    for i in 0..plan.imports {
                        let writes: Vec<Write> = (0..plan.import_size)
                            .map(|n| {
                                let id = format!("i{i}-{n}");
                                Write::put(
                                    EntityKey::new("Report", format!("acme/{id}")),
                                    stored_text(&id, department),
                                )
                            })
                            .collect();
                        revision = floor.commit("acme", revision, &writes, "bench", 0).unwrap();
                    }
                    imports
                        .store
                        .push(rate(plan.imports * plan.import_size, started.elapsed()));
                }
                _ => {
                    let started = Instant::now();
                    for n in 0..plan.puts {
                        let id = format!("p{n}");
                        bare.insert(&[(id.clone(), stored_text(&id, department))]);
                    }
                    puts.bare.push(rate(plan.puts, started.elapsed()));
                    let started = Instant::now();
                    for i in 0..plan.imports {
                        let rows: Vec<(String, String)> = (0..plan.import_size)
                            .map(|n| {
                                let id = format!("i{i}-{n}");
                                let text = stored_text(&id, department);
                                (id, text)
                            })
                            .collect();
                        bare.insert(&rows);
                    }
                    imports
                        .bare
                        .push(rate(plan.imports * plan.import_size, started.elapsed()));
                }
            }
        }
        eprintln!(
            "  {name} round {}: PUT/s service {:.0}, store {:.0}, bare {:.0}; import entities/s \
             service {:.0}, store {:.0}, bare {:.0}",
            round + 1,
            puts.service[round],
            puts.store[round],
            puts.bare[round],
            imports.service[round],
            imports.store[round],
            imports.bare[round],
        );
    }
    let _ = std::fs::remove_file(&audit);
    json!({
        "puts": puts.json(),
        "imports": imports.json(),
        "import_size": plan.import_size,
        "tenant_size": TENANT_SIZE,
        "put_latency_ms": {
            "p50": percentile(&put_latency, 0.5),
            "p99": percentile(&put_latency, 0.99),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Write → enforced delay.

/// For each of `count` writes through `writer` (a new report in finance, which the analyst
/// may then view): the time from its acknowledgement to the sending of the first decision by
/// `decider` that reflects it (allowed, at the write's revision or later), in ms, and how many
/// decisions were sent until then.
fn delays(client: &Client, writer: &str, decider: &str, count: usize, tag: &str) -> Value {
    let mut delay_ms = Vec::with_capacity(count);
    let mut decision_ms = Vec::with_capacity(count);
    let mut first_reflects = 0;
    for n in 0..count {
        let id = format!("{tag}{n}");
        assert!(!client.view(decider, &id).0, "not stored yet: denied");
        let revision = client.put(writer, &id, "finance");
        let acknowledged = Instant::now();
        let mut tries = 0;
        loop {
            let sent = Instant::now();
            let (allowed, at) = client.view(decider, &id);
            tries += 1;
            if allowed && at >= revision {
                let delay = if tries == 1 {
                    0.0
                } else {
                    sent.duration_since(acknowledged).as_secs_f64() * 1e3
                };
                delay_ms.push(delay);
                decision_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                first_reflects += usize::from(tries == 1);
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(30),
                "write {id} (revision {revision}) not enforced after 30 s"
            );
        }
    }
    json!({
        "writes": count,
        "first_decision_reflects": first_reflects,
        "delay_ms": {
            "p50": percentile(&delay_ms, 0.5),
            "p99": percentile(&delay_ms, 0.99),
            "max": percentile(&delay_ms, 1.0),
        },
        "reflecting_decision_ms": {
            "p50": percentile(&decision_ms, 0.5),
            "p99": percentile(&decision_ms, 0.99),
        },
    })
}

/// A PostgreSQL URL whose tables go to a schema of their own (created now).
fn postgres_schema(url: &str, schema: &str) -> String {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) only checks that
    // this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let plan = Plan::from_env();
    let bundle = techfin_storing_reports("bench-data");
    let dir = bundle.join("stores");
    std::fs::create_dir_all(&dir).unwrap();
    let postgres = std::env::var("PORTCULLIS_BENCH_POSTGRES").ok();
    eprintln!("binary: {}", binary().display());
    let mut report = serde_json::Map::new();

    eprintln!(
        "throughput, SQLite (WAL, synchronous=FULL) in {}",
        dir.display()
    );
    let mut bare = BareSqlite::open(&dir.join("bare.db"));
    report.insert(
        "sqlite".into(),
        throughput(
            &plan,
            "sqlite",
            &bundle,
            &format!("sqlite:{}", dir.join("service.db").display()),
            &format!("sqlite:{}", dir.join("floor.db").display()),
            &mut bare,
        ),
    );
    if let Some(url) = &postgres {
        eprintln!("throughput, PostgreSQL");
        let mut bare = BarePostgres::connect(&postgres_schema(url, "bench_bare"));
        report.insert(
            "postgres".into(),
            throughput(
                &plan,
                "postgres",
                &bundle,
                &postgres_schema(url, "bench_service"),
                &postgres_schema(url, "bench_floor"),
                &mut bare,
            ),
        );
    }

    eprintln!("write → enforced delay, one replica (SQLite)");
    let client = Client::new(&bundle);
    {
        let audit = bundle.join("audit-delay.jsonl");
        let store = format!("sqlite:{}", dir.join("delay.db").display());
        let one = Service::start(&bundle, &store, 500, &audit);
        client.import(&one.base, &ndjson("base", 0..TENANT_SIZE, "sales"));
        report.insert(
            "delay_one_replica".into(),
            delays(&client, &one.base, &one.base, plan.delays, "d"),
        );
    }
    if let Some(url) = &postgres {
        for poll_ms in [500, 100] {
            eprintln!(
                "write → enforced delay, two replicas on one PostgreSQL, --data-poll-ms {poll_ms}"
            );
            let store = postgres_schema(url, &format!("bench_replicas_{poll_ms}"));
            let audit = |n: u8| bundle.join(format!("audit-replica{n}-{poll_ms}.jsonl"));
            let first = Service::start(&bundle, &store, poll_ms, &audit(1));
            let second = Service::start(&bundle, &store, poll_ms, &audit(2));
            client.import(&first.base, &ndjson("base", 0..TENANT_SIZE, "sales"));
            // The second replica has caught up with the import before timing.
            let deadline = Instant::now() + Duration::from_secs(30);
            while client.view(&second.base, "x").1 < client.view(&first.base, "x").1 {
                assert!(
                    Instant::now() < deadline,
                    "the second replica never caught up"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut result = delays(&client, &first.base, &second.base, plan.delays, "r");
            result["poll_ms"] = poll_ms.into();
            report.insert(format!("delay_two_replicas_{poll_ms}ms"), result);
        }
    }
    let report = Value::Object(report);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/data-writes.json");
    let _ = std::fs::write(&out, report.to_string());
    let _ = std::fs::remove_dir_all(&bundle);
}
