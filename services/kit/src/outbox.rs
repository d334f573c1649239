//! The transactional outbox. A service calls `enqueue` inside the transaction
//! that records its state change; the relay publishes unsent rows in batches
//! and marks a row sent only after the broker confirmed it. A broker outage
//! never loses or refuses anything: rows wait and drain when it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::bus::{AmqpBus, OutgoingMessage};
use crate::shutdown::Shutdown;
use crate::telemetry;

const IDLE_POLL: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Records `message` for publication, in the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    message: &OutgoingMessage,
) -> Result<(), sqlx::Error> {
    let headers = serde_json::to_value(&message.headers).unwrap_or_default();
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, headers, body) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&message.message_id)
    .bind(&message.exchange)
    .bind(&message.routing_key)
    .bind(headers)
    .bind(&message.body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet confirmed by the broker.
pub async fn backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error")]
    Db(#[from] sqlx::Error),
}

pub struct OutboxRelay {
    pool: PgPool,
    bus: Arc<AmqpBus>,
    batch: i64,
    wake: Arc<Notify>,
    /// Sent rows are kept this long for audit, then purged.
    retention: Duration,
}

type Row = (i64, String, String, String, serde_json::Value, Vec<u8>);

impl OutboxRelay {
    pub fn new(pool: PgPool, bus: Arc<AmqpBus>, batch: u32) -> Self {
        Self {
            pool,
            bus,
            batch: i64::from(batch.max(1)),
            wake: Arc::new(Notify::new()),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// Poke this after committing an outbox row to publish it at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = MIN_BACKOFF;
        let mut last_purge = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
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

    /// Publishes one batch of unsent rows. Rows are locked (SKIP LOCKED) so
    /// several relays can share one table.
    pub async fn relay_once(&self) -> Result<RelayOutcome, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, message_id, exchange, routing_key, headers, body FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(RelayOutcome::default());
        }
        let mut spans = Vec::with_capacity(rows.len());
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(|(_, message_id, exchange, routing_key, headers, body)| {
                let mut headers: BTreeMap<String, String> =
                    serde_json::from_value(headers.clone()).unwrap_or_default();
                // A producer span per message, child of the request that wrote it.
                let span = tracing::info_span!(
                    "publish",
                    otel.kind = "producer",
                    messaging.system = "rabbitmq",
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
            })
            .collect();
        let batch_span = tracing::info_span!("outbox.relay", messages = messages.len());
        let results = self.bus.publish(&messages).instrument(batch_span).await;
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for ((row, result), span) in rows.iter().zip(results).zip(spans) {
            match result {
                Ok(()) => sent.push(row.0),
                Err(e) => {
                    span.in_scope(|| tracing::warn!(error = %e, "publish failed"));
                    failed.push(row.0);
                    errors.push(e.to_string());
                }
            }
        }
        if !sent.is_empty() {
            sqlx::query(
                "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            )
            .bind(&sent)
            .execute(&mut *tx)
            .await?;
        }
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = e.err \
                 FROM UNNEST($1::bigint[], $2::text[]) AS e(id, err) WHERE outbox.id = e.id",
            )
            .bind(&failed)
            .bind(&errors)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RelayOutcome {
            sent: sent.len(),
            failed: failed.len(),
            first_error: errors.into_iter().next().unwrap_or_default(),
        })
    }

    async fn purge(&self) -> Result<u64, sqlx::Error> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(7));
        let done = sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayOutcome {
    pub sent: usize,
    pub failed: usize,
    pub first_error: String,
}
