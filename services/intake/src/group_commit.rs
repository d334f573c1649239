//! Group commit of the ledger on PostgreSQL. Every receipt waits for its
//! filing to be committed, and a commit waits for the database to flush its
//! log to disk: one transaction per filing makes that flush the ceiling of
//! intake (BENCHMARKS.md). So one writer task takes the filings that arrived
//! while the previous commit was in flight, writes them and their outbox
//! rows with one statement (its own transaction, one commit), and only then
//! answers each request. Nothing waits for a batch to fill: a filing alone is
//! written at once, as before.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use guichet_kit::bus::OutgoingMessage;
use guichet_kit::{db, outbox};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::ledger::NewFiling;

/// Most filings in one transaction.
const MAX_BATCH: usize = 256;
/// Filings waiting for the writer at most; past that, requests wait to hand theirs over.
const QUEUE: usize = 1024;

/// One filing to record, and where to say whether it was inserted.
pub struct Pending {
    pub filing: NewFiling,
    pub message: OutgoingMessage,
    /// `Ok(false)`: not inserted, its key (or, rarely, its reference) was taken.
    pub answer: oneshot::Sender<Result<bool, Arc<sqlx::Error>>>,
}

impl Pending {
    /// What the insert returns for this filing when it went in.
    fn key(&self) -> (String, String) {
        (
            self.filing.idempotency_key.clone(),
            self.filing.reference.clone(),
        )
    }
}

/// Starts the writer; it stops when every sender is dropped. A batch
/// waits `answer_bound` for the database at most: every filing of intake
/// goes through this one task, so a database that never answers must not
/// hold it.
pub fn spawn(pool: PgPool, answer_bound: Duration) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(pool, answer_bound, receiver));
    sender
}

async fn run(pool: PgPool, answer_bound: Duration, mut receiver: mpsc::Receiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // A request whose caller has gone (the gateway's time bound, a
        // person who hung up) was answered with an error: it is not written,
        // and its key files it again.
        batch.retain(|p| !p.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        match write(&pool, answer_bound, &batch).await {
            Ok(inserted) => {
                for p in batch {
                    let done = inserted.contains(&p.key());
                    let _ = p.answer.send(Ok(done));
                }
            }
            // One filing the database refuses must not fail the others:
            // each is tried alone, and gets its own answer (which also tries
            // again on a new connection after a cut). Not when the batch ran
            // out of time (a lock held, no connection free): each alone
            // would wait the same bound again, one after the other, and the
            // requests queued behind them longer still.
            Err(e) if batch.len() > 1 && !db::is_out_of_time(&e) => {
                for p in batch {
                    let alone = write(&pool, answer_bound, std::slice::from_ref(&p))
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

/// `insert`, waiting `bound` for the database at most.
async fn write(
    pool: &PgPool,
    bound: Duration,
    batch: &[Pending],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    db::answered_within(bound, insert(pool, batch)).await
}

/// Inserts the filings whose key and reference are both free, and their
/// outbox rows, in ONE statement: a statement is its own transaction, so
/// the batch is one round trip and one commit, where `BEGIN`, two inserts
/// and `COMMIT` were four round trips, each a turn of a busy backend.
/// Returns the (key, reference) inserted.
async fn insert(
    pool: &PgPool,
    batch: &[Pending],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    /// One column of the batch, as an array parameter.
    fn column<'a, T>(batch: &'a [Pending], value: impl Fn(&'a NewFiling) -> T) -> Vec<T> {
        batch.iter().map(|p| value(&p.filing)).collect()
    }
    let messages = outbox::OutboxColumns::of(batch.iter().map(|p| &p.message));
    // DO NOTHING on any conflict: a taken key is a retry (the caller answers
    // the saved receipt), a taken reference is drawn again by the caller.
    // Two filings with one key in the same batch: the first one wins. Only
    // the filings inserted get their message, matched on key and reference.
    let inserted = sqlx::query_as(
        "WITH filed AS (\
           INSERT INTO filings (idempotency_key, fingerprint, reference, legal_filing_date, \
           filed_at, receipt, trace_id) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], \
           $5::timestamptz[], $6::bytea[], $7::text[]) \
           ON CONFLICT DO NOTHING RETURNING idempotency_key, reference), \
         queued AS (\
           INSERT INTO outbox (message_id, exchange, routing_key, headers, body) \
           SELECT m.i, m.e, m.k, m.h::jsonb, m.b \
           FROM UNNEST($1::text[], $3::text[], $8::text[], $9::text[], $10::text[], \
           $11::text[], $12::bytea[]) AS m(key, reference, i, e, k, h, b) \
           JOIN filed ON filed.idempotency_key = m.key AND filed.reference = m.reference) \
         SELECT idempotency_key, reference FROM filed",
    )
    .bind(column(batch, |f| f.idempotency_key.as_str()))
    .bind(column(batch, |f| f.fingerprint.as_str()))
    .bind(column(batch, |f| f.reference.as_str()))
    .bind(column(batch, |f| f.legal_filing_date))
    .bind(column(batch, |f| f.filed_at))
    .bind(column(batch, |f| f.receipt.as_slice()))
    .bind(column(batch, |f| f.trace_id.as_str()))
    .bind(&messages.message_ids)
    .bind(&messages.exchanges)
    .bind(&messages.routing_keys)
    .bind(&messages.headers)
    .bind(&messages.bodies)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    Ok(inserted)
}
