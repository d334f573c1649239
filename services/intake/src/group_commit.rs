//! Group commit of the ledger on PostgreSQL. Every receipt waits for its
//! filing to be committed, and a commit waits for the database to flush its
//! log to disk: one transaction per filing makes that flush the ceiling of
//! intake (BENCHMARKS.md). So one writer task takes the filings that arrived
//! while the previous commit was in flight, writes them with one statement
//! for `filings` and one for `outbox`, commits once, and only then answers
//! each request. Nothing waits for a batch to fill: a filing alone is
//! written at once, as before.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_kit::bus::OutgoingMessage;
use guichet_kit::outbox;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Most filings in one transaction.
const MAX_BATCH: usize = 256;
/// Filings waiting for the writer at most; past that, requests wait to hand theirs over.
const QUEUE: usize = 1024;

/// One filing to record, and where to say whether it was inserted.
pub struct Pending {
    pub idempotency_key: String,
    pub fingerprint: String,
    pub reference: String,
    pub legal_filing_date: NaiveDate,
    pub filed_at: DateTime<Utc>,
    pub receipt: Vec<u8>,
    pub trace_id: String,
    pub message: OutgoingMessage,
    /// `Ok(false)`: not inserted, its key (or, rarely, its reference) was taken.
    pub answer: oneshot::Sender<Result<bool, Arc<sqlx::Error>>>,
}

/// Starts the writer; it stops when every sender is dropped.
pub fn spawn(pool: PgPool) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(pool, receiver));
    sender
}

async fn run(pool: PgPool, mut receiver: mpsc::Receiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match write(&pool, &batch).await {
            Ok(inserted) => {
                for p in batch {
                    let done = inserted.contains(&(p.idempotency_key, p.reference));
                    let _ = p.answer.send(Ok(done));
                }
            }
            // One filing the database refuses must not fail the others:
            // each is tried alone, and gets its own answer.
            Err(_) if batch.len() > 1 => {
                for p in batch {
                    let alone = write(&pool, std::slice::from_ref(&p))
                        .await
                        .map(|inserted| !inserted.is_empty())
                        .map_err(Arc::new);
                    let _ = p.answer.send(alone);
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for p in batch {
                    let _ = p.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Inserts the filings whose key and reference are both free, and their
/// outbox rows, in one transaction. Returns the (key, reference) inserted.
async fn write(pool: &PgPool, batch: &[Pending]) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let mut keys = Vec::with_capacity(batch.len());
    let mut fingerprints = Vec::with_capacity(batch.len());
    let mut references = Vec::with_capacity(batch.len());
    let mut dates = Vec::with_capacity(batch.len());
    let mut filed = Vec::with_capacity(batch.len());
    let mut receipts = Vec::with_capacity(batch.len());
    let mut traces = Vec::with_capacity(batch.len());
    for p in batch {
        keys.push(p.idempotency_key.as_str());
        fingerprints.push(p.fingerprint.as_str());
        references.push(p.reference.as_str());
        dates.push(p.legal_filing_date);
        filed.push(p.filed_at);
        receipts.push(p.receipt.as_slice());
        traces.push(p.trace_id.as_str());
    }
    let mut tx = pool.begin().await?;
    // DO NOTHING on any conflict: a taken key is a retry (the caller answers
    // the saved receipt), a taken reference is drawn again by the caller.
    // Two filings with one key in the same batch: the first one wins.
    let inserted: HashSet<(String, String)> = sqlx::query_as(
        "INSERT INTO filings (idempotency_key, fingerprint, reference, legal_filing_date, \
         filed_at, receipt, trace_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], \
         $5::timestamptz[], $6::bytea[], $7::text[]) \
         ON CONFLICT DO NOTHING RETURNING idempotency_key, reference",
    )
    .bind(&keys)
    .bind(&fingerprints)
    .bind(&references)
    .bind(&dates)
    .bind(&filed)
    .bind(&receipts)
    .bind(&traces)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let messages: Vec<OutgoingMessage> = batch
        .iter()
        .filter(|p| inserted.contains(&(p.idempotency_key.clone(), p.reference.clone())))
        .map(|p| p.message.clone())
        .collect();
    outbox::enqueue_all_postgres(&mut tx, &messages).await?;
    tx.commit().await?;
    Ok(inserted)
}
