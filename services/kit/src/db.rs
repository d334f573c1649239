//! Storage: PostgreSQL in production (one schema per service), SQLite files
//! in the embedded default (one file per service). Each service keeps its SQL
//! for both in its own store; this module opens them, runs the migrations
//! (the kit's outbox and inbox, then the service's own) and recognises errors
//! the same way for both.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, SqlitePool};

static KIT_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static KIT_SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A service's database: the same store code runs on either.
#[derive(Clone, Debug)]
pub enum Database {
    /// The pool, and how long a caller waits for a statement's answer
    /// (`Pool::answer_bound`), which every statement run through `sql` has.
    Postgres(PgPool, Duration),
    Sqlite(SqlitePool),
}

/// A service's own migrations, per backend: one or more sets (a channel
/// service runs the shared intake ledger's and its own), applied in order.
/// Versions must be unique across the sets of one service.
pub struct Migrations {
    pub postgres: &'static [&'static Migrator],
    pub sqlite: &'static [&'static Migrator],
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("GUICHET_DATABASE_URL is not a PostgreSQL URL")]
    BadUrl(#[source] sqlx::Error),
    #[error("cannot reach the database")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create schema {schema}")]
    Schema {
        schema: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data folder {0}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error("migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error(
        "connections land in schema {found:?}, not {schema:?}: through a pooler, this \
         service's pooler database must set search_path to {schema} (connect_query)"
    )]
    WrongSchema { schema: String, found: String },
    #[error("cannot take the migration lock of schema {schema}")]
    MigrationLock {
        schema: String,
        #[source]
        source: sqlx::Error,
    },
}

impl Database {
    /// PostgreSQL when `database_url` is set (in `schema`), otherwise the
    /// SQLite file `<data_dir>/<schema>.sqlite`. Migrated either way.
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
        schema: &str,
        pool: Pool,
        migrations: &Migrations,
    ) -> Result<Self, DbError> {
        match database_url {
            Some(url) => {
                // One connection of its own creates the schema, then holds
                // the migration lock while a pool with no statement bound
                // migrates: a long migration (an index on a big table) must
                // finish. The service's pool comes after, with its bound.
                let options = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
                let mut own = create_schema(&options, schema).await?;
                let migrated = migrate_unbound(&mut own, &options, schema, migrations).await;
                let _ = own.close().await;
                migrated?;
                Ok(Database::Postgres(
                    pool_in_schema(options, schema, pool).await?,
                    pool.answer_bound(),
                ))
            }
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| DbError::DataDir(data_dir.to_path_buf(), e))?;
                let pool =
                    sqlite_pool(&data_dir.join(format!("{schema}.sqlite")), pool.size.min(4))
                        .await
                        .map_err(DbError::Connect)?;
                run(&pool, &KIT_SQLITE, migrations.sqlite, true).await?;
                Ok(Database::Sqlite(pool))
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(..) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// For tests and tools that look at the tables directly.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Database::Postgres(p, _) => Some(p),
            Database::Sqlite(_) => None,
        }
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(p, _) => p.close().await,
            Database::Sqlite(p) => p.close().await,
        }
    }
}

/// How a service's PostgreSQL pool is made: how many connections, and how
/// long one statement may hold one (`GUICHET_DB_STATEMENT_TIMEOUT_MS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub size: u32,
    /// Sent at connect as `statement_timeout` and
    /// `idle_in_transaction_session_timeout`; `None` for no bound.
    pub statement_timeout: Option<Duration>,
}

/// The bound a pool has unless the configuration says otherwise: far longer
/// than any statement of Guichet's takes, far shorter than for ever.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

impl Pool {
    /// `size` connections with the default statement bound.
    pub fn sized(size: u32) -> Self {
        Pool {
            size,
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
        }
    }

    /// The same bound with another size: a tool that needs few connections.
    pub fn with_size(self, size: u32) -> Self {
        Pool { size, ..self }
    }

    /// How long a caller waits for the answer to one statement. The server
    /// ends a statement at its bound; this is for a server that does not
    /// answer at all (a host gone, a network dropping packets), which sqlx
    /// would wait on for ever: it sets no TCP keepalive and has no time
    /// bound of its own.
    pub fn answer_bound(&self) -> Duration {
        self.statement_timeout
            .map_or(UNBOUND_ANSWER, |bound| bound + ANSWER_GRACE)
    }
}

/// Beyond the statement bound, for the server's cancellation to come back.
const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// The wait for an answer when statements have no bound.
const UNBOUND_ANSWER: Duration = Duration::from_secs(300);

/// `statement` within `bound`: past it, an I/O error that says so (the
/// database unavailable, for the caller). The connection it held is
/// dropped with the future; sqlx pings it, with no bound of its own, before
/// it serves again, so a connection whose peer is gone holds its place in
/// the pool until the kernel gives up on it (README, "A held lock").
/// Every statement the kit runs on PostgreSQL goes through here (`sql`).
pub async fn answered_within<T>(
    bound: Duration,
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(bound, statement)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("PostgreSQL did not answer within {bound:?}"),
            )))
        })
}

/// A pool whose connections see only `schema` (created if needed).
pub async fn postgres_pool(url: &str, schema: &str, pool: Pool) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
    let _ = create_schema(&options, schema).await?.close().await;
    pool_in_schema(options, schema, pool).await
}

/// Migrates `schema` on a pool of one connection with no statement bound,
/// holding the migration lock on `own` meanwhile.
async fn migrate_unbound(
    own: &mut sqlx::PgConnection,
    options: &PgConnectOptions,
    schema: &str,
    migrations: &Migrations,
) -> Result<(), DbError> {
    let unbound = Pool {
        size: 1,
        statement_timeout: None,
    };
    let pool = pool_in_schema(options.clone(), schema, unbound).await?;
    let ran = migrate_postgres(own, schema, &pool, migrations.postgres).await;
    pool.close().await;
    ran
}

/// Creates `schema` if it is not there yet, on a connection of its own,
/// which it hands back.
async fn create_schema(
    options: &PgConnectOptions,
    schema: &str,
) -> Result<sqlx::PgConnection, DbError> {
    let mut conn = sqlx::PgConnection::connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.replace('"', "")
    );
    if let Err(source) = sqlx::query(&create).execute(&mut conn).await
        && !is_unique_violation(&source)
    {
        return Err(DbError::Schema {
            schema: schema.to_string(),
            source,
        });
    }
    Ok(conn)
}

/// A pool of `options` whose connections see only `schema`, which exists.
async fn pool_in_schema(
    options: PgConnectOptions,
    schema: &str,
    pool: Pool,
) -> Result<PgPool, DbError> {
    // Named after the service, so `pg_stat_activity` says who holds what.
    let mut options = options
        .application_name(&application_name(schema))
        .options([("search_path", schema)]);
    if let Some(bound) = pool.statement_timeout {
        // Milliseconds, PostgreSQL's unit for both. A stuck statement or a
        // lock wait is cancelled (57014); a transaction left idle ends its
        // session (25P03), which lets go of its locks.
        let ms = bound.as_millis().max(1).to_string();
        options = options.options([
            ("statement_timeout", ms.as_str()),
            ("idle_in_transaction_session_timeout", ms.as_str()),
        ]);
    }
    let connections = PgPoolOptions::new()
        .max_connections(pool.size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    // A pooler drops the startup `options` (PgBouncer is told to ignore
    // them) and sets the schema itself. One that does not would put the
    // service's tables in another schema: refuse to start instead.
    let (found, bound): (Option<String>, String) =
        sqlx::query_as("SELECT current_schema(), current_setting('statement_timeout')")
            .fetch_one(&connections)
            .await
            .map_err(DbError::Connect)?;
    if pool.statement_timeout.is_some() && bound == "0" {
        // The same pooler drops the bound: it must set it too. A missing
        // bound is a risk, not misplaced data, so the service still starts.
        tracing::warn!(
            schema,
            "PostgreSQL statements have no time bound: through a pooler, set \
             statement_timeout and idle_in_transaction_session_timeout in the \
             connect_query of this service's pooler database"
        );
    }
    // NULL: no schema of the search path exists. Refused below all the
    // same, the service's schema never being the empty name.
    let found = found.unwrap_or_default();
    if found != schema {
        connections.close().await;
        return Err(DbError::WrongSchema {
            schema: schema.to_string(),
            found,
        });
    }
    Ok(connections)
}

/// How long an instance waits between two tries at the migration lock.
const MIGRATION_LOCK_RETRY: Duration = Duration::from_millis(200);

/// Runs the migrations while holding a transaction-scoped advisory lock on
/// `conn`, a connection apart from the pool, so that instances starting
/// together migrate one at a time. sqlx's own lock is session-scoped, and
/// through a pooler in transaction mode its unlock may reach another server
/// connection than its lock did; a transaction keeps one server connection
/// until it ends. The lock is tried rather than waited for, so an instance
/// waiting for it holds no server connection of the pooler's.
async fn migrate_postgres(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    pool: &PgPool,
    own: &[&'static Migrator],
) -> Result<(), DbError> {
    let lock_failed = |source| DbError::MigrationLock {
        schema: schema.to_string(),
        source,
    };
    let key = format!("guichet.migrations.{schema}");
    let lock = loop {
        let mut tx = conn.begin().await.map_err(lock_failed)?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(&key)
            .fetch_one(&mut *tx)
            .await
            .map_err(lock_failed)?;
        if held {
            break tx;
        }
        tx.rollback().await.map_err(lock_failed)?;
        tokio::time::sleep(MIGRATION_LOCK_RETRY).await;
    };
    let ran = run(pool, &KIT_POSTGRES, own, false).await;
    // Ending the transaction gives the lock up, whatever the migrations did.
    let _ = lock.rollback().await;
    ran
}

/// The `application_name` a service's connections carry: `guichet/<schema>`.
pub fn application_name(schema: &str) -> String {
    format!("guichet/{schema}")
}

/// A PostgreSQL `url` with its database name replaced by `name`: how a test
/// or a bench points at the database it made for itself.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A SQLite pool in WAL mode: readers never wait for the writer, and a
/// committed transaction survives the process being killed.
pub async fn sqlite_pool(path: &Path, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Runs the kit's migrations and then the service's, in one schema or file.
/// Both sets share its `_sqlx_migrations` table, so each must ignore the
/// other's rows; the copies below only switch that on (the fields are the ones
/// `sqlx::migrate!` itself fills, pinned by the lock file).
async fn run<DB>(
    pool: &sqlx::Pool<DB>,
    kit: &'static Migrator,
    own: &[&'static Migrator],
    locking: bool,
) -> Result<(), DbError>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
{
    for set in std::iter::once(kit).chain(own.iter().copied()) {
        let mut m = Migrator {
            migrations: set.migrations.clone(),
            ..Migrator::DEFAULT
        };
        m.set_ignore_missing(true);
        m.set_locking(locking);
        m.run(pool).await.map_err(DbError::Migrate)?;
    }
    Ok(())
}

/// A unique or primary-key violation, on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A stored row that came back but does not decode (a column of another
/// type, or a value its conversion refuses): damaged data, named by what the
/// row is and its key. An internal error, never a value to guess.
#[derive(Debug, thiserror::Error)]
#[error("{row} cannot be read back")]
pub struct Unreadable {
    pub row: String,
    #[source]
    pub source: sqlx::Error,
}

/// Sorts the error of a read: `Unreadable`, naming the row `row()` says,
/// when what came back does not decode; the database's own error otherwise.
pub fn reading<E>(row: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> E
where
    E: From<Unreadable> + From<sqlx::Error>,
{
    move |source| match source {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            Unreadable { row: row(), source }.into()
        }
        other => other.into(),
    }
}

/// Errors that mean the database is unreachable or busy rather than the
/// query wrong: worth retrying, and a 503 for the person meanwhile.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || matches!(err, sqlx::Error::Database(db)
        // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now,
        // connection failures, too many connections, and the database not
        // accepting connections (55000, what `ALLOW_CONNECTIONS false` answers
        // at connect); a statement past its bound (57014), a session ended
        // for idling in a transaction (25P03), a lock not had in time
        // (55P03). SQLite: busy, locked.
        if matches!(db.code().as_deref(),
            Some("57P01" | "57P02" | "57P03" | "08006" | "08003" | "08001" | "53300" | "55000"
                | "57014" | "25P03" | "55P03"
                | "5" | "6" | "517" | "261")))
}

/// The statement, or the wait for a connection, ran out of time: trying
/// again at once would most likely wait as long.
pub fn is_out_of_time(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::PoolTimedOut)
        // `answered_within`'s.
        || matches!(err, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
        || matches!(err, sqlx::Error::Database(db)
            // query_canceled (the statement bound), lock_not_available.
            if matches!(db.code().as_deref(), Some("57014" | "55P03")))
}

/// Errors where the same transaction may well succeed if tried again:
/// serialization failures and deadlocks (PostgreSQL).
pub fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum ReadError {
        #[error(transparent)]
        Unreadable(#[from] Unreadable),
        #[error(transparent)]
        Db(#[from] sqlx::Error),
    }

    #[test]
    fn a_row_that_does_not_decode_is_named_other_errors_pass() {
        let damaged = sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: "\"lost\" is not a known state".into(),
        };
        match reading::<ReadError>(|| "envelope e1".into())(damaged) {
            ReadError::Unreadable(e) => assert_eq!(e.row, "envelope e1"),
            other => panic!("{other:?}"),
        }
        let down = reading::<ReadError>(|| panic!("only a row that came back is named"));
        assert!(matches!(
            down(sqlx::Error::PoolTimedOut),
            ReadError::Db(sqlx::Error::PoolTimedOut)
        ));
    }

    #[test]
    fn database_name_is_replaced() {
        let table = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/b",
            ),
            (
                "postgres://u@h/test?sslmode=disable",
                "postgres://u@h/b?sslmode=disable",
            ),
            ("postgres://u@h", "postgres://u@h/b"),
        ];
        for (url, expected) in table {
            assert_eq!(with_database(url, "b"), expected, "{url}");
        }
    }
}
