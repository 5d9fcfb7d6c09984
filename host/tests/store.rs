//! The authorization data store (`portcullis::store`) against real databases: one suite of
//! tests, each run against SQLite (module `sqlite`) and against PostgreSQL (module
//! `postgres`), plus what only one backend has (SQLite's file permissions and its durability
//! under `kill -9`, PostgreSQL's reconnection).
//!
//! PostgreSQL: `PORTCULLIS_TEST_POSTGRES` is a URL (`scripts/postgres.sh start` prints one;
//! `scripts/test.sh` sets it). Each test gets its own schema in that database, so tests run in
//! parallel and leave nothing behind. Without the URL the PostgreSQL tests fail, unless
//! `PORTCULLIS_SKIP_POSTGRES=1` says to skip them (each then prints that it was skipped).

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::store::{
    self, Change, EntityKey, MAX_ENTITY_BYTES, MAX_WRITES, Store, StoreError, Write,
};
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

/// A fresh, empty store for one test, removed when the test ends.
struct Fixture {
    /// What [`store::open`] takes.
    spec: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Schema { url: String, schema: String },
}

impl Fixture {
    fn open(&self) -> Box<dyn Store> {
        store::open(&self.spec).unwrap_or_else(|e| panic!("opening the test store: {e}"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { url, schema } => {
                if let Ok(mut admin) = ::postgres::Client::connect(url, ::postgres::NoTls) {
                    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}

static FIXTURES: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (in this process or another) uses.
fn unique(name: &str) -> String {
    let n = FIXTURES.fetch_add(1, Ordering::Relaxed);
    format!("{name}_{}_{n}", std::process::id())
}

fn sqlite_fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portcullis-store-{}", unique(name)));
    std::fs::create_dir_all(&dir).unwrap();
    Fixture {
        spec: format!("sqlite:{}", dir.join("data.db").display()),
        cleanup: Cleanup::Dir(dir),
    }
}

/// `None` (after saying so) when PostgreSQL tests are to be skipped; a failure when they may
/// not be.
fn postgres_fixture(name: &str) -> Option<Fixture> {
    let Ok(url) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
        if std::env::var("PORTCULLIS_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("SKIPPED {name} on PostgreSQL: PORTCULLIS_TEST_POSTGRES is not set");
            return None;
        }
        panic!(
            "PORTCULLIS_TEST_POSTGRES is not set: give it a PostgreSQL URL (`scripts/postgres.sh \
             start` starts a throwaway cluster and prints one), or set PORTCULLIS_SKIP_POSTGRES=1 \
             to skip the PostgreSQL tests"
        );
    };
    // Schemas are case-folded identifiers of at most 63 bytes.
    let mut schema = format!("t_{}", unique(name)).to_lowercase();
    schema.truncate(63);
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to PORTCULLIS_TEST_POSTGRES: {e}"));
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(Fixture {
        spec: format!("{url}{sep}options=-c%20search_path%3D{schema}&application_name={schema}"),
        cleanup: Cleanup::Schema { url, schema },
    })
}

/// Runs each test function against both backends: `sqlite::name` and `postgres::name`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::sqlite_fixture(stringify!($name))); })*
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(fixture) = super::postgres_fixture(stringify!($name)) {
                    super::$name(&fixture);
                }
            })*
        }
    };
}

both_backends!(
    put_get_list_delete,
    revisions_and_change_log,
    change_pages_hold_whole_commits,
    stale_base_conflicts,
    snapshots_are_consistent,
    tenants_are_isolated,
    oversize_and_malformed_commits_are_refused,
    replicas_see_each_other_and_conflict,
    concurrent_writers_serialize,
    compaction_and_too_old,
    data_survives_reopening,
);

const T: i64 = 1_700_000_000;

fn key(ty: &str, id: &str) -> EntityKey {
    EntityKey::new(ty, id)
}

/// Cedar entity JSON for `ty::"id"` with one attribute.
fn json(ty: &str, id: &str, value: &str) -> String {
    format!(r#"{{"uid":{{"type":"{ty}","id":"{id}"}},"attrs":{{"v":"{value}"}},"parents":[]}}"#)
}

fn put(ty: &str, id: &str, value: &str) -> Write {
    Write::put(key(ty, id), json(ty, id, value))
}

/// Every page of `list`, `limit` at a time.
fn all_pages(
    store: &dyn Store,
    tenant: &str,
    ty: Option<&str>,
    limit: usize,
) -> Vec<Vec<(EntityKey, String)>> {
    let mut pages = Vec::new();
    let mut after: Option<EntityKey> = None;
    loop {
        let page = store.list(tenant, ty, after.as_ref(), limit).unwrap();
        let Some((last, _)) = page.last() else {
            return pages;
        };
        after = Some(last.clone());
        pages.push(page);
    }
}

fn keys(entities: &[(EntityKey, String)]) -> Vec<String> {
    entities.iter().map(|(k, _)| k.to_string()).collect()
}

fn put_get_list_delete(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    assert_eq!(s.get("acme", &key("Report", "q3")).unwrap(), None);
    // Byte order, whatever the database's locale: upper case before lower case before
    // non-ASCII.
    let writes = vec![
        put("Report", "q3", "risk"),
        put("Report", "B", "x"),
        put("Report", "a", "x"),
        put("Report", "é", "x"),
        put("Report", "Z", "x"),
        put("Department", "risk", "d"),
        put("User", "alice", "u"),
        put("User", "", "empty id"),
    ];
    assert_eq!(s.commit("acme", 0, &writes, "admin", T).unwrap(), 1);
    assert_eq!(
        s.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "risk"))
    );
    assert_eq!(
        s.get("acme", &key("User", "")).unwrap(),
        Some(json("User", "", "empty id"))
    );
    assert_eq!(s.get("acme", &key("Report", "q4")).unwrap(), None);
    assert_eq!(s.get("acme", &key("Folder", "q3")).unwrap(), None);

    let everything = r#"Department::"risk" Report::"B" Report::"Z" Report::"a" Report::"q3" Report::"é" User::"" User::"alice""#;
    let whole = s.list("acme", None, None, 100).unwrap();
    assert_eq!(keys(&whole).join(" "), everything);
    assert_eq!(whole[0].1, json("Department", "risk", "d"));
    // Keyset paging: pages of 3 cover everything once, in order.
    let pages = all_pages(s, "acme", None, 3);
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    assert_eq!(pages.concat(), whole);
    // One type.
    let reports = all_pages(s, "acme", Some("Report"), 2).concat();
    assert_eq!(
        keys(&reports).join(" "),
        r#"Report::"B" Report::"Z" Report::"a" Report::"q3" Report::"é""#
    );
    // `after` a key of another type: the filter still holds; before the type, from its start.
    let after_users = s
        .list("acme", Some("Report"), Some(&key("User", "")), 10)
        .unwrap();
    assert!(after_users.is_empty());
    let after_dept = s
        .list("acme", Some("Report"), Some(&key("Department", "zzz")), 1)
        .unwrap();
    assert_eq!(keys(&after_dept), vec![r#"Report::"B""#]);
    // `after` a key that does not exist: from the next one.
    let after_missing = s.list("acme", None, Some(&key("Report", "b")), 2).unwrap();
    assert_eq!(
        keys(&after_missing),
        vec![r#"Report::"q3""#, r#"Report::"é""#]
    );
    assert!(s.list("acme", None, None, 0).unwrap().is_empty());
    assert!(s.list("acme", Some("Folder"), None, 10).unwrap().is_empty());

    // Replace and delete in one commit.
    let writes = vec![
        put("Report", "q3", "finance"),
        Write::delete(key("Report", "B")),
    ];
    assert_eq!(s.commit("acme", 1, &writes, "admin", T).unwrap(), 2);
    assert_eq!(
        s.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "finance"))
    );
    assert_eq!(s.get("acme", &key("Report", "B")).unwrap(), None);
    assert_eq!(s.list("acme", None, None, 100).unwrap().len(), 7);
}

fn revisions_and_change_log(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    assert_eq!(s.revision("acme").unwrap(), 0);
    assert!(s.changes_since("acme", 0, 100).unwrap().is_empty());
    assert!(s.tenants().unwrap().is_empty());

    let r1 = s
        .commit(
            "acme",
            0,
            &[put("Report", "q3", "risk"), put("User", "alice", "a")],
            "alice@acme",
            T,
        )
        .unwrap();
    assert_eq!((r1, s.revision("acme").unwrap()), (1, 1));
    let r2 = s
        .commit(
            "acme",
            1,
            &[
                put("Report", "q3", "finance"),
                Write::delete(key("User", "alice")),
            ],
            "bob@acme",
            T + 60,
        )
        .unwrap();
    // The same text again, and the deletion of what does not exist: both still count.
    let r3 = s
        .commit(
            "acme",
            2,
            &[
                put("Report", "q3", "finance"),
                Write::delete(key("User", "nobody")),
            ],
            "carol@acme",
            T + 120,
        )
        .unwrap();
    assert_eq!((r2, r3, s.revision("acme").unwrap()), (2, 3, 3));
    assert_eq!(s.tenants().unwrap(), vec![("acme".to_string(), 3)]);

    let change = |revision,
                  k: EntityKey,
                  before: Option<String>,
                  after: Option<String>,
                  actor: &str,
                  time| Change {
        revision,
        key: k,
        before,
        after,
        actor: actor.into(),
        time,
    };
    let expected = vec![
        change(
            1,
            key("Report", "q3"),
            None,
            Some(json("Report", "q3", "risk")),
            "alice@acme",
            T,
        ),
        change(
            1,
            key("User", "alice"),
            None,
            Some(json("User", "alice", "a")),
            "alice@acme",
            T,
        ),
        change(
            2,
            key("Report", "q3"),
            Some(json("Report", "q3", "risk")),
            Some(json("Report", "q3", "finance")),
            "bob@acme",
            T + 60,
        ),
        change(
            2,
            key("User", "alice"),
            Some(json("User", "alice", "a")),
            None,
            "bob@acme",
            T + 60,
        ),
        change(
            3,
            key("Report", "q3"),
            Some(json("Report", "q3", "finance")),
            Some(json("Report", "q3", "finance")),
            "carol@acme",
            T + 120,
        ),
        change(3, key("User", "nobody"), None, None, "carol@acme", T + 120),
    ];
    assert_eq!(s.changes_since("acme", 0, 100).unwrap(), expected);
    assert_eq!(s.changes_since("acme", 1, 100).unwrap(), expected[2..]);
    assert_eq!(s.changes_since("acme", 2, 100).unwrap(), expected[4..]);
    assert!(s.changes_since("acme", 3, 100).unwrap().is_empty());
    // Ahead of the tenant: nothing (the caller compares with `revision`).
    assert!(s.changes_since("acme", 99, 100).unwrap().is_empty());
    assert!(s.changes_since("acme", u64::MAX, 100).unwrap().is_empty());
}

fn change_pages_hold_whole_commits(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    // Commits of 1, 3, 1 and 2 writes.
    let sizes = [1usize, 3, 1, 2];
    for (base, n) in (0u64..).zip(sizes) {
        let writes: Vec<Write> = (0..n)
            .map(|i| put("Report", &format!("r{base}-{i}"), "x"))
            .collect();
        s.commit("acme", base, &writes, "a", T).unwrap();
    }
    let revisions = |page: &[Change]| page.iter().map(|c| c.revision).collect::<Vec<_>>();
    // limit 2 from 0: revision 1 (1 change) fits, revision 2 (3 changes) would not.
    assert_eq!(revisions(&s.changes_since("acme", 0, 2).unwrap()), vec![1]);
    // limit 2 from 1: revision 2 alone is over the limit, and comes whole.
    assert_eq!(
        revisions(&s.changes_since("acme", 1, 2).unwrap()),
        vec![2, 2, 2]
    );
    assert_eq!(
        revisions(&s.changes_since("acme", 1, 0).unwrap()),
        vec![2, 2, 2]
    );
    assert_eq!(
        revisions(&s.changes_since("acme", 1, 4).unwrap()),
        vec![2, 2, 2, 3]
    );
    assert_eq!(
        revisions(&s.changes_since("acme", 2, 3).unwrap()),
        vec![3, 4, 4]
    );
    // Following pages from the last revision seen, every change comes once, in order.
    for limit in 0..8 {
        let mut since = 0;
        let mut seen = Vec::new();
        loop {
            let page = s.changes_since("acme", since, limit).unwrap();
            let Some(last) = page.last() else { break };
            since = last.revision;
            seen.extend(page);
        }
        assert_eq!(
            seen,
            s.changes_since("acme", 0, 100).unwrap(),
            "limit {limit}"
        );
    }
}

fn stale_base_conflicts(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    s.commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
        .unwrap();
    for base in [0, 2, 7] {
        let err = s
            .commit("acme", base, &[put("Report", "q3", "stale")], "a", T)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { base: b, current: 1 } if b == base),
            "{err}"
        );
    }
    // Nothing of the refused commits was written.
    assert_eq!(s.revision("acme").unwrap(), 1);
    assert_eq!(
        s.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "risk"))
    );
    assert_eq!(s.changes_since("acme", 0, 100).unwrap().len(), 1);
    // A tenant never written is at 0; a commit from any other base conflicts and creates
    // nothing.
    let err = s
        .commit("globex", 1, &[put("Report", "q3", "x")], "a", T)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                base: 1,
                current: 0
            }
        ),
        "{err}"
    );
    assert_eq!(s.tenants().unwrap(), vec![("acme".to_string(), 1)]);
    assert_eq!(s.revision("globex").unwrap(), 0);
}

fn snapshots_are_consistent(fixture: &Fixture) {
    let writer = fixture.open();
    let reader = fixture.open();
    let commits = 40u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Each commit rewrites the counter and adds one entity: at revision r there are
            // exactly r + 1 entities and the counter says r.
            for base in 0..commits {
                let next = base + 1;
                let writes = [
                    Write::put(key("Counter", "c"), next.to_string()),
                    put("Report", &format!("r{next:04}"), "x"),
                ];
                writer.commit("acme", base, &writes, "w", T).unwrap();
            }
        });
        let mut seen = 0;
        while seen < commits {
            for store in [&*reader, &*writer] {
                let snap = store.snapshot("acme").unwrap();
                if snap.revision == 0 {
                    assert!(snap.entities.is_empty());
                    continue;
                }
                let counter = snap
                    .entities
                    .iter()
                    .find(|(k, _)| k.entity_type == "Counter")
                    .map(|(_, v)| v.clone());
                assert_eq!(counter, Some(snap.revision.to_string()));
                assert_eq!(snap.entities.len() as u64, snap.revision + 1);
                let mut sorted = snap.entities.clone();
                sorted.sort();
                assert_eq!(sorted, snap.entities, "snapshots are ordered by key");
                seen = seen.max(snap.revision);
            }
        }
    });
    let last = reader.snapshot("acme").unwrap();
    assert_eq!(last.revision, commits);
    assert_eq!(
        last.entities,
        reader.list("acme", None, None, 1000).unwrap()
    );
}

fn tenants_are_isolated(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    for base in 0..3 {
        s.commit(
            "acme",
            base,
            &[put("Report", "q3", &format!("acme{base}"))],
            "a",
            T,
        )
        .unwrap();
    }
    // Before globex writes anything: it has nothing, at revision 0.
    assert_eq!(s.revision("globex").unwrap(), 0);
    assert_eq!(s.get("globex", &key("Report", "q3")).unwrap(), None);
    assert!(s.list("globex", None, None, 100).unwrap().is_empty());
    assert!(
        s.list("globex", Some("Report"), None, 100)
            .unwrap()
            .is_empty()
    );
    let snap = s.snapshot("globex").unwrap();
    assert_eq!((snap.revision, snap.entities.len()), (0, 0));
    assert!(s.changes_since("globex", 0, 100).unwrap().is_empty());
    // A tenant whose name is a prefix of another's, or differs in case, is another tenant.
    for other in ["acm", "acme ", "ACME", "acme/"] {
        assert_eq!(s.revision(other).unwrap(), 0, "{other}");
        assert!(s.snapshot(other).unwrap().entities.is_empty(), "{other}");
    }
    // globex's revisions are its own: acme's base does not fit it.
    let err = s
        .commit("globex", 3, &[put("Report", "q3", "globex")], "g", T)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { current: 0, .. }),
        "{err}"
    );
    // The same key in globex is another entity.
    assert_eq!(
        s.commit("globex", 0, &[put("Report", "q3", "globex")], "g", T)
            .unwrap(),
        1
    );
    assert_eq!(
        s.get("globex", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "globex"))
    );
    assert_eq!(
        s.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "acme2"))
    );
    assert_eq!(s.revision("acme").unwrap(), 3);
    let changes = s.changes_since("globex", 0, 100).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].before, None,
        "globex's change shows none of acme's text"
    );
    assert!(
        s.changes_since("acme", 0, 100)
            .unwrap()
            .iter()
            .all(|c| c.actor == "a")
    );
    // Deleting in globex leaves acme's entity.
    s.commit("globex", 1, &[Write::delete(key("Report", "q3"))], "g", T)
        .unwrap();
    assert!(s.get("acme", &key("Report", "q3")).unwrap().is_some());
    assert_eq!(
        s.tenants().unwrap(),
        vec![("acme".to_string(), 3), ("globex".to_string(), 2)]
    );
}

fn oversize_and_malformed_commits_are_refused(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    let at_limit = "x".repeat(MAX_ENTITY_BYTES);
    let over = "x".repeat(MAX_ENTITY_BYTES + 1);
    let err = s
        .commit("acme", 0, &[Write::put(key("Report", "big"), over)], "a", T)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::EntityTooLarge { len, .. } if *len == MAX_ENTITY_BYTES + 1),
        "{err}"
    );
    assert!(err.to_string().contains(r#"Report::"big""#), "{err}");
    let too_many: Vec<Write> = (0..=MAX_WRITES)
        .map(|i| put("Report", &i.to_string(), "x"))
        .collect();
    let err = s.commit("acme", 0, &too_many, "a", T).unwrap_err();
    assert!(
        matches!(err, StoreError::TooManyWrites { count, .. } if count == MAX_WRITES + 1),
        "{err}"
    );
    assert!(matches!(
        s.commit("acme", 0, &[], "a", T),
        Err(StoreError::EmptyCommit)
    ));
    let twice = [put("Report", "q3", "a"), Write::delete(key("Report", "q3"))];
    assert!(matches!(
        s.commit("acme", 0, &twice, "a", T),
        Err(StoreError::DuplicateWrite { .. })
    ));
    for (tenant, write) in [
        ("", put("Report", "q3", "x")),
        ("ac\0me", put("Report", "q3", "x")),
        ("acme", put("Rep\0ort", "q3", "x")),
        ("acme", Write::put(key("Report", "q3"), "{\"a\":\"\0\"}")),
        (
            "acme",
            put(&"R".repeat(store::MAX_NAME_BYTES + 1), "q3", "x"),
        ),
    ] {
        assert!(
            matches!(
                s.commit(tenant, 0, &[write], "a", T),
                Err(StoreError::Invalid { .. })
            ),
            "{tenant:?}"
        );
    }
    assert!(matches!(s.revision(""), Err(StoreError::Invalid { .. })));
    assert_eq!(s.revision("acme").unwrap(), 0, "nothing was written");
    assert!(s.tenants().unwrap().is_empty());

    // At the limits: accepted.
    s.commit(
        "acme",
        0,
        &[Write::put(key("Report", "big"), at_limit.clone())],
        "a",
        T,
    )
    .unwrap();
    assert_eq!(
        s.get("acme", &key("Report", "big")).unwrap(),
        Some(at_limit)
    );
    let most: Vec<Write> = (0..MAX_WRITES)
        .map(|i| put("Report", &format!("{i:05}"), "x"))
        .collect();
    assert_eq!(s.commit("acme", 1, &most, "a", T).unwrap(), 2);
    assert_eq!(s.changes_since("acme", 1, 10).unwrap().len(), MAX_WRITES);
    assert_eq!(s.snapshot("acme").unwrap().entities.len(), MAX_WRITES + 1);
}

fn replicas_see_each_other_and_conflict(fixture: &Fixture) {
    let a = fixture.open();
    let b = fixture.open();
    a.commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
        .unwrap();
    assert_eq!(b.revision("acme").unwrap(), 1);
    assert_eq!(
        b.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "risk"))
    );
    b.commit("acme", 1, &[put("Report", "q3", "finance")], "b", T)
        .unwrap();
    assert_eq!(
        a.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "finance"))
    );
    assert_eq!(a.changes_since("acme", 1, 10).unwrap()[0].actor, "b");
    // Both from the same base at once: one wins, the other conflicts with the winner's
    // revision. A new tenant too (its row does not exist yet).
    for (round, tenant) in (0..8).map(|r| (r, if r % 2 == 0 { "acme" } else { "fresh" })) {
        let base = a.revision(tenant).unwrap();
        let barrier = Barrier::new(2);
        let results: Vec<Result<u64, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = [(&a, "a"), (&b, "b")]
                .into_iter()
                .map(|(store, name)| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        store.commit(
                            tenant,
                            base,
                            &[put("Report", "q3", &format!("{name}{round}"))],
                            name,
                            T,
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for result in &results {
            match result {
                Ok(revision) => assert_eq!(*revision, base + 1),
                Err(StoreError::Conflict { base: b, current }) => {
                    assert_eq!((*b, *current), (base, base + 1));
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(b.revision(tenant).unwrap(), base + 1);
        assert_eq!(a.changes_since(tenant, base, 10).unwrap().len(), 1);
    }
}

fn concurrent_writers_serialize(fixture: &Fixture) {
    let stores: Vec<Box<dyn Store>> = (0..3).map(|_| fixture.open()).collect();
    let per_writer = 12;
    std::thread::scope(|scope| {
        for (w, store) in stores.iter().enumerate() {
            for tenant in ["acme", "globex"] {
                scope.spawn(move || {
                    let mut done = 0;
                    let mut conflicts = 0;
                    while done < per_writer {
                        let base = store.revision(tenant).unwrap();
                        let write = put("Report", &format!("w{w}-{done}"), tenant);
                        match store.commit(tenant, base, &[write], &format!("w{w}"), T) {
                            Ok(revision) => {
                                assert_eq!(revision, base + 1);
                                done += 1;
                            }
                            Err(StoreError::Conflict { current, .. }) => {
                                assert!(current > base);
                                conflicts += 1;
                            }
                            Err(e) => panic!("{e}"),
                        }
                        assert!(conflicts < 10_000, "livelock");
                    }
                });
            }
        }
    });
    let total = (stores.len() * per_writer) as u64;
    for tenant in ["acme", "globex"] {
        assert_eq!(stores[0].revision(tenant).unwrap(), total);
        let changes = stores[1].changes_since(tenant, 0, 1000).unwrap();
        let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
        assert_eq!(revisions, (1..=total).collect::<Vec<_>>(), "{tenant}");
        assert_eq!(
            stores[2].list(tenant, None, None, 1000).unwrap().len() as u64,
            total
        );
    }
}

fn compaction_and_too_old(fixture: &Fixture) {
    let s = fixture.open();
    let s = &*s;
    assert_eq!(
        s.compact("acme", 10).unwrap(),
        0,
        "no tenant, nothing to drop"
    );
    for base in 0..5u64 {
        let writes = [
            put("Report", &format!("r{base}"), "x"),
            put("Counter", "c", &base.to_string()),
        ];
        s.commit("acme", base, &writes, "a", T).unwrap();
    }
    s.commit("globex", 0, &[put("Report", "g", "x")], "g", T)
        .unwrap();
    assert_eq!(
        s.compact("acme", 2).unwrap(),
        4,
        "revisions 1 and 2, two changes each"
    );
    for since in [0, 1] {
        let err = s.changes_since("acme", since, 100).unwrap_err();
        assert!(
            matches!(err, StoreError::TooOld { oldest: 2, .. }),
            "{since}: {err}"
        );
    }
    let kept: Vec<u64> = s
        .changes_since("acme", 2, 100)
        .unwrap()
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(kept, vec![3, 3, 4, 4, 5, 5]);
    assert_eq!(s.compact("acme", 1).unwrap(), 0, "already compacted past 1");
    // Capped at the tenant's revision.
    assert_eq!(s.compact("acme", 100).unwrap(), 6);
    assert!(matches!(
        s.changes_since("acme", 4, 100),
        Err(StoreError::TooOld { oldest: 5, .. })
    ));
    assert!(s.changes_since("acme", 5, 100).unwrap().is_empty());
    // Entities and other tenants are untouched; commits go on.
    assert_eq!(s.snapshot("acme").unwrap().entities.len(), 6);
    assert_eq!(s.changes_since("globex", 0, 100).unwrap().len(), 1);
    s.commit("acme", 5, &[put("Report", "r5", "x")], "a", T)
        .unwrap();
    assert_eq!(s.changes_since("acme", 5, 100).unwrap().len(), 1);
}

fn data_survives_reopening(fixture: &Fixture) {
    {
        let s = fixture.open();
        s.commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
            .unwrap();
        s.compact("acme", 1).unwrap();
    }
    // Reopening migrates nothing and loses nothing.
    let s = fixture.open();
    assert_eq!(s.revision("acme").unwrap(), 1);
    assert_eq!(
        s.get("acme", &key("Report", "q3")).unwrap(),
        Some(json("Report", "q3", "risk"))
    );
    assert!(matches!(
        s.changes_since("acme", 0, 10),
        Err(StoreError::TooOld { oldest: 1, .. })
    ));
}

// ---- SQLite only ----

fn db_path(fixture: &Fixture) -> PathBuf {
    PathBuf::from(fixture.spec.strip_prefix("sqlite:").unwrap())
}

#[cfg(unix)]
#[test]
fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = sqlite_fixture("private");
    let s = fixture.open();
    s.commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
        .unwrap();
    let path = db_path(&fixture);
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn sqlite_refuses_what_is_not_a_store() {
    let fixture = sqlite_fixture("notadb");
    let path = db_path(&fixture);
    std::fs::write(
        &path,
        "not a database, just some text that is long enough to have a header",
    )
    .unwrap();
    let err = store::open(&fixture.spec).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let missing = path.parent().unwrap().join("no/such/dir/data.db");
    let err = store::open(missing.to_str().unwrap()).err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

/// The environment variable that turns [`durability_writer`] into the writer process.
const WRITER_ENV: &str = "PORTCULLIS_STORE_DURABILITY_WRITER";

/// Not a test of its own: the child process of [`sqlite_acknowledged_commits_survive_kill_9`]
/// (this test binary, re-run with [`WRITER_ENV`] naming the file). Commits as fast as it can,
/// printing `ack <revision>` after each commit returns, until killed (or a minute passes, in
/// case the parent died).
#[test]
fn durability_writer() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let s = store::open(&path).unwrap();
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    while started.elapsed() < Duration::from_secs(60) {
        let base = s.revision("acme").unwrap();
        let writes = writer_commit(base + 1);
        let revision = s.commit("acme", base, &writes, "writer", T).unwrap();
        writeln!(out, "ack {revision}").unwrap();
        out.flush().unwrap();
    }
}

/// What the writer commits at `revision`: the counter and ten entities of 2 KiB, so that a
/// commit spans several pages of the file.
fn writer_commit(revision: u64) -> Vec<Write> {
    let mut writes = vec![Write::put(key("Counter", "c"), revision.to_string())];
    writes.extend((0..10).map(|i| {
        Write::put(
            key("Report", &format!("r{revision:06}-{i}")),
            format!("{revision}:{}", "x".repeat(2048)),
        )
    }));
    writes
}

/// Kills the writer (SIGKILL) at an arbitrary point, three times over, and checks after each
/// kill that every commit it acknowledged is in the file, whole, and that the file is sound.
#[test]
fn sqlite_acknowledged_commits_survive_kill_9() {
    let fixture = sqlite_fixture("kill9");
    let path = db_path(&fixture);
    drop(fixture.open()); // created, tables and all, before the first writer starts
    let mut acknowledged = 0u64;
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "durability_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's `test durability_writer ... ` may open the first line.
                if let Some((_, revision)) = line.split_once("ack ")
                    && tx.send(revision.parse::<u64>().unwrap()).is_err()
                {
                    break;
                }
            }
        });
        let mut acks = Vec::new();
        while acks.len() < 25 {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(revision) => acks.push(revision),
                Err(e) => {
                    let _ = child.kill();
                    panic!("round {round}: the writer stopped acknowledging: {e}");
                }
            }
        }
        // Somewhere in the middle of the next commits.
        std::thread::sleep(Duration::from_micros(round * 1700 + 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acks.extend(rx.try_iter());
        let first = acks[0];
        assert_eq!(
            first,
            acknowledged + 1,
            "round {round}: each writer goes on from the last"
        );
        assert_eq!(
            acks,
            (first..first + acks.len() as u64).collect::<Vec<_>>(),
            "round {round}"
        );
        acknowledged = *acks.last().unwrap();

        // Every acknowledged commit is there, whole; at most one more may have made it.
        let s = store::open(path.to_str().unwrap()).unwrap();
        let revision = s.revision("acme").unwrap();
        assert!(
            revision == acknowledged || revision == acknowledged + 1,
            "round {round}: revision {revision}, acknowledged {acknowledged}"
        );
        acknowledged = revision;
        let snap = s.snapshot("acme").unwrap();
        assert_eq!(snap.revision, revision);
        assert_eq!(snap.entities.len() as u64, 1 + 10 * revision);
        for r in 1..=revision {
            for write in writer_commit(r).into_iter().skip(1) {
                assert_eq!(
                    s.get("acme", &write.key).unwrap(),
                    write.after,
                    "revision {r}"
                );
            }
        }
        assert_eq!(
            s.get("acme", &key("Counter", "c")).unwrap(),
            Some(revision.to_string())
        );
        let changes = s.changes_since("acme", 0, usize::MAX).unwrap();
        assert_eq!(changes.len() as u64, 11 * revision);
        drop(s);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
    }
    assert!(acknowledged >= 75);
}

// ---- PostgreSQL only ----

/// A call on a connection the server has dropped fails as unavailable; the next one
/// reconnects.
#[test]
fn postgres_reconnects_after_losing_its_connections() {
    let Some(fixture) = postgres_fixture("reconnect") else {
        return;
    };
    let Cleanup::Schema { url, schema } = &fixture.cleanup else {
        unreachable!()
    };
    let s = fixture.open();
    s.commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
        .unwrap();
    // Several connections in the pool.
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..20 {
                    s.snapshot("acme").unwrap();
                }
            });
        }
    });
    let mut admin = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[schema],
        )
        .unwrap();
    assert!(!terminated.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let err = s.revision("acme").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(s.revision("acme").unwrap(), 1);
    assert_eq!(
        s.commit("acme", 1, &[put("Report", "q3", "finance")], "a", T)
            .unwrap(),
        2
    );
}

/// The tables land in the schema the URL names, and a second store on the database finds
/// them migrated.
#[test]
fn postgres_schema_version_is_recorded() {
    let Some(fixture) = postgres_fixture("version") else {
        return;
    };
    let Cleanup::Schema { url, schema } = &fixture.cleanup else {
        unreachable!()
    };
    drop(fixture.open());
    drop(fixture.open());
    let mut admin = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let versions: Vec<i64> = admin
        .query(&format!("SELECT version FROM {schema}.schema_version"), &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, vec![store::SCHEMA_VERSION]);
}

/// `sqlite:PATH` and a plain `PATH` name the same file.
#[test]
fn plain_paths_open_sqlite() {
    let fixture = sqlite_fixture("plainpath");
    fixture
        .open()
        .commit("acme", 0, &[put("Report", "q3", "risk")], "a", T)
        .unwrap();
    let plain = db_path(&fixture);
    let s = store::open(plain.to_str().unwrap()).unwrap();
    assert_eq!(s.revision("acme").unwrap(), 1);
}
