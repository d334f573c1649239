//! PostgreSQL: one schema per service, its own migrations run at start-up
//! beside the kit's (outbox, inbox), and the helpers every service uses.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// The outbox and inbox tables, created in each service's own schema.
static KIT_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("GUICHET_DATABASE_URL is not a PostgreSQL URL")]
    BadUrl(#[source] sqlx::Error),
    #[error("cannot reach PostgreSQL")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create schema {schema}")]
    Schema {
        schema: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// A pool whose connections see only `schema` (and create it if needed).
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
    let mut conn = sqlx::PgConnection::connect_with(&options)
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
    let _ = conn.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.options([("search_path", schema)]))
        .await
        .map_err(DbError::Connect)
}

/// Runs the kit's migrations and then the service's, in the pool's schema.
/// Both sets share the schema's `_sqlx_migrations` table, so each must ignore
/// the other's rows; the copies below only switch that on (the fields are the
/// ones `sqlx::migrate!` itself fills, pinned by the lock file).
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), DbError> {
    let mut kit = Migrator {
        migrations: KIT_MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    kit.set_ignore_missing(true);
    kit.run(pool).await.map_err(DbError::Migrate)?;
    let mut own = Migrator {
        migrations: service.migrations.clone(),
        ..Migrator::DEFAULT
    };
    own.set_ignore_missing(true);
    own.run(pool).await.map_err(DbError::Migrate)?;
    Ok(())
}

/// SQLSTATE 23505: the one place a unique violation is recognised.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Errors that mean the database is unreachable rather than the query wrong.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || matches!(err, sqlx::Error::Database(db)
        // admin_shutdown, crash_shutdown, cannot_connect_now, connection_failure
        if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "08006" | "08003" | "08001")))
}
