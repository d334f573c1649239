//! The bare pipeline: what the machine, the broker and the database can do
//! with no application at all, so Guichet's figure can be read as a fraction
//! of it. Confirmed publishes in batches -> the same kind of quorum queue
//! (the kit declares `instruction.dossiers` with its delivery limit and
//! dead-lettering) -> a consumer with the same prefetch -> one batched
//! INSERT per delivery batch in one transaction -> an ack per message after
//! the commit. Messages are the size of an encoded dossier, with the same
//! three headers intake sends. It runs on its own vhost and its own schema.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use guichet_kit::bus::{
    AmqpBus, DOSSIERS_EXCHANGE, Delivery, INSTRUCTION_QUEUE, OutgoingMessage, SharedBus,
    Subscription, consume_batches,
};
use guichet_kit::shutdown::Shutdown;
use sqlx::PgPool;

/// How one run went.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BareRun {
    pub messages: usize,
    pub seconds: f64,
    pub per_s: f64,
    /// Busy CPU (in cores) during the run that neither the bench, the
    /// broker nor PostgreSQL account for: other work on the machine.
    pub others_cores_busy: f64,
}

pub struct Settings {
    pub messages: usize,
    pub message_bytes: usize,
    /// Messages per confirmed publish batch (the outbox relay's batch).
    pub publish_batch: usize,
    /// Unacknowledged deliveries at once (the instruction consumer's prefetch).
    pub prefetch: u16,
    /// Batches recorded at once (as instruction is set to).
    pub batches_at_once: usize,
}

/// Runs the bare pipeline once on the vhost at `amqp_url`, writing to the
/// schema `bare` of the database at `database_url`.
pub async fn run(
    amqp_url: &str,
    database_url: &str,
    settings: &Settings,
) -> anyhow::Result<BareRun> {
    let db = guichet_kit::db::postgres_pool(database_url, "bare", guichet_kit::db::Pool::sized(4))
        .await
        .context("opening the bare pipeline's database")?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS messages (message_id text PRIMARY KEY, body bytea NOT NULL, \
         recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&db)
    .await?;
    sqlx::query("TRUNCATE messages").execute(&db).await?;

    let bus: SharedBus = Arc::new(AmqpBus::new(amqp_url, "guichet-bench-bare", 5));
    bus.ensure_ready()
        .await
        .context("connecting the bare pipeline to RabbitMQ")?;

    let recorded = Arc::new(AtomicUsize::new(0));
    let stop = Shutdown::new();
    let consumer = tokio::spawn(consume_batches(
        bus.clone(),
        Subscription {
            batches_at_once: settings.batches_at_once,
            ..Subscription::one_batch_at_a_time(INSTRUCTION_QUEUE, "bare", settings.prefetch)
        },
        stop.clone(),
        {
            let db = db.clone();
            let recorded = recorded.clone();
            let stop = stop.clone();
            let expected = settings.messages;
            move |batch| {
                let db = db.clone();
                let recorded = recorded.clone();
                let stop = stop.clone();
                async move {
                    if let Err(e) = record(&db, &batch).await {
                        tracing::warn!(error = %e, "bare pipeline insert failed");
                        return; // unacked: the broker gives them back
                    }
                    // As instruction and the notifier ack a batch.
                    Delivery::ack_all(&batch).await;
                    if recorded.fetch_add(batch.len(), Ordering::SeqCst) + batch.len() >= expected {
                        stop.cancel();
                    }
                }
            }
        },
    ));

    let body = vec![0x5a_u8; settings.message_bytes];
    let started = Instant::now();
    let mut sent = 0;
    while sent < settings.messages {
        let n = settings.publish_batch.min(settings.messages - sent);
        let batch: Vec<OutgoingMessage> = (sent..sent + n).map(|i| message(i, &body)).collect();
        let results = bus.publish(&batch).await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            stop.cancel();
            anyhow::bail!("bare pipeline publish failed: {e}");
        }
        sent += n;
    }
    let deadline = Duration::from_secs(60) + Duration::from_millis(settings.messages as u64);
    tokio::time::timeout(deadline, stop.cancelled())
        .await
        .context("the bare pipeline did not drain in time")?;
    let seconds = started.elapsed().as_secs_f64();
    let _ = consumer.await;
    bus.close().await;
    db.close().await;
    Ok(BareRun {
        messages: settings.messages,
        seconds,
        per_s: settings.messages as f64 / seconds,
        others_cores_busy: 0.0,
    })
}

fn message(i: usize, body: &[u8]) -> OutgoingMessage {
    let mut headers = BTreeMap::new();
    // The same headers intake sends, with values of the same length.
    headers.insert("traceparent".into(), format!("00-{:032x}-{:016x}-01", i, i));
    headers.insert("x-guichet-reference".into(), format!("W26-{i:08}-X"));
    headers.insert("x-guichet-schema-version".into(), "1".into());
    OutgoingMessage {
        message_id: uuid::Uuid::now_v7().to_string(),
        exchange: DOSSIERS_EXCHANGE.into(),
        routing_key: "dossier.submitted.web".into(),
        headers,
        body: body.to_vec(),
    }
}

/// One INSERT for the whole delivery batch, in one transaction.
async fn record(db: &PgPool, batch: &[Delivery]) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = batch
        .iter()
        .map(|d| d.message_id.clone().unwrap_or_default())
        .collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|d| d.body.as_slice()).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO messages (message_id, body) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&bodies)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
