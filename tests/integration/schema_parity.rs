//! Each service keeps its schema twice, once per backend. This applies both
//! migration sets (the kit's outbox and inbox included) and compares what
//! they make: the tables, their columns, which columns may be null, and the
//! named indexes. Types are not compared: SQLite stores dates as text by
//! design. A column or index added to one set and not the other fails here.

use crate::common;

use std::collections::BTreeSet;

use common::{Backend, TestEnv};
use guichet_kit::db::{Database, Migrations, Pool};

/// (table, column, nullable)
type Columns = BTreeSet<(String, String, bool)>;

struct Schema {
    columns: Columns,
    indexes: BTreeSet<String>,
}

/// sqlx's own bookkeeping, not part of any service's schema.
const IGNORED_TABLES: &[&str] = &["_sqlx_migrations"];

async fn postgres_schema(url: &str, schema: &str, migrations: &Migrations) -> Schema {
    let dir = std::env::temp_dir().join(format!("parity-{schema}"));
    let db = Database::open(Some(url), &dir, schema, Pool::sized(2), migrations)
        .await
        .unwrap();
    let pool = db.postgres().unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let columns = rows
        .into_iter()
        .filter(|(t, _, _)| !IGNORED_TABLES.contains(&t.as_str()))
        .map(|(t, c, n)| (t, c, n == "YES"))
        .collect();
    // Indexes behind primary keys and UNIQUE constraints are named by
    // PostgreSQL itself; SQLite's are unnamed. Only indexes the migrations
    // name are compared.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT i.indexname::text FROM pg_indexes i WHERE i.schemaname = $1 \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_namespace n \
             ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname = i.indexname)",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    db.close().await;
    Schema {
        columns,
        indexes: indexes
            .into_iter()
            .filter(|i| !IGNORED_TABLES.iter().any(|t| i.starts_with(t)))
            .collect(),
    }
}

async fn sqlite_schema(schema: &str, migrations: &Migrations) -> Schema {
    let dir = std::env::temp_dir().join(format!(
        "guichet-parity-{schema}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let db = Database::open(None, &dir, schema, Pool::sized(1), migrations)
        .await
        .unwrap();
    let Database::Sqlite(pool) = &db else {
        panic!("no URL opens SQLite");
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for table in tables
        .into_iter()
        .filter(|t| !IGNORED_TABLES.contains(&t.as_str()))
    {
        let info: Vec<(String, bool, i64)> = sqlx::query_as(&format!(
            "SELECT name, \"notnull\", pk FROM pragma_table_info('{table}')"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        for (column, not_null, pk) in info {
            // A primary key column is never null, whatever the pragma says.
            columns.insert((table.clone(), column, !not_null && pk == 0));
        }
    }
    // Indexes without SQL are the ones SQLite makes for keys and UNIQUE.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Schema {
        columns,
        indexes: indexes.into_iter().collect(),
    }
}

fn differences<T: Ord + std::fmt::Debug + Clone>(
    what: &str,
    postgres: &BTreeSet<T>,
    sqlite: &BTreeSet<T>,
) -> Vec<String> {
    let mut out = Vec::new();
    for only in postgres.difference(sqlite) {
        out.push(format!("{what} only on PostgreSQL: {only:?}"));
    }
    for only in sqlite.difference(postgres) {
        out.push(format!("{what} only on SQLite: {only:?}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_migration_sets_make_the_same_schema() {
    let env = TestEnv::on(Backend::Servers).await;
    let url = env.database_url.clone().unwrap();
    let services: [(&str, &Migrations); 5] = [
        (
            guichet_instruction::server::SCHEMA,
            &guichet_instruction::server::MIGRATIONS,
        ),
        ("intake_web", &guichet_intake::MIGRATIONS),
        (
            guichet_intake_ccc::server::SCHEMA,
            &guichet_intake_ccc::server::MIGRATIONS,
        ),
        (
            guichet_intake_pan::server::SCHEMA,
            &guichet_intake_pan::server::MIGRATIONS,
        ),
        (
            guichet_intake_postal::server::SCHEMA,
            &guichet_intake_postal::server::MIGRATIONS,
        ),
    ];
    let mut problems = Vec::new();
    for (schema, migrations) in services {
        let pg = postgres_schema(&url, schema, migrations).await;
        let lite = sqlite_schema(schema, migrations).await;
        assert!(!pg.columns.is_empty(), "{schema}: no tables on PostgreSQL");
        for p in differences(
            "column (table, column, nullable)",
            &pg.columns,
            &lite.columns,
        )
        .into_iter()
        .chain(differences("index", &pg.indexes, &lite.indexes))
        {
            problems.push(format!("{schema}: {p}"));
        }
    }
    env.cleanup().await;
    assert!(
        problems.is_empty(),
        "the two migration sets differ:\n{}",
        problems.join("\n")
    );
}
