//! The durable store for authorization data: each tenant's Cedar entities, a per-tenant
//! revision and a change log, in SQLite (embedded, one file: the default) or PostgreSQL
//! (one database shared by several `portcullis serve` replicas).
//!
//! ```
//! use portcullis::store::{self, EntityKey, Write};
//!
//! # fn main() -> Result<(), store::StoreError> {
//! # let dir = std::env::temp_dir().join(format!("portcullis-store-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let store = store::open(&format!("sqlite:{}", dir.join("data.db").display()))?;
//! let key = EntityKey::new("Report", "acme/q3");
//! let json = r#"{"uid":{"type":"Report","id":"acme/q3"},"attrs":{"department":"risk"},"parents":[]}"#;
//! let base = store.revision("acme")?; // 0: never written
//! let revision = store.commit("acme", base, &[Write::put(key.clone(), json)], "admin@acme", 1_700_000_000)?;
//! assert_eq!(revision, base + 1);
//! assert_eq!(store.get("acme", &key)?.as_deref(), Some(json));
//! assert_eq!(store.get("globex", &key)?, None); // another tenant
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # What the store does, and what it leaves to its caller
//! The store is deliberately dumb. It keeps, per tenant:
//! - **entities**, keyed by [`EntityKey`] (Cedar type and id), each as opaque text (Cedar's
//!   entity JSON, `{"uid":{..},"attrs":{..},"parents":[..]}`). The store never parses it:
//!   validation against the bundle's schema, parents and cycles are the engine's job, done
//!   before [`Store::commit`] against the tenant's data at the base revision;
//! - a **revision**, 0 for a tenant never written, bumped by one per commit;
//! - a **change log**: one [`Change`] per write, with the text before and after.
//!
//! [`Store::commit`] is a compare-and-swap on the revision: it applies a batch of writes only
//! if the tenant is still at the caller's base revision, else it fails with
//! [`StoreError::Conflict`] and the caller re-reads ([`Store::changes_since`]), re-validates
//! and retries. That is what keeps several replicas on one PostgreSQL database, or several
//! processes on one SQLite file, from validating against stale data. A commit is durable when
//! it returns.
//!
//! Tenants never see each other: every call names its tenant and every query is keyed by it
//! (every lookup is by primary key or a range of it, never a scan over other tenants).
//!
//! # Blocking
//! Every method blocks on disk or network I/O. From async code, call the store on tokio's
//! blocking pool (`tokio::task::spawn_blocking`). The PostgreSQL backend runs its own tokio
//! runtime inside the `postgres` client and **panics if called from an async context**.
//!
//! # Limits
//! Inputs are bounded before anything is written: [`MAX_ENTITY_BYTES`] per entity text,
//! [`MAX_WRITES`] writes and [`MAX_COMMIT_BYTES`] of entity text per commit, and
//! [`MAX_NAME_BYTES`] per tenant, entity type, entity id and actor. No text may contain a NUL
//! character (PostgreSQL cannot store one; the two backends accept the same inputs).
//!
//! # Change log retention
//! Changes are kept until [`Store::compact`] drops the old ones; after that,
//! [`Store::changes_since`] a revision older than the compaction point is
//! [`StoreError::TooOld`] and the caller takes a [`Store::snapshot`] instead. Nothing
//! compacts on its own.

pub mod checked;
mod postgres;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

use std::collections::HashSet;
use std::fmt;

/// The largest entity text accepted, in bytes (64 KiB).
pub const MAX_ENTITY_BYTES: usize = 64 * 1024;

/// The most writes one commit may carry.
pub const MAX_WRITES: usize = 10_000;

/// The most entity text one commit may carry, in bytes (64 MiB), summed over its writes.
/// [`MAX_WRITES`] × [`MAX_ENTITY_BYTES`] would be 625 MiB held in memory at once, twice over
/// (the change log keeps the text before and after).
pub const MAX_COMMIT_BYTES: usize = 64 * 1024 * 1024;

/// The longest tenant name, entity type, entity id or actor accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The schema version this build writes and reads. A store at a newer version is refused
/// ([`StoreError::Incompatible`]); an older one is migrated when opened.
pub const SCHEMA_VERSION: i64 = 1;

/// An entity's key within its tenant: its Cedar type and id (`Report::"acme/q3"` is
/// `EntityKey { entity_type: "Report", id: "acme/q3" }`). Ordered by type, then id, byte-wise:
/// the order of [`Store::list`] and [`Snapshot::entities`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey {
    /// The Cedar entity type, with its namespace if any (`Report`, `TechFin::Report`).
    pub entity_type: String,
    /// The entity id (any string, even empty, as in Cedar).
    pub id: String,
}

impl EntityKey {
    /// The key of entity `entity_type::"id"`.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        EntityKey {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }
}

/// Cedar's notation: `Report::"acme/q3"`.
impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::\"{}\"", self.entity_type, self.id.escape_debug())
    }
}

/// One write of a commit: an entity's new text, or its deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The entity written.
    pub key: EntityKey,
    /// Its new text (Cedar entity JSON, opaque to the store), or `None` to delete it.
    pub after: Option<String>,
}

impl Write {
    /// Stores `json` as the entity `key` (created or replaced).
    pub fn put(key: EntityKey, json: impl Into<String>) -> Self {
        Write {
            key,
            after: Some(json.into()),
        }
    }

    /// Deletes the entity `key`.
    pub fn delete(key: EntityKey) -> Self {
        Write { key, after: None }
    }
}

/// One entry of a tenant's change log: one write of one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The revision the commit produced. A commit of several writes has several changes with
    /// the same revision, in the order of its writes.
    pub revision: u64,
    /// The entity written.
    pub key: EntityKey,
    /// Its text at the commit's base revision, `None` if it did not exist.
    pub before: Option<String>,
    /// Its text after the commit, `None` if the write deleted it.
    pub after: Option<String>,
    /// Who committed, as the caller named them (e.g. the token's subject).
    pub actor: String,
    /// When, in Unix seconds, as the caller said (the store reads no clock).
    pub time: i64,
}

/// A tenant's entities exactly as of one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The tenant's revision (0 for a tenant never written).
    pub revision: u64,
    /// Every entity of the tenant at that revision, ordered by key.
    pub entities: Vec<(EntityKey, String)>,
}

/// Why a store call failed. Messages name tenants and entity keys but never carry entity
/// text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`Store::commit`]'s base revision is not the tenant's revision any more: another writer
    /// committed first. Re-read, re-validate, retry from `current`.
    #[error(
        "the tenant's data changed: it is at revision {current}, not at the base revision {base}"
    )]
    Conflict {
        /// The base revision the commit was validated against.
        base: u64,
        /// The tenant's revision now.
        current: u64,
    },
    /// [`Store::changes_since`] was asked for changes that [`Store::compact`] has dropped.
    /// Take a [`Store::snapshot`] instead.
    #[error(
        "changes since revision {since} are no longer kept (the oldest revision to ask from is {oldest})"
    )]
    TooOld {
        /// The revision asked from.
        since: u64,
        /// The smallest `since` that can be served now.
        oldest: u64,
    },
    /// An entity text over [`MAX_ENTITY_BYTES`].
    #[error("entity `{key}` is {len} bytes, over the limit of {limit}")]
    EntityTooLarge {
        /// The entity.
        key: EntityKey,
        /// Its text's length in bytes.
        len: usize,
        /// [`MAX_ENTITY_BYTES`].
        limit: usize,
    },
    /// A commit of more than [`MAX_WRITES`] writes.
    #[error("a commit of {count} writes is over the limit of {limit}")]
    TooManyWrites {
        /// The number of writes.
        count: usize,
        /// [`MAX_WRITES`].
        limit: usize,
    },
    /// A commit of more than [`MAX_COMMIT_BYTES`] of entity text.
    #[error("a commit of {len} bytes of entity text is over the limit of {limit}")]
    CommitTooLarge {
        /// The sum of its entity texts' lengths in bytes.
        len: usize,
        /// [`MAX_COMMIT_BYTES`].
        limit: usize,
    },
    /// A commit without writes: it would bump the revision and record nothing.
    #[error("a commit needs at least one write")]
    EmptyCommit,
    /// The same entity written twice in one commit (its `before` would be ambiguous).
    #[error("entity `{key}` is written twice in one commit")]
    DuplicateWrite {
        /// The entity.
        key: EntityKey,
    },
    /// A tenant name, entity type, entity id, actor or entity text the store refuses.
    #[error("{what} {problem}")]
    Invalid {
        /// What it is: `tenant name`, `entity type`, `entity id`, `actor`, `entity text`.
        what: &'static str,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The store specification given to [`open`] is not one (the message never echoes a
    /// PostgreSQL URL, which may carry a password).
    #[error("invalid store: {0}")]
    Spec(String),
    /// The database cannot be reached or used just now (file not openable, locked past the busy
    /// timeout, server down, connection lost). Retrying later may succeed. A commit that fails
    /// with this may or may not have been applied: re-read the revision.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error that retrying will not fix (e.g. permission
    /// denied).
    #[error("store error: {0}")]
    Backend(String),
    /// The database holds something this build cannot make sense of (a negative revision, text
    /// that is not UTF-8, a damaged file).
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    /// The database was written by a newer Portcullis: its schema version is ahead of this
    /// build's [`SCHEMA_VERSION`].
    #[error("the store's schema version {found} is newer than this build supports ({supported})")]
    Incompatible {
        /// The version in the database.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
}

/// What is wrong with a name or text ([`StoreError::Invalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Empty where a value is needed (tenant name, entity type).
    #[error("is empty")]
    Empty,
    /// Over [`MAX_NAME_BYTES`].
    #[error("is over {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// Contains a NUL character.
    #[error("contains a NUL character")]
    Nul,
}

/// A durable, per-tenant store of entities with a revision and a change log. See the
/// [module documentation](self) for what it guarantees and what it leaves to its caller.
/// Every method blocks (see [Blocking](self#blocking)).
pub trait Store: Send + Sync + 'static {
    /// The tenant's revision: 0 for a tenant never written.
    fn revision(&self, tenant: &str) -> Result<u64, StoreError>;

    /// Every tenant that has committed at least once, with its revision, ordered by name.
    fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The entity's text, `None` if the tenant has no such entity.
    fn get(&self, tenant: &str, key: &EntityKey) -> Result<Option<String>, StoreError>;

    /// Up to `limit` of the tenant's entities, ordered by key, optionally only those of one
    /// type, starting after the key `after` (exclusive): keyset paging, where the next page
    /// starts after the last key of this one. An empty page is the end.
    fn list(
        &self,
        tenant: &str,
        entity_type: Option<&str>,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<Vec<(EntityKey, String)>, StoreError>;

    /// The tenant's revision and all its entities as of that revision, read in one
    /// transaction: no commit is half in it.
    fn snapshot(&self, tenant: &str) -> Result<Snapshot, StoreError>;

    /// The tenant's changes after revision `since`, ascending by revision (and, within a
    /// revision, in the order of the commit's writes), read in one transaction.
    ///
    /// A page holds whole commits only, so the next call continues from the last change's
    /// revision: at most `limit` changes, except that the first commit is always returned
    /// whole, however many writes it has (at most [`MAX_WRITES`]). Empty when `since` is the
    /// tenant's revision or later. [`StoreError::TooOld`] when changes after `since` were
    /// dropped by [`Store::compact`].
    fn changes_since(
        &self,
        tenant: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError>;

    /// Applies `writes` atomically if the tenant is at revision `base`, and returns the new
    /// revision, `base + 1`; the commit is durable when this returns.
    ///
    /// One [`Change`] is recorded per write, in order, with `before` the entity's text at
    /// `base`. Every write counts, even one that stores the text already stored or deletes an
    /// entity that does not exist: the store does not compare texts (it cannot tell a
    /// meaningful difference in opaque JSON), and the caller, which validated the writes, has
    /// already seen them.
    ///
    /// Errors: [`StoreError::Conflict`] if the tenant is not at `base` (nothing is written);
    /// [`StoreError::EmptyCommit`] for no writes; [`StoreError::DuplicateWrite`] for an entity
    /// written twice; the limits ([`StoreError::TooManyWrites`],
    /// [`StoreError::EntityTooLarge`], [`StoreError::CommitTooLarge`],
    /// [`StoreError::Invalid`]) before anything is read.
    fn commit(
        &self,
        tenant: &str,
        base: u64,
        writes: &[Write],
        actor: &str,
        time: i64,
    ) -> Result<u64, StoreError>;

    /// Drops the tenant's changes up to and including revision `keep_after` (capped at the
    /// tenant's revision), and returns how many were dropped. Afterwards
    /// [`Store::changes_since`] any revision before `keep_after` is [`StoreError::TooOld`].
    /// Entities are untouched. Compacting to a revision at or before an earlier compaction
    /// drops nothing.
    fn compact(&self, tenant: &str, keep_after: u64) -> Result<u64, StoreError>;
}

/// Opens the store that `spec` names, creating its tables if absent and migrating an older
/// schema:
/// - `postgres://…` or `postgresql://…`: a PostgreSQL database ([`PostgresStore::connect`]);
/// - `sqlite:PATH` (or `sqlite://PATH`), or any other text without `://`: an SQLite file,
///   created if absent ([`SqliteStore::open`]).
pub fn open(spec: &str) -> Result<Box<dyn Store>, StoreError> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok(Box::new(PostgresStore::connect(spec)?));
    }
    let path = match spec.strip_prefix("sqlite://") {
        Some(path) => path,
        None => spec.strip_prefix("sqlite:").unwrap_or(spec),
    };
    if path.contains("://") {
        let scheme = spec.split("://").next().unwrap_or_default();
        return Err(StoreError::Spec(format!(
            "unknown scheme `{scheme}`: expected `sqlite:PATH`, a file path, or `postgres://`"
        )));
    }
    if path.is_empty() {
        return Err(StoreError::Spec("no SQLite file path".into()));
    }
    Ok(Box::new(SqliteStore::open(path)?))
}

/// Which of a tenant's entities a [`Store::list`] page starts from, as the index sees it: the
/// type filter and the `after` key folded into one range of the primary key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range<'a> {
    /// Every entity.
    All,
    /// Entities after a key.
    After(&'a EntityKey),
    /// Entities of one type.
    Type(&'a str),
    /// Entities of one type with an id after this one.
    TypeAfter(&'a str, &'a str),
    /// None (`after` is past the type).
    Empty,
}

impl<'a> Range<'a> {
    fn new(entity_type: Option<&'a str>, after: Option<&'a EntityKey>) -> Self {
        match (entity_type, after) {
            (None, None) => Range::All,
            (None, Some(after)) => Range::After(after),
            (Some(ty), None) => Range::Type(ty),
            (Some(ty), Some(after)) => match after.entity_type.as_str().cmp(ty) {
                std::cmp::Ordering::Less => Range::Type(ty),
                std::cmp::Ordering::Equal => Range::TypeAfter(ty, &after.id),
                std::cmp::Ordering::Greater => Range::Empty,
            },
        }
    }
}

/// Refuses a name that is empty (where that is not allowed), too long, or contains NUL.
fn check_name(what: &'static str, name: &str, may_be_empty: bool) -> Result<(), StoreError> {
    let problem = if name.is_empty() && !may_be_empty {
        Problem::Empty
    } else if name.len() > MAX_NAME_BYTES {
        Problem::TooLong
    } else if name.contains('\0') {
        Problem::Nul
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid { what, problem })
}

/// Checks a tenant name given to any call.
fn check_tenant(tenant: &str) -> Result<(), StoreError> {
    check_name("tenant name", tenant, false)
}

/// Checks an entity key given to any call.
fn check_key(key: &EntityKey) -> Result<(), StoreError> {
    check_name("entity type", &key.entity_type, false)?;
    check_name("entity id", &key.id, true)
}

/// Checks everything about a commit that needs no database: its size, its names and texts,
/// and that no entity is written twice.
fn check_commit(tenant: &str, writes: &[Write], actor: &str) -> Result<(), StoreError> {
    check_tenant(tenant)?;
    check_name("actor", actor, true)?;
    if writes.is_empty() {
        return Err(StoreError::EmptyCommit);
    }
    if writes.len() > MAX_WRITES {
        return Err(StoreError::TooManyWrites {
            count: writes.len(),
            limit: MAX_WRITES,
        });
    }
    let mut total = 0usize;
    let mut seen = HashSet::with_capacity(writes.len());
    for write in writes {
        check_key(&write.key)?;
        if let Some(text) = &write.after {
            if text.len() > MAX_ENTITY_BYTES {
                return Err(StoreError::EntityTooLarge {
                    key: write.key.clone(),
                    len: text.len(),
                    limit: MAX_ENTITY_BYTES,
                });
            }
            if text.contains('\0') {
                return Err(StoreError::Invalid {
                    what: "entity text",
                    problem: Problem::Nul,
                });
            }
            total = total.saturating_add(text.len());
        }
        if !seen.insert(&write.key) {
            return Err(StoreError::DuplicateWrite {
                key: write.key.clone(),
            });
        }
    }
    if total > MAX_COMMIT_BYTES {
        return Err(StoreError::CommitTooLarge {
            len: total,
            limit: MAX_COMMIT_BYTES,
        });
    }
    Ok(())
}

/// A revision or bound as the databases store it (a signed 64-bit integer), saturating: no
/// tenant reaches revision 2^63.
fn to_db(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// The revision after `current`, as the databases store it.
fn next_revision(current: u64) -> Result<i64, StoreError> {
    current
        .checked_add(1)
        .and_then(|next| i64::try_from(next).ok())
        .ok_or_else(|| StoreError::Backend("the tenant's revision is at its limit".into()))
}

/// A revision read from a database; negative is corruption.
fn from_db(revision: i64) -> Result<u64, StoreError> {
    u64::try_from(revision)
        .map_err(|_| StoreError::Corrupt(format!("negative revision {revision}")))
}

/// A page size as SQL's `LIMIT` takes it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Cuts a page of changes (read with `LIMIT limit + 1`, ascending) at a commit boundary, so
/// that [`Store::changes_since`] never returns part of a commit. Returns the page, or, when
/// the page's first commit alone has more than `limit` changes, `Err(revision)`: the caller
/// reads that whole revision instead.
fn whole_commits(mut page: Vec<Change>, limit: usize) -> Result<Vec<Change>, u64> {
    if page.len() <= limit {
        return Ok(page);
    }
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(page);
    };
    let (first, last) = (first.revision, last.revision);
    if first == last {
        return Err(first);
    }
    page.retain(|change| change.revision != last);
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: u64, id: &str) -> Change {
        Change {
            revision,
            key: EntityKey::new("T", id),
            before: None,
            after: None,
            actor: String::new(),
            time: 0,
        }
    }

    #[test]
    fn pages_end_at_a_commit_boundary() {
        let page = vec![change(1, "a"), change(2, "b"), change(2, "c")];
        // Read with LIMIT 3 for limit 2: revision 2 may have more changes, so it is dropped.
        let cut = whole_commits(page.clone(), 2).unwrap();
        assert_eq!(cut, vec![change(1, "a")]);
        // Everything fits.
        assert_eq!(whole_commits(page.clone(), 3).unwrap(), page);
        // The first commit alone is over the limit: read it whole.
        assert_eq!(
            whole_commits(vec![change(4, "a"), change(4, "b")], 1),
            Err(4)
        );
        assert_eq!(whole_commits(vec![change(4, "a")], 0), Err(4));
        assert_eq!(whole_commits(vec![], 0), Ok(vec![]));
    }

    #[test]
    fn commits_are_checked_before_any_database() {
        let key = EntityKey::new("Report", "q3");
        let put = |text: &str| Write::put(key.clone(), text);
        assert!(check_commit("acme", &[put("{}")], "admin").is_ok());
        assert!(matches!(
            check_commit("acme", &[], "admin"),
            Err(StoreError::EmptyCommit)
        ));
        assert!(matches!(
            check_commit("", &[put("{}")], "admin"),
            Err(StoreError::Invalid {
                what: "tenant name",
                problem: Problem::Empty
            })
        ));
        assert!(matches!(
            check_commit("acme", &[put("{\0}")], "admin"),
            Err(StoreError::Invalid {
                what: "entity text",
                problem: Problem::Nul
            })
        ));
        assert!(matches!(
            check_commit("acme", &[put("{}"), Write::delete(key.clone())], "admin"),
            Err(StoreError::DuplicateWrite { .. })
        ));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            check_commit("acme", &[put("{}")], &long),
            Err(StoreError::Invalid {
                what: "actor",
                problem: Problem::TooLong
            })
        ));
        // An empty id is a Cedar id like any other; an empty type is not.
        assert!(check_commit("acme", &[Write::delete(EntityKey::new("T", ""))], "a").is_ok());
        assert!(matches!(
            check_commit("acme", &[Write::delete(EntityKey::new("", "x"))], "a"),
            Err(StoreError::Invalid {
                what: "entity type",
                ..
            })
        ));
        // The total: 1,100 entities of 61 KiB each are under the per-write limits, not the sum.
        let big = "x".repeat(61 * 1024);
        let writes: Vec<Write> = (0..1100)
            .map(|i| Write::put(EntityKey::new("T", i.to_string()), big.clone()))
            .collect();
        assert!(matches!(
            check_commit("acme", &writes, "a"),
            Err(StoreError::CommitTooLarge { .. })
        ));
    }

    #[test]
    fn list_ranges_fold_the_type_into_the_key() {
        let user = EntityKey::new("User", "b");
        assert_eq!(Range::new(None, None), Range::All);
        assert_eq!(Range::new(None, Some(&user)), Range::After(&user));
        assert_eq!(Range::new(Some("User"), None), Range::Type("User"));
        assert_eq!(
            Range::new(Some("User"), Some(&user)),
            Range::TypeAfter("User", "b")
        );
        assert_eq!(Range::new(Some("Zone"), Some(&user)), Range::Type("Zone"));
        assert_eq!(Range::new(Some("Report"), Some(&user)), Range::Empty);
    }

    #[test]
    fn keys_print_as_cedar_writes_them() {
        assert_eq!(
            EntityKey::new("Report", "acme/\"q3\"").to_string(),
            r#"Report::"acme/\"q3\"""#
        );
    }

    #[test]
    fn specs_name_a_backend() {
        for spec in ["mysql://db/x", "sqlite:http://x"] {
            let err = open(spec).err().unwrap();
            assert!(matches!(err, StoreError::Spec(_)), "{spec}: {err}");
        }
        assert!(matches!(open("sqlite:"), Err(StoreError::Spec(_))));
        assert!(matches!(open(""), Err(StoreError::Spec(_))));
    }
}
