//! The PostgreSQL backend: one database shared by several `portcullis serve` replicas
//! ([`PostgresStore`]).

use super::{
    Change, EntityKey, Range, SCHEMA_VERSION, Snapshot, Store, StoreError, Write, check_commit,
    check_key, check_tenant, from_db, next_revision, sql_limit, to_db, whole_commits,
};
use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Connections kept open for reuse.
const IDLE_CONNECTIONS: usize = 4;

/// How long opening a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock that serializes migrations of one database between replicas starting
/// together (the bytes of `portcull`).
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// Schema migrations, in order: `(version, SQL)`. Version 1: the same tables as SQLite's.
/// Keys compare byte-wise (`COLLATE "C"`), as in SQLite, whatever the database's locale:
/// [`Store::list`] pages in the same order on both backends.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"CREATE TABLE tenants (
        tenant TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        revision BIGINT NOT NULL CHECK (revision >= 0),
        -- changes up to this revision were dropped by compaction
        compacted BIGINT NOT NULL DEFAULT 0 CHECK (compacted >= 0 AND compacted <= revision)
    );
    CREATE TABLE entities (
        tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants (tenant),
        type TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        json TEXT NOT NULL,
        -- the revision that last wrote it
        revision BIGINT NOT NULL,
        PRIMARY KEY (tenant, type, id)
    );
    CREATE TABLE changes (
        tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants (tenant),
        revision BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT,
        actor TEXT NOT NULL,
        time BIGINT NOT NULL,
        PRIMARY KEY (tenant, revision, seq)
    );"#,
)];

/// The statements every connection prepares when it opens.
struct Statements {
    revision: Statement,
    tenant: Statement,
    tenants: Statement,
    get: Statement,
    all: Statement,
    list: Statement,
    list_after: Statement,
    list_type: Statement,
    list_type_after: Statement,
    changes_after: Statement,
    changes_at: Statement,
    ensure_tenant: Statement,
    lock_tenant: Statement,
    set_revision: Statement,
    befores: Statement,
    put: Statement,
    delete: Statement,
    log: Statement,
    drop_changes: Statement,
    set_compacted: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        const CHANGE: &str = "SELECT revision, type, id, before_json, after_json, actor, time
            FROM changes WHERE tenant = $1";
        const ENTITY: &str = "SELECT type, id, json FROM entities WHERE tenant = $1";
        Ok(Statements {
            revision: client.prepare("SELECT revision FROM tenants WHERE tenant = $1")?,
            tenant: client.prepare("SELECT revision, compacted FROM tenants WHERE tenant = $1")?,
            tenants: client.prepare("SELECT tenant, revision FROM tenants ORDER BY tenant")?,
            get: client
                .prepare("SELECT json FROM entities WHERE tenant = $1 AND type = $2 AND id = $3")?,
            all: client.prepare(&format!("{ENTITY} ORDER BY type, id"))?,
            list: client.prepare(&format!("{ENTITY} ORDER BY type, id LIMIT $2"))?,
            list_after: client.prepare(&format!(
                "{ENTITY} AND (type, id) > ($2, $3) ORDER BY type, id LIMIT $4"
            ))?,
            list_type: client.prepare(&format!("{ENTITY} AND type = $2 ORDER BY id LIMIT $3"))?,
            list_type_after: client.prepare(&format!(
                "{ENTITY} AND type = $2 AND id > $3 ORDER BY id LIMIT $4"
            ))?,
            changes_after: client.prepare(&format!(
                "{CHANGE} AND revision > $2 ORDER BY revision, seq LIMIT $3"
            ))?,
            changes_at: client.prepare(&format!("{CHANGE} AND revision = $2 ORDER BY seq"))?,
            ensure_tenant: client.prepare(
                "INSERT INTO tenants (tenant, revision) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
            )?,
            lock_tenant: client
                .prepare("SELECT revision, compacted FROM tenants WHERE tenant = $1 FOR UPDATE")?,
            set_revision: client.prepare("UPDATE tenants SET revision = $2 WHERE tenant = $1")?,
            befores: client.prepare(
                "SELECT w.type, w.id, e.json FROM unnest($2::text[], $3::text[]) AS w (type, id)
                JOIN entities e ON e.tenant = $1 AND e.type = w.type AND e.id = w.id",
            )?,
            put: client.prepare(
                "INSERT INTO entities (tenant, type, id, json, revision)
                SELECT $1::text, w.type, w.id, w.json, $5::bigint
                FROM unnest($2::text[], $3::text[], $4::text[]) AS w (type, id, json)
                ON CONFLICT (tenant, type, id)
                DO UPDATE SET json = excluded.json, revision = excluded.revision",
            )?,
            delete: client.prepare(
                "DELETE FROM entities e USING unnest($2::text[], $3::text[]) AS w (type, id)
                WHERE e.tenant = $1 AND e.type = w.type AND e.id = w.id",
            )?,
            log: client.prepare(
                "INSERT INTO changes
                (tenant, revision, seq, type, id, before_json, after_json, actor, time)
                SELECT $1::text, $2::bigint, w.seq, w.type, w.id, w.before, w.after,
                    $8::text, $9::bigint
                FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
                    AS w (seq, type, id, before, after)",
            )?,
            drop_changes: client
                .prepare("DELETE FROM changes WHERE tenant = $1 AND revision <= $2")?,
            set_compacted: client
                .prepare("UPDATE tenants SET compacted = $2 WHERE tenant = $1")?,
        })
    }
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    st: Statements,
}

/// A store in a PostgreSQL database, shared by several `portcullis serve` replicas.
///
/// Commits serialize per tenant across replicas on the tenant's row (`SELECT … FOR UPDATE`
/// in the commit's transaction), so two replicas committing from the same base revision get
/// one success and one [`StoreError::Conflict`]; tenants never wait for each other. A commit
/// takes a fixed number of round trips whatever its size (the writes travel as arrays).
/// Reads that need more than one query ([`Store::snapshot`], [`Store::changes_since`]) run in
/// one `REPEATABLE READ` read-only transaction.
///
/// Connections: a few are kept idle for reuse and more are opened while those are busy. A call
/// whose connection turns out dead (server restarted, connection terminated) fails with
/// [`StoreError::Unavailable`] and drops every idle connection with it, so the next call
/// connects afresh.
///
/// TLS: this build has no TLS for PostgreSQL (no OpenSSL). `sslmode=require` is refused
/// rather than connected in plaintext; plaintext is used to loopback addresses and Unix
/// sockets, and to any other host only with an explicit `sslmode=disable`.
///
/// The `postgres` client runs its own small tokio runtime: call it from a blocking thread,
/// never from async code (it panics there).
///
/// The tables are named `tenants`, `entities`, `changes` and `schema_version`: give the store
/// its own database, or its own schema (`?options=-csearch_path%3Dportcullis` in the URL).
pub struct PostgresStore {
    config: Config,
    idle: Mutex<Vec<Conn>>,
}

/// Its connections are closed on a thread of their own: the blocking client runs a runtime of
/// its own to close one, which panics on a thread that drives async tasks — and the service
/// drops its store there, at shutdown.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        if idle.is_empty() {
            return;
        }
        let closing = std::thread::Builder::new()
            .name("portcullis-pg-close".into())
            .spawn(move || drop(idle));
        if let Ok(thread) = closing {
            let _ = thread.join();
        }
    }
}

/// Where it connects, never the password.
impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// A failure inside a call: PostgreSQL's, or the store's own (a conflict, corrupt data).
enum Fail {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db?param=value`, the
    /// parameters of libpq's connection strings that the `postgres` crate knows), creates or
    /// migrates its tables, and keeps the connection for reuse. Refuses TLS settings this
    /// build cannot honour (see [`PostgresStore`]). Blocking.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Spec(format!("invalid PostgreSQL URL: {e}")))?;
        check_tls(&config)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("portcullis");
        }
        let mut client = config.connect(NoTls).map_err(|e| connecting(&e))?;
        finish(migrate(&mut client))?;
        let st = Statements::prepare(&mut client).map_err(|e| pg_error(&e))?;
        Ok(PostgresStore {
            config,
            idle: Mutex::new(vec![Conn { client, st }]),
        })
    }

    /// Opens a connection and prepares its statements.
    fn open_conn(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(NoTls).map_err(|e| connecting(&e))?;
        let st = Statements::prepare(&mut client).map_err(|e| pg_error(&e))?;
        Ok(Conn { client, st })
    }

    /// Runs `f` on an idle connection or a new one. A connection that broke is dropped, and
    /// so are the idle ones (a restarted server broke them too).
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, Fail>) -> Result<T, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open_conn()?,
        };
        let result = f(&mut conn);
        let broken = conn.client.is_closed() || matches!(&result, Err(Fail::Db(e)) if is_broken(e));
        if broken {
            let stale =
                std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
            drop(stale);
        } else {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
        finish(result)
    }
}

impl Store for PostgresStore {
    fn revision(&self, tenant: &str) -> Result<u64, StoreError> {
        check_tenant(tenant)?;
        self.with(|Conn { client, st }| revision_of(client, &st.revision, tenant))
    }

    fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|Conn { client, st }| {
            let mut tenants = Vec::new();
            for row in client.query(&st.tenants, &[])? {
                tenants.push((row.try_get(0)?, from_db(row.try_get(1)?)?));
            }
            Ok(tenants)
        })
    }

    fn get(&self, tenant: &str, key: &EntityKey) -> Result<Option<String>, StoreError> {
        check_tenant(tenant)?;
        check_key(key)?;
        self.with(|Conn { client, st }| {
            let row = client.query_opt(&st.get, &[&tenant, &key.entity_type, &key.id])?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
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
        self.with(|Conn { client, st }| {
            let rows = match Range::new(entity_type, after) {
                Range::All => client.query(&st.list, &[&tenant, &limit])?,
                Range::After(a) => {
                    client.query(&st.list_after, &[&tenant, &a.entity_type, &a.id, &limit])?
                }
                Range::Type(t) => client.query(&st.list_type, &[&tenant, &t, &limit])?,
                Range::TypeAfter(t, id) => {
                    client.query(&st.list_type_after, &[&tenant, &t, &id, &limit])?
                }
                Range::Empty => Vec::new(),
            };
            entities(&rows)
        })
    }

    fn snapshot(&self, tenant: &str) -> Result<Snapshot, StoreError> {
        check_tenant(tenant)?;
        self.with(|Conn { client, st }| {
            let mut tx = read_transaction(client)?;
            let revision = revision_of(&mut tx, &st.revision, tenant)?;
            let entities = entities(&tx.query(&st.all, &[&tenant])?)?;
            tx.commit()?;
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
        self.with(|Conn { client, st }| {
            let mut tx = read_transaction(client)?;
            let Some((revision, compacted)) = tenant_row(&mut tx, &st.tenant, tenant)? else {
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
            let rows = tx.query(
                &st.changes_after,
                &[&tenant, &to_db(since), &sql_limit(limit.saturating_add(1))],
            )?;
            let page = match whole_commits(changes(&rows)?, limit) {
                Ok(page) => page,
                Err(whole) => changes(&tx.query(&st.changes_at, &[&tenant, &to_db(whole)])?)?,
            };
            tx.commit()?;
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
        self.with(|Conn { client, st }| {
            let mut tx = client.transaction()?;
            // The tenant's row exists (revision 0 if new, undone if this commit is) and is
            // locked: commits of the tenant from every replica queue here.
            tx.execute(&st.ensure_tenant, &[&tenant])?;
            let current = from_db(tx.query_one(&st.lock_tenant, &[&tenant])?.try_get(0)?)?;
            if current != base {
                return Err(StoreError::Conflict { base, current }.into());
            }
            let next = next_revision(current)?;
            let types: Vec<&str> = writes.iter().map(|w| w.key.entity_type.as_str()).collect();
            let ids: Vec<&str> = writes.iter().map(|w| w.key.id.as_str()).collect();
            let mut stored: HashMap<(String, String), String> = HashMap::new();
            for row in tx.query(&st.befores, &[&tenant, &types, &ids])? {
                stored.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
            }
            let befores: Vec<Option<String>> = writes
                .iter()
                .map(|w| stored.remove(&(w.key.entity_type.clone(), w.key.id.clone())))
                .collect();
            let (puts, deletes): (Vec<&Write>, Vec<&Write>) =
                writes.iter().partition(|w| w.after.is_some());
            if !puts.is_empty() {
                let types: Vec<&str> = puts.iter().map(|w| w.key.entity_type.as_str()).collect();
                let ids: Vec<&str> = puts.iter().map(|w| w.key.id.as_str()).collect();
                let jsons: Vec<&str> = puts.iter().filter_map(|w| w.after.as_deref()).collect();
                tx.execute(&st.put, &[&tenant, &types, &ids, &jsons, &next])?;
            }
            if !deletes.is_empty() {
                let types: Vec<&str> = deletes.iter().map(|w| w.key.entity_type.as_str()).collect();
                let ids: Vec<&str> = deletes.iter().map(|w| w.key.id.as_str()).collect();
                tx.execute(&st.delete, &[&tenant, &types, &ids])?;
            }
            let seqs: Vec<i64> = (0i64..).take(writes.len()).collect();
            let afters: Vec<Option<&str>> = writes.iter().map(|w| w.after.as_deref()).collect();
            tx.execute(
                &st.log,
                &[
                    &tenant, &next, &seqs, &types, &ids, &befores, &afters, &actor, &time,
                ],
            )?;
            tx.execute(&st.set_revision, &[&tenant, &next])?;
            tx.commit()?;
            Ok(from_db(next)?)
        })
    }

    fn compact(&self, tenant: &str, keep_after: u64) -> Result<u64, StoreError> {
        check_tenant(tenant)?;
        self.with(|Conn { client, st }| {
            let mut tx = client.transaction()?;
            let Some(row) = tx.query_opt(&st.lock_tenant, &[&tenant])? else {
                return Ok(0);
            };
            let revision = from_db(row.try_get(0)?)?;
            let compacted = from_db(row.try_get(1)?)?;
            let to = keep_after.min(revision);
            if to <= compacted {
                return Ok(0);
            }
            let dropped = tx.execute(&st.drop_changes, &[&tenant, &to_db(to)])?;
            tx.execute(&st.set_compacted, &[&tenant, &to_db(to)])?;
            tx.commit()?;
            Ok(dropped)
        })
    }
}

/// Refuses connection settings that would need TLS, or that would send data in plaintext
/// beyond this machine without being told to.
fn check_tls(config: &Config) -> Result<(), StoreError> {
    match config.get_ssl_mode() {
        SslMode::Disable => Ok(()),
        SslMode::Prefer if is_local(config) => Ok(()),
        SslMode::Prefer => Err(StoreError::Spec(
            "this build has no TLS for PostgreSQL, and the server is not on a loopback address \
             or a Unix socket: add `sslmode=disable` to the URL to connect in plaintext anyway"
                .into(),
        )),
        _ => Err(StoreError::Spec(
            "the URL asks for TLS (`sslmode`), which this build's PostgreSQL client does not \
             have: connect over loopback or a Unix socket instead"
                .into(),
        )),
    }
}

/// Whether every address the configuration may connect to is on this machine.
fn is_local(config: &Config) -> bool {
    if !config.get_hostaddrs().is_empty() {
        return config.get_hostaddrs().iter().all(IpAddr::is_loopback);
    }
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

/// Creates the tables, or brings an older schema up to [`SCHEMA_VERSION`], in one transaction
/// holding an advisory lock (replicas starting together migrate one after the other).
fn migrate(client: &mut Client) -> Result<(), Fail> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL PRIMARY KEY)",
    )?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Incompatible {
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A read-only transaction that sees one state of the database throughout.
fn read_transaction(client: &mut Client) -> Result<postgres::Transaction<'_>, postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

/// The tenant's revision, 0 if it has none.
fn revision_of(
    client: &mut impl GenericClient,
    revision: &Statement,
    tenant: &str,
) -> Result<u64, Fail> {
    match client.query_opt(revision, &[&tenant])? {
        Some(row) => Ok(from_db(row.try_get(0)?)?),
        None => Ok(0),
    }
}

/// The tenant's revision and compaction point, if it has committed.
fn tenant_row(
    client: &mut impl GenericClient,
    tenant_stmt: &Statement,
    tenant: &str,
) -> Result<Option<(u64, u64)>, Fail> {
    match client.query_opt(tenant_stmt, &[&tenant])? {
        Some(row) => Ok(Some((from_db(row.try_get(0)?)?, from_db(row.try_get(1)?)?))),
        None => Ok(None),
    }
}

/// Entity rows: type, id, json.
fn entities(rows: &[Row]) -> Result<Vec<(EntityKey, String)>, Fail> {
    let mut entities = Vec::with_capacity(rows.len());
    for row in rows {
        let key = EntityKey::new(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
        entities.push((key, row.try_get(2)?));
    }
    Ok(entities)
}

/// Change rows: revision, type, id, before, after, actor, time.
fn changes(rows: &[Row]) -> Result<Vec<Change>, Fail> {
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        changes.push(Change {
            revision: from_db(row.try_get(0)?)?,
            key: EntityKey::new(row.try_get::<_, String>(1)?, row.try_get::<_, String>(2)?),
            before: row.try_get(3)?,
            after: row.try_get(4)?,
            actor: row.try_get(5)?,
            time: row.try_get(6)?,
        });
    }
    Ok(changes)
}

/// The store's error for a failure inside a call.
fn finish<T>(result: Result<T, Fail>) -> Result<T, StoreError> {
    result.map_err(|fail| match fail {
        Fail::Store(e) => e,
        Fail::Db(e) => pg_error(&e),
    })
}

/// The store's error for a connection that could not be opened.
fn connecting(e: &postgres::Error) -> StoreError {
    match pg_error(e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {m}"))
        }
        StoreError::Backend(m) => StoreError::Backend(format!("cannot connect to PostgreSQL: {m}")),
        other => other,
    }
}

/// Whether the connection that returned `e` is unusable: the server closed it, the socket
/// failed, or the server is going away.
fn is_broken(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => matches!(&db.code().code()[..2], "08" | "57"),
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// Sorts PostgreSQL's errors into passing trouble (connections, resources, the server
/// shutting down, serialization failures), damage and the rest.
fn pg_error(e: &postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return if e.is_closed()
            || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Backend(e.to_string())
        };
    };
    let message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    let code = db.code();
    if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        return StoreError::Corrupt(message);
    }
    match code.code().get(..2) {
        Some("08" | "40" | "53" | "57" | "58") => StoreError::Unavailable(message),
        _ => StoreError::Backend(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<(), StoreError> {
        check_tls(&url.parse().unwrap())
    }

    #[test]
    fn plaintext_stays_on_this_machine_unless_asked() {
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgresql://u@%2Frun%2Fpostgresql/db",
            "postgres://u@db.example.com/db?sslmode=disable",
            "postgres://u@db.example.com/db?hostaddr=127.0.0.1",
        ] {
            assert!(tls(url).is_ok(), "{url}");
        }
        for url in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5/db?sslmode=prefer",
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost,db.example.com/db",
        ] {
            assert!(matches!(tls(url), Err(StoreError::Spec(_))), "{url}");
        }
    }

    #[test]
    fn bad_urls_do_not_echo_passwords() {
        let store = PostgresStore {
            config: "postgres://u:hunter2@localhost:5/db".parse().unwrap(),
            idle: Mutex::new(Vec::new()),
        };
        let debug = format!("{store:?}");
        assert!(
            debug.contains("localhost") && !debug.contains("hunter2"),
            "{debug}"
        );
        let err = PostgresStore::connect("postgres://u:hunter2@localhost/db?sslmode=bogus")
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Spec(_)), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
