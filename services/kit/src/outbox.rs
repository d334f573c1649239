//! The transactional outbox. A service calls `enqueue` inside the transaction
//! that records its state change; the relay publishes unsent rows in batches
//! and marks a row sent only after the broker confirmed it. A broker outage
//! never loses or refuses anything: rows wait and drain when it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, SqliteConnection};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::bus::{OutgoingMessage, SharedBus};
use crate::db::{Database, answered_within};
use crate::metrics::{ExchangeLabels, Metrics, ServiceLabels};
use crate::shutdown::Shutdown;
use crate::telemetry;

const IDLE_POLL: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

fn headers_json(message: &OutgoingMessage) -> String {
    serde_json::to_string(&message.headers).unwrap_or_else(|_| "{}".into())
}

/// Records `message` for publication, in the caller's PostgreSQL transaction.
pub async fn enqueue_postgres(
    conn: &mut PgConnection,
    message: &OutgoingMessage,
) -> Result<(), sqlx::Error> {
    enqueue_all_postgres(conn, std::slice::from_ref(message)).await
}

/// The outbox's columns of a batch of messages, each as an array parameter
/// (`UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])`
/// gives the rows), for a statement that inserts them with other rows.
pub struct OutboxColumns<'a> {
    pub message_ids: Vec<&'a str>,
    pub exchanges: Vec<&'a str>,
    pub routing_keys: Vec<&'a str>,
    /// JSON objects, cast with `::jsonb`.
    pub headers: Vec<String>,
    pub bodies: Vec<&'a [u8]>,
}

impl<'a> OutboxColumns<'a> {
    pub fn of(messages: impl IntoIterator<Item = &'a OutgoingMessage>) -> Self {
        let mut c = OutboxColumns {
            message_ids: Vec::new(),
            exchanges: Vec::new(),
            routing_keys: Vec::new(),
            headers: Vec::new(),
            bodies: Vec::new(),
        };
        for m in messages {
            c.message_ids.push(m.message_id.as_str());
            c.exchanges.push(m.exchange.as_str());
            c.routing_keys.push(m.routing_key.as_str());
            c.headers.push(headers_json(m));
            c.bodies.push(m.body.as_slice());
        }
        c
    }
}

/// Records every message for publication in one statement, in the caller's
/// PostgreSQL transaction: a batch of N costs one round trip, not N.
pub async fn enqueue_all_postgres(
    conn: &mut PgConnection,
    messages: &[OutgoingMessage],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let c = OutboxColumns::of(messages);
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, headers, body) \
         SELECT i, e, k, h::jsonb, b FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::bytea[]) AS u(i, e, k, h, b)",
    )
    .bind(&c.message_ids)
    .bind(&c.exchanges)
    .bind(&c.routing_keys)
    .bind(&c.headers)
    .bind(&c.bodies)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records `message` for publication, in the caller's SQLite transaction.
pub async fn enqueue_sqlite(
    conn: &mut SqliteConnection,
    message: &OutgoingMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, headers, body) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&message.message_id)
    .bind(&message.exchange)
    .bind(&message.routing_key)
    .bind(headers_json(message))
    .bind(&message.body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet confirmed by the bus.
pub async fn backlog(db: &Database) -> Result<i64, sqlx::Error> {
    const SQL: &str = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
    match db {
        Database::Postgres(p, bound) => {
            answered_within(*bound, sqlx::query_scalar(SQL).fetch_one(p)).await
        }
        Database::Sqlite(p) => sqlx::query_scalar(SQL).fetch_one(p).await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error")]
    Db(#[from] sqlx::Error),
}

pub struct OutboxRelay {
    db: Database,
    bus: SharedBus,
    batch: i64,
    wake: Arc<Notify>,
    /// Sent rows are kept this long for audit, then purged.
    retention: Duration,
    /// Where to count what is published, and under which service name.
    metrics: Option<(Metrics, &'static str)>,
}

/// id, message id, exchange, routing key, headers (JSON text), body.
type Row = (i64, String, String, String, String, Vec<u8>);

impl OutboxRelay {
    pub fn new(db: Database, bus: SharedBus, batch: u32) -> Self {
        Self {
            db,
            bus,
            batch: i64::from(batch.max(1)),
            wake: Arc::new(Notify::new()),
            retention: Duration::from_secs(7 * 24 * 3600),
            metrics: None,
        }
    }

    /// Counts confirmed messages and keeps the backlog gauge of `service`.
    pub fn with_metrics(mut self, metrics: Metrics, service: &'static str) -> Self {
        self.metrics = Some((metrics, service));
        self
    }

    async fn sample_backlog(&self) {
        let Some((metrics, service)) = &self.metrics else {
            return;
        };
        match backlog(&self.db).await {
            Ok(n) => {
                metrics
                    .outbox_backlog
                    .get_or_create(&ServiceLabels { service })
                    .set(n);
            }
            Err(e) => tracing::debug!(error = %e, "cannot count the outbox backlog"),
        }
    }

    /// Poke this after committing an outbox row to publish it at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = MIN_BACKOFF;
        let mut last_purge = tokio::time::Instant::now();
        let mut last_sample: Option<tokio::time::Instant> = None;
        while !shutdown.is_cancelled() {
            if last_sample.is_none_or(|t| t.elapsed() > BACKLOG_EVERY) {
                last_sample = Some(tokio::time::Instant::now());
                self.sample_backlog().await;
            }
            match self.relay_once().await {
                Ok(outcome) if outcome.failed == 0 => {
                    backoff = MIN_BACKOFF;
                    if outcome.sent as i64 >= self.batch {
                        continue;
                    }
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Ok(outcome) => {
                    tracing::warn!(sent = outcome.sent, failed = outcome.failed, error = %outcome.first_error, ?backoff, "outbox publish failed, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), ?backoff, "outbox relay cannot read its table, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if last_purge.elapsed() > PURGE_EVERY {
                last_purge = tokio::time::Instant::now();
                if let Err(e) = self.purge().await {
                    tracing::warn!(error = %e, "outbox purge failed");
                }
            }
        }
    }

    /// The relay's pick on PostgreSQL: `$1` unsent rows, least tried first.
    pub const PICK_PG: &str = "SELECT id, message_id, exchange, routing_key, headers::text, body \
         FROM outbox WHERE sent_at IS NULL ORDER BY attempts, id LIMIT $1 FOR UPDATE SKIP LOCKED";

    /// Publishes one batch of unsent rows, those tried least first, so a row
    /// that keeps failing never holds back the ones behind it. On PostgreSQL the rows stay locked
    /// (SKIP LOCKED) while they are published, so several relays can share one
    /// table. SQLite has one writer, and one relay per file: no lock is held
    /// while publishing, so filings are never blocked behind the bus.
    pub async fn relay_once(&self) -> Result<RelayOutcome, RelayError> {
        const PICK_SQLITE: &str = "SELECT id, message_id, exchange, routing_key, headers, body \
             FROM outbox WHERE sent_at IS NULL ORDER BY attempts, id LIMIT ?";
        match &self.db {
            // Each statement within the database's answer bound: a database
            // gone silent fails the round, and the relay tries again after
            // its backoff instead of stopping for good.
            Database::Postgres(pool, bound) => {
                let mut tx = answered_within(*bound, pool.begin()).await?;
                crate::sql::Conn::Postgres(&mut tx, *bound)
                    .walk_queue_in_order()
                    .await?;
                let rows: Vec<Row> = answered_within(
                    *bound,
                    sqlx::query_as(Self::PICK_PG)
                        .bind(self.batch)
                        .fetch_all(&mut *tx),
                )
                .await?;
                let outcome = self.publish(&rows).await;
                if !outcome.sent.is_empty() {
                    answered_within(
                        *bound,
                        sqlx::query(
                            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 \
                             WHERE id = ANY($1)",
                        )
                        .bind(&outcome.sent)
                        .execute(&mut *tx),
                    )
                    .await?;
                }
                if !outcome.failed.is_empty() {
                    let (ids, errors): (Vec<i64>, Vec<String>) =
                        outcome.failed.iter().cloned().unzip();
                    answered_within(
                        *bound,
                        sqlx::query(
                            "UPDATE outbox SET attempts = attempts + 1, last_error = e.err \
                             FROM UNNEST($1::bigint[], $2::text[]) AS e(id, err) \
                             WHERE outbox.id = e.id",
                        )
                        .bind(&ids)
                        .bind(&errors)
                        .execute(&mut *tx),
                    )
                    .await?;
                }
                answered_within(*bound, tx.commit()).await?;
                Ok(outcome.summary())
            }
            Database::Sqlite(pool) => {
                let rows: Vec<Row> = sqlx::query_as(PICK_SQLITE)
                    .bind(self.batch)
                    .fetch_all(pool)
                    .await?;
                let outcome = self.publish(&rows).await;
                let mut tx = pool.begin().await?;
                for id in &outcome.sent {
                    sqlx::query(
                        "UPDATE outbox SET sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                         attempts = attempts + 1 WHERE id = ?",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                for (id, error) in &outcome.failed {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    )
                    .bind(error)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(outcome.summary())
            }
        }
    }

    /// Publishes the rows, each under a producer span that continues the
    /// trace of the request that wrote it.
    async fn publish(&self, rows: &[Row]) -> Published {
        if rows.is_empty() {
            return Published::default();
        }
        let mut outcome = Published::default();
        // Headers this kit wrote and cannot read back: the row stays in the
        // outbox, counted as failed every round, never sent without them.
        let (rows, unreadable): (Vec<_>, Vec<_>) = rows
            .iter()
            .map(|row| {
                (
                    row,
                    serde_json::from_str::<BTreeMap<String, String>>(&row.4),
                )
            })
            .partition(|(_, headers)| headers.is_ok());
        for (row, headers) in unreadable {
            if let Err(e) = headers {
                tracing::error!(id = row.0, message_id = %row.1, error = %e, "outbox row with unreadable headers");
                outcome
                    .failed
                    .push((row.0, format!("unreadable headers: {e}")));
            }
        }
        let rows: Vec<(&Row, BTreeMap<String, String>)> = rows
            .into_iter()
            .filter_map(|(row, headers)| headers.ok().map(|h| (row, h)))
            .collect();
        let mut spans = Vec::with_capacity(rows.len());
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(
                |((_, message_id, exchange, routing_key, _, body), headers)| {
                    let mut headers = headers.clone();
                    // Named and described as OpenTelemetry's messaging conventions say.
                    let span = tracing::info_span!(
                        "publish",
                        otel.name = %format!("publish {exchange}"),
                        otel.kind = "producer",
                        messaging.system = "rabbitmq",
                        messaging.operation.name = "publish",
                        messaging.operation.type = "send",
                        messaging.destination.name = %exchange,
                        messaging.rabbitmq.destination.routing_key = %routing_key,
                        messaging.message.id = %message_id,
                    );
                    let carrier: HashMap<String, String> = headers
                        .iter()
                        .filter(|(k, _)| telemetry::TRACE_HEADERS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    telemetry::set_parent(&span, &carrier);
                    headers.extend(telemetry::inject(&span));
                    spans.push(span);
                    OutgoingMessage {
                        message_id: message_id.clone(),
                        exchange: exchange.clone(),
                        routing_key: routing_key.clone(),
                        headers,
                        body: body.clone(),
                    }
                },
            )
            .collect();
        // Debug level: not exported, so a relay round is not a trace of its own.
        let batch_span = tracing::debug_span!("outbox.relay", messages = messages.len());
        let results = self.bus.publish(&messages).instrument(batch_span).await;
        for (((row, _), result), span) in rows.iter().zip(results).zip(spans) {
            match result {
                Ok(()) => {
                    outcome.sent.push(row.0);
                    if let Some((metrics, _)) = &self.metrics {
                        metrics
                            .messages_published
                            .get_or_create(&ExchangeLabels {
                                exchange: row.2.clone(),
                            })
                            .inc();
                    }
                }
                Err(e) => {
                    span.in_scope(|| tracing::warn!(error = %e, "publish failed"));
                    outcome.failed.push((row.0, e.to_string()));
                }
            }
        }
        outcome
    }

    async fn purge(&self) -> Result<u64, sqlx::Error> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(7));
        let purged = match &self.db {
            Database::Postgres(p, bound) => answered_within(
                *bound,
                sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
                    .bind(cutoff)
                    .execute(p),
            )
            .await?
            .rows_affected(),
            Database::Sqlite(p) => {
                sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?")
                    .bind(cutoff.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                    .execute(p)
                    .await?
                    .rows_affected()
            }
        };
        Ok(purged)
    }
}

#[derive(Default)]
struct Published {
    sent: Vec<i64>,
    failed: Vec<(i64, String)>,
}

impl Published {
    fn summary(&self) -> RelayOutcome {
        RelayOutcome {
            sent: self.sent.len(),
            failed: self.failed.len(),
            first_error: self.failed.first().map(|f| f.1.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayOutcome {
    pub sent: usize,
    pub failed: usize,
    pub first_error: String,
}

/// Enqueuing in whichever transaction a store holds, so one piece of store
/// code can run on both backends.
#[allow(async_fn_in_trait)]
pub trait Enqueue {
    async fn enqueue(&mut self, message: &OutgoingMessage) -> Result<(), sqlx::Error>;
}

impl Enqueue for PgConnection {
    async fn enqueue(&mut self, message: &OutgoingMessage) -> Result<(), sqlx::Error> {
        enqueue_postgres(self, message).await
    }
}

impl Enqueue for SqliteConnection {
    async fn enqueue(&mut self, message: &OutgoingMessage) -> Result<(), sqlx::Error> {
        enqueue_sqlite(self, message).await
    }
}
