//! The SQLite backend: one file, embedded, nothing to install ([`SqliteStore`]).

use super::{
    Change, EntityKey, Range, SCHEMA_VERSION, Snapshot, Store, StoreError, Write, check_commit,
    check_key, check_tenant, from_db, next_revision, sql_limit, to_db, whole_commits,
};
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long a connection waits for another process's lock on the file before the call is
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections kept open for reuse; more are opened while that many are busy.
const IDLE_READERS: usize = 4;

/// Schema migrations, in order: `(version, SQL)`. Version 1: tenants with their revision and
/// compaction point, entities, and the change log. `WITHOUT ROWID`: every table is read by
/// its primary key, which then is the table.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE tenants (
        tenant TEXT NOT NULL PRIMARY KEY,
        revision INTEGER NOT NULL CHECK (revision >= 0),
        -- changes up to this revision were dropped by compaction
        compacted INTEGER NOT NULL DEFAULT 0 CHECK (compacted >= 0 AND compacted <= revision)
    ) WITHOUT ROWID;
    CREATE TABLE entities (
        tenant TEXT NOT NULL REFERENCES tenants (tenant),
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        json TEXT NOT NULL,
        -- the revision that last wrote it
        revision INTEGER NOT NULL,
        PRIMARY KEY (tenant, type, id)
    ) WITHOUT ROWID;
    CREATE TABLE changes (
        tenant TEXT NOT NULL REFERENCES tenants (tenant),
        revision INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT,
        actor TEXT NOT NULL,
        time INTEGER NOT NULL,
        PRIMARY KEY (tenant, revision, seq)
    ) WITHOUT ROWID;",
)];

const REVISION: &str = "SELECT revision FROM tenants WHERE tenant = ?1";
const TENANT: &str = "SELECT revision, compacted FROM tenants WHERE tenant = ?1";
const TENANTS: &str = "SELECT tenant, revision FROM tenants ORDER BY tenant";
const GET: &str = "SELECT json FROM entities WHERE tenant = ?1 AND type = ?2 AND id = ?3";
const ALL: &str = "SELECT type, id, json FROM entities WHERE tenant = ?1 ORDER BY type, id";
const LIST: &str =
    "SELECT type, id, json FROM entities WHERE tenant = ?1 ORDER BY type, id LIMIT ?2";
const LIST_AFTER: &str = "SELECT type, id, json FROM entities
    WHERE tenant = ?1 AND (type, id) > (?2, ?3) ORDER BY type, id LIMIT ?4";
const LIST_TYPE: &str = "SELECT type, id, json FROM entities
    WHERE tenant = ?1 AND type = ?2 ORDER BY id LIMIT ?3";
const LIST_TYPE_AFTER: &str = "SELECT type, id, json FROM entities
    WHERE tenant = ?1 AND type = ?2 AND id > ?3 ORDER BY id LIMIT ?4";
const CHANGES_AFTER: &str =
    "SELECT revision, type, id, before_json, after_json, actor, time FROM changes
    WHERE tenant = ?1 AND revision > ?2 ORDER BY revision, seq LIMIT ?3";
const CHANGES_AT: &str = "SELECT revision, type, id, before_json, after_json, actor, time
    FROM changes WHERE tenant = ?1 AND revision = ?2 ORDER BY seq";
const SET_REVISION: &str = "INSERT INTO tenants (tenant, revision) VALUES (?1, ?2)
    ON CONFLICT (tenant) DO UPDATE SET revision = excluded.revision";
const PUT: &str = "INSERT INTO entities (tenant, type, id, json, revision) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (tenant, type, id) DO UPDATE SET json = excluded.json, revision = excluded.revision";
const DELETE: &str = "DELETE FROM entities WHERE tenant = ?1 AND type = ?2 AND id = ?3";
const LOG: &str = "INSERT INTO changes
    (tenant, revision, seq, type, id, before_json, after_json, actor, time)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const DROP_CHANGES: &str = "DELETE FROM changes WHERE tenant = ?1 AND revision <= ?2";
const SET_COMPACTED: &str = "UPDATE tenants SET compacted = ?2 WHERE tenant = ?1";

/// A store in one SQLite file. Several stores (in one process or several) may open the same
/// file: commits serialize on SQLite's write lock and conflict on the revision like
/// PostgreSQL replicas do.
///
/// Connections: one writer behind a mutex (SQLite admits one writer at a time anyway, and
/// commits take `BEGIN IMMEDIATE` so a second process on the same file waits its turn instead
/// of failing at its first write), and readers opened on demand and kept for reuse (a few
/// idle at most). In WAL mode readers never wait for the writer and each read transaction sees
/// one commit's state, which is what [`Store::snapshot`] needs.
///
/// Durability: `journal_mode=WAL` with `synchronous=FULL`, so the WAL is synced at every
/// commit before [`Store::commit`] returns.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// The file's path.
impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A failure inside a call: SQLite's, or the store's own (a conflict, corrupt data).
enum Fail {
    Db(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl SqliteStore {
    /// Opens the store in the SQLite file `path`, creating it (readable and writable by its
    /// owner only) if it does not exist, and creating or migrating its tables. The directory
    /// must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let cannot = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("cannot open `{}`: {e}", path.display()))
        };
        create_private(&path).map_err(|e| cannot(&e))?;
        let mut writer = connect(&path).map_err(|e| opening(&path, e))?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| opening(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(cannot(&format!(
                "the file system does not support SQLite's WAL mode (journal mode `{mode}`)"
            )));
        }
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| opening(&path, e))?;
        match migrate(&mut writer) {
            Ok(()) => {}
            Err(Fail::Db(e)) => return Err(opening(&path, e)),
            Err(Fail::Store(e)) => return Err(e),
        }
        Ok(SqliteStore {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a reader connection.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Fail>) -> Result<T, StoreError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path).map_err(|e| opening(&self.path, e))?;
                conn.pragma_update(None, "query_only", true)
                    .map_err(|e| opening(&self.path, e))?;
                conn
            }
        };
        let result = f(&mut conn);
        // A connection left inside a transaction (it cannot be: transactions roll back when
        // dropped) would pin an old snapshot; it is closed rather than reused.
        if conn.is_autocommit() {
            let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        finish(result)
    }

    /// Runs `f` on the writer connection.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        finish(f(&mut conn))
    }
}

impl Store for SqliteStore {
    fn revision(&self, tenant: &str) -> Result<u64, StoreError> {
        check_tenant(tenant)?;
        self.read(|conn| revision_of(conn, tenant))
    }

    fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(TENANTS)?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?)))?;
            let mut tenants = Vec::new();
            for row in rows {
                let (tenant, revision) = row?;
                tenants.push((tenant, from_db(revision)?));
            }
            Ok(tenants)
        })
    }

    fn get(&self, tenant: &str, key: &EntityKey) -> Result<Option<String>, StoreError> {
        check_tenant(tenant)?;
        check_key(key)?;
        self.read(|conn| {
            let json = conn
                .prepare_cached(GET)?
                .query_row(params![tenant, key.entity_type, key.id], |row| row.get(0))
                .optional()?;
            Ok(json)
        })
    }

    fn list(
        &self,
        tenant: &str,
        entity_type: Option<&str>,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<Vec<(EntityKey, String)>, StoreError> {
        check_tenant(tenant)?;
        if let Some(after) = after {
            check_key(after)?;
        }
        let limit = sql_limit(limit);
        self.read(|conn| {
            let rows = match Range::new(entity_type, after) {
                Range::All => conn
                    .prepare_cached(LIST)?
                    .query_map(params![tenant, limit], entity)?
                    .collect::<Result<Vec<_>, _>>()?,
                Range::After(a) => conn
                    .prepare_cached(LIST_AFTER)?
                    .query_map(params![tenant, a.entity_type, a.id, limit], entity)?
                    .collect::<Result<Vec<_>, _>>()?,
                Range::Type(t) => conn
                    .prepare_cached(LIST_TYPE)?
                    .query_map(params![tenant, t, limit], entity)?
                    .collect::<Result<Vec<_>, _>>()?,
                Range::TypeAfter(t, id) => conn
                    .prepare_cached(LIST_TYPE_AFTER)?
                    .query_map(params![tenant, t, id, limit], entity)?
                    .collect::<Result<Vec<_>, _>>()?,
                Range::Empty => Vec::new(),
            };
            Ok(rows)
        })
    }

    fn snapshot(&self, tenant: &str) -> Result<Snapshot, StoreError> {
        check_tenant(tenant)?;
        self.read(|conn| {
            let tx = conn.transaction()?;
            let revision = revision_of(&tx, tenant)?;
            let entities = tx
                .prepare_cached(ALL)?
                .query_map(params![tenant], entity)?
                .collect::<Result<Vec<_>, _>>()?;
            tx.finish()?;
            Ok(Snapshot { revision, entities })
        })
    }

    fn changes_since(
        &self,
        tenant: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        check_tenant(tenant)?;
        self.read(|conn| {
            let tx = conn.transaction()?;
            let Some((revision, compacted)) = tenant_row(&tx, tenant)? else {
                return Ok(Vec::new());
            };
            if since < compacted {
                return Err(StoreError::TooOld {
                    since,
                    oldest: compacted,
                }
                .into());
            }
            if since >= revision {
                return Ok(Vec::new());
            }
            let page = changes(
                &tx,
                CHANGES_AFTER,
                params![tenant, to_db(since), sql_limit(limit.saturating_add(1))],
            )?;
            let page = match whole_commits(page, limit) {
                Ok(page) => page,
                Err(whole) => changes(&tx, CHANGES_AT, params![tenant, to_db(whole)])?,
            };
            tx.finish()?;
            Ok(page)
        })
    }

    fn commit(
        &self,
        tenant: &str,
        base: u64,
        writes: &[Write],
        actor: &str,
        time: i64,
    ) -> Result<u64, StoreError> {
        check_commit(tenant, writes, actor)?;
        self.write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = revision_of(&tx, tenant)?;
            if current != base {
                return Err(StoreError::Conflict { base, current }.into());
            }
            let next = next_revision(current)?;
            tx.prepare_cached(SET_REVISION)?
                .execute(params![tenant, next])?;
            {
                let mut get = tx.prepare_cached(GET)?;
                let mut put = tx.prepare_cached(PUT)?;
                let mut delete = tx.prepare_cached(DELETE)?;
                let mut log = tx.prepare_cached(LOG)?;
                for (seq, write) in (0i64..).zip(writes) {
                    let (ty, id) = (&write.key.entity_type, &write.key.id);
                    let before: Option<String> = get
                        .query_row(params![tenant, ty, id], |row| row.get(0))
                        .optional()?;
                    match &write.after {
                        Some(json) => put.execute(params![tenant, ty, id, json, next])?,
                        None => delete.execute(params![tenant, ty, id])?,
                    };
                    log.execute(params![
                        tenant,
                        next,
                        seq,
                        ty,
                        id,
                        before,
                        write.after,
                        actor,
                        time
                    ])?;
                }
            }
            tx.commit()?;
            Ok(from_db(next)?)
        })
    }

    fn compact(&self, tenant: &str, keep_after: u64) -> Result<u64, StoreError> {
        check_tenant(tenant)?;
        self.write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((revision, compacted)) = tenant_row(&tx, tenant)? else {
                return Ok(0);
            };
            let to = keep_after.min(revision);
            if to <= compacted {
                return Ok(0);
            }
            let dropped = tx
                .prepare_cached(DROP_CHANGES)?
                .execute(params![tenant, to_db(to)])?;
            tx.prepare_cached(SET_COMPACTED)?
                .execute(params![tenant, to_db(to)])?;
            tx.commit()?;
            Ok(u64::try_from(dropped).unwrap_or(u64::MAX))
        })
    }
}

/// Opens a connection to an existing file, with the settings every connection needs. No
/// `SQLITE_OPEN_CREATE` (the file was created with its permissions by [`create_private`]) and
/// no URI file names (a path is a path).
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // The schema is ours: no functions in it, views or triggers may run with privileges.
    conn.pragma_update(None, "trusted_schema", false)?;
    Ok(conn)
}

/// Creates the tables, or brings an older schema up to [`SCHEMA_VERSION`], in one write
/// transaction (so that two processes opening a new file do not both create it).
fn migrate(conn: &mut Connection) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY)",
    )?;
    let found: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Incompatible {
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The tenant's revision, 0 if it has none.
fn revision_of(conn: &Connection, tenant: &str) -> Result<u64, Fail> {
    let revision: Option<i64> = conn
        .prepare_cached(REVISION)?
        .query_row(params![tenant], |row| row.get(0))
        .optional()?;
    Ok(from_db(revision.unwrap_or(0))?)
}

/// The tenant's revision and compaction point, if it has committed.
fn tenant_row(conn: &Connection, tenant: &str) -> Result<Option<(u64, u64)>, Fail> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached(TENANT)?
        .query_row(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match row {
        Some((revision, compacted)) => Ok(Some((from_db(revision)?, from_db(compacted)?))),
        None => Ok(None),
    }
}

/// Reads changes with `sql` (the columns of [`CHANGES_AFTER`]).
fn changes(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Change>, Fail> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut changes = Vec::new();
    while let Some(row) = rows.next()? {
        changes.push(Change {
            revision: from_db(row.get(0)?)?,
            key: EntityKey::new(row.get::<_, String>(1)?, row.get::<_, String>(2)?),
            before: row.get(3)?,
            after: row.get(4)?,
            actor: row.get(5)?,
            time: row.get(6)?,
        });
    }
    Ok(changes)
}

/// An entity row: type, id, json.
fn entity(row: &Row<'_>) -> rusqlite::Result<(EntityKey, String)> {
    Ok((
        EntityKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
        row.get(2)?,
    ))
}

/// The store's error for a failure inside a call.
fn finish<T>(result: Result<T, Fail>) -> Result<T, StoreError> {
    result.map_err(|fail| match fail {
        Fail::Store(e) => e,
        Fail::Db(e) => sqlite_error(&e),
    })
}

/// The store's error for a failure opening `path`.
fn opening(path: &Path, e: rusqlite::Error) -> StoreError {
    match sqlite_error(&e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot open `{}`: {m}", path.display()))
        }
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("`{}`: {m}", path.display())),
        StoreError::Backend(m) => StoreError::Backend(format!("`{}`: {m}", path.display())),
        other => other,
    }
}

/// Sorts SQLite's errors into passing trouble (locks, I/O, a full disk), damage and the rest.
fn sqlite_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::PermissionDenied => StoreError::Unavailable(e.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Creates `path` readable and writable by its owner only, unless it exists. SQLite gives its
/// `-wal` and `-shm` files the database file's permissions.
#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` unless it exists (permissions as the platform gives them).
#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<()> {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory, removed when dropped (also when the test fails).
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_store(name: &str) -> (SqliteStore, TempDir) {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-sqlite-unit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("data.db")).unwrap();
        (store, TempDir(dir))
    }

    /// Every query of a tenant's data searches a primary key; none scans a table or sorts.
    #[test]
    fn queries_search_an_index() {
        let (store, _dir) = temp_store("plans");
        let conn = store.writer.lock().unwrap();
        let queries = [
            REVISION,
            TENANT,
            GET,
            ALL,
            LIST,
            LIST_AFTER,
            LIST_TYPE,
            LIST_TYPE_AFTER,
            CHANGES_AFTER,
            CHANGES_AT,
            DELETE,
            DROP_CHANGES,
            SET_COMPACTED,
        ];
        for sql in queries {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(
                    rusqlite::params_from_iter(std::iter::repeat_n(
                        rusqlite::types::Null,
                        stmt.parameter_count(),
                    )),
                    |row| row.get::<_, String>(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .all(|step| step.starts_with("SEARCH") && !step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// Commits are durable: WAL with `synchronous=FULL`; foreign keys are enforced.
    #[test]
    fn connections_are_durable_and_checked() {
        let (store, _dir) = temp_store("pragmas");
        let conn = store.writer.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
    }

    /// A file from a newer build is refused, not downgraded.
    #[test]
    fn newer_schemas_are_refused() {
        let (store, dir) = temp_store("newer");
        store
            .writer
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        drop(store);
        let err = SqliteStore::open(dir.0.join("data.db")).err().unwrap();
        assert!(
            matches!(err, StoreError::Incompatible { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
    }
}
