//! The bench's own corner of the shared servers: a RabbitMQ vhost and a
//! PostgreSQL database made for this run and dropped after it, so a bench
//! never disturbs the tests or the other benches running at the same time.

use anyhow::Context;
use sqlx::PgPool;

/// Where the servers are; the bench makes its vhost and database from these.
#[derive(Debug, Clone, clap::Args)]
pub struct Servers {
    /// PostgreSQL URL the bench creates its own database from.
    #[arg(
        long,
        env = "GUICHET_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub admin_database_url: String,
    /// RabbitMQ URL without a vhost; the bench makes its own vhosts.
    #[arg(
        long,
        env = "GUICHET_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672"
    )]
    pub broker_url: String,
    /// RabbitMQ management API, to create and delete the vhosts.
    #[arg(
        long,
        env = "GUICHET_BENCH_RABBITMQ_API",
        default_value = "http://127.0.0.1:15672"
    )]
    pub broker_api: String,
    /// Management API user and password.
    #[arg(long, env = "GUICHET_BENCH_RABBITMQ_USER", default_value = "guest")]
    pub broker_user: String,
    #[arg(long, env = "GUICHET_BENCH_RABBITMQ_PASSWORD", default_value = "guest")]
    pub broker_password: String,
}

/// Counters of the work the servers did for a run, at one moment.
#[derive(Debug, Clone, Default)]
pub struct WorkDone {
    pub commits: i64,
    /// Per `schema.table`: rows inserted, updated, deleted.
    pub rows: std::collections::BTreeMap<String, [i64; 3]>,
    pub published: i64,
    pub confirmed: i64,
    pub delivered: i64,
    pub acked: i64,
}

/// One vhost and one database, both named `name`.
pub struct Scratch {
    pub name: String,
    pub database_url: String,
    pub amqp_url: String,
    admin: PgPool,
    servers: Servers,
    http: reqwest::Client,
}

impl Scratch {
    pub async fn create(servers: &Servers, name: &str) -> anyhow::Result<Self> {
        let admin = PgPool::connect(&servers.admin_database_url)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL is not reachable at {}: start it or set GUICHET_BENCH_DATABASE_URL",
                    servers.admin_database_url
                )
            })?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .with_context(|| format!("creating the database {name}"))?;
        let http = reqwest::Client::new();
        let scratch = Self {
            name: name.to_string(),
            database_url: guichet_kit::db::with_database(&servers.admin_database_url, name),
            amqp_url: format!("{}/{name}", servers.broker_url.trim_end_matches('/')),
            admin,
            servers: servers.clone(),
            http,
        };
        // From here on, a failure still drops the database.
        if let Err(e) = scratch.create_vhost().await {
            scratch.drop_all().await;
            return Err(e);
        }
        Ok(scratch)
    }

    async fn create_vhost(&self) -> anyhow::Result<()> {
        let api = &self.servers.broker_api;
        for (path, body) in [
            (format!("/api/vhosts/{}", self.name), serde_json::json!({})),
            (
                format!(
                    "/api/permissions/{}/{}",
                    self.name, self.servers.broker_user
                ),
                serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
            ),
        ] {
            let answer = self
                .http
                .put(format!("{api}{path}"))
                .basic_auth(
                    &self.servers.broker_user,
                    Some(&self.servers.broker_password),
                )
                .json(&body)
                .send()
                .await
                .with_context(|| {
                    format!(
                        "the RabbitMQ management API is not reachable at {api}: \
                         run `rabbitmq-plugins enable rabbitmq_management`"
                    )
                })?;
            anyhow::ensure!(
                answer.status().is_success(),
                "RabbitMQ refused PUT {path}: {}",
                answer.status()
            );
        }
        Ok(())
    }

    /// PostgreSQL's server processes serving this database now (one per
    /// connection), to count their CPU time.
    pub async fn backend_pids(&self) -> Vec<u32> {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(&self.name)
                .fetch_all(&self.admin)
                .await
                .unwrap_or_default();
        pids.into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect()
    }

    /// What the run's database and vhost have done so far: transactions
    /// committed, rows written per table, and the broker's message counts.
    /// `db` is a connection to the run's database (table figures are per
    /// database). The broker samples its figures every 5 s: read them once
    /// it has had the time.
    /// A figure that cannot be read fails the run: a count read as zero
    /// would give plausible but false figures per filing.
    pub async fn work_done(&self, db: &PgPool) -> anyhow::Result<WorkDone> {
        let commits: i64 =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.name)
                .fetch_one(&self.admin)
                .await
                .context("reading the run's transactions from pg_stat_database")?;
        let tables: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del \
             FROM pg_stat_user_tables",
        )
        .fetch_all(db)
        .await
        .context("reading the run's row writes from pg_stat_user_tables")?;
        let stats: serde_json::Value = self
            .vhost(reqwest::Method::GET)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("reading the vhost's message figures from the RabbitMQ management API")?
            .json()
            .await
            .context("the vhost's message figures")?;
        // A counter is absent until its first message: zero, truly.
        let count = |name: &str| stats["message_stats"][name].as_i64().unwrap_or(0);
        Ok(WorkDone {
            commits,
            rows: tables
                .into_iter()
                .map(|(table, ins, upd, del)| (table, [ins, upd, del]))
                .collect(),
            published: count("publish"),
            confirmed: count("confirm"),
            delivered: count("deliver_get"),
            acked: count("ack"),
        })
    }

    /// A call on the run's vhost in the management API.
    fn vhost(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.http
            .request(
                method,
                format!("{}/api/vhosts/{}", self.servers.broker_api, self.name),
            )
            .basic_auth(
                &self.servers.broker_user,
                Some(&self.servers.broker_password),
            )
    }

    /// Deletes the vhost (with its queues) and drops the database.
    pub async fn drop_all(&self) {
        let _ = self.vhost(reqwest::Method::DELETE).send().await;
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await;
    }
}
