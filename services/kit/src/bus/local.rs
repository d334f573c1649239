//! The in-process bus of the embedded default: the same contract as
//! RabbitMQ, kept in a SQLite file so a publish is "confirmed" once it is
//! committed there and survives a crash. Consumers lease messages; an ack
//! deletes, a retry gives the message back and counts the delivery; past the
//! delivery limit it moves to the dead-letter queue. A restart voids every
//! lease, so what was in flight is delivered again (at least once).
//!
//! Queues are bounded as on RabbitMQ: a publish to a full queue is refused
//! (`BusError::QueueFull`), and a message older than its queue's age bound is
//! dead-lettered as `expired` by a periodic sweep. Dead-lettering is at least
//! once: a message due to die while the dead-letter queue is full waits in
//! its own queue, never delivered, until there is room.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::{
    Acker, Bounds, Bus, BusError, DEAD_EXCHANGE, DEAD_LETTER_QUEUE, DEATH_EXCHANGE_HEADER,
    DEATH_QUEUE_HEADER, DEATH_REASON_HEADER, DEATH_TIME_HEADER, Delivery, DeliveryStream,
    OutgoingMessage, QUEUES, route,
};
use crate::shutdown::Shutdown;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/local_bus");

/// A fallback poll, in case a wake-up is missed.
const POLL: Duration = Duration::from_millis(250);
/// Sweeps for expired messages run at a tenth of the shortest age bound,
/// within these.
const SWEEP_MIN: Duration = Duration::from_millis(100);
const SWEEP_MAX: Duration = Duration::from_secs(10);
/// Messages a sweep looks at per transaction.
const SWEEP_BATCH: i64 = 256;

// What `bus_messages.leased` says of a message. The column predates the third
// state, hence its name.
/// Waiting for a consumer.
const READY: i64 = 0;
/// Handed to a consumer of this process.
const LEASED: i64 = 1;
/// Due to be dead-lettered (its death headers already written), waiting for
/// room in the dead-letter queue; never delivered meanwhile.
const DYING: i64 = 2;

fn local(operation: &'static str) -> impl FnOnce(sqlx::Error) -> BusError {
    move |source| BusError::Local { operation, source }
}

struct Inner {
    pool: SqlitePool,
    delivery_limit: u32,
    bounds: Bounds,
    published: Notify,
    /// Stops the sweeper when the bus is closed.
    closed: Shutdown,
}

#[derive(Clone)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

/// seq, message id, exchange, routing key, headers (JSON), body, deliveries.
type Row = (i64, String, String, String, String, Vec<u8>, i64);

/// Leases ready messages of a queue (binds: the queue, how many at most);
/// RETURNING gives no order, so callers sort the `Row`s by `seq`.
const LEASE: &str = "UPDATE bus_messages SET leased = 1, delivery_count = delivery_count + 1 \
     WHERE seq IN (SELECT seq FROM bus_messages WHERE queue = ? AND leased = 0 \
                   ORDER BY seq LIMIT ?) \
     RETURNING seq, message_id, exchange, routing_key, headers, body, delivery_count";

/// Header under which a message whose stored headers cannot be read keeps
/// them as they were stored, with the reason beside them.
pub const UNREADABLE_HEADERS: &str = "x-guichet-unreadable-headers";

/// The headers of a stored message. This bus wrote them as a JSON map, so
/// one it cannot read back is damage: said in the log, and carried with the
/// message as stored (never dropped, never replaced by plausible ones), so
/// the consumer and `guichet dlq` see it.
fn stored_headers(seq: i64, text: &str) -> BTreeMap<String, String> {
    match serde_json::from_str(text) {
        Ok(headers) => headers,
        Err(e) => {
            tracing::error!(seq, error = %e, "a stored message's headers cannot be read");
            BTreeMap::from([
                (UNREADABLE_HEADERS.to_string(), text.to_string()),
                (
                    DEATH_REASON_HEADER.to_string(),
                    format!("unreadable headers: {e}"),
                ),
            ])
        }
    }
}

/// A leased row as a delivery; `room` is the consumer's prefetch slot, if it
/// has one, freed when the message is settled.
fn delivery(
    inner: &Arc<Inner>,
    queue: &str,
    row: Row,
    room: Option<OwnedSemaphorePermit>,
) -> Delivery {
    let (seq, message_id, exchange, routing_key, headers, body, count) = row;
    Delivery {
        message_id: Some(message_id),
        exchange,
        routing_key,
        // One process, one identity: the in-process bus has no users.
        user_id: None,
        headers: stored_headers(seq, &headers),
        body,
        redelivered: count > 1,
        delivery_count: u32::try_from(count - 1).unwrap_or(0),
        acker: Acker::Local(LocalAcker {
            inner: inner.clone(),
            seq,
            queue: queue.to_string(),
            settled: AtomicBool::new(false),
            room: std::sync::Mutex::new(room),
        }),
    }
}

impl LocalBus {
    /// Opens (or creates) the bus file, with the table's bounds. Only one
    /// process may use it at a time.
    pub async fn open(path: &Path, delivery_limit: u32) -> Result<Self, BusError> {
        Self::open_with_bounds(path, delivery_limit, Bounds::default()).await
    }

    /// The same, with `bounds` instead of the table's (tests lower them to
    /// fill a queue with a few messages). Starts the sweeper that
    /// dead-letters expired messages, until `close`.
    pub async fn open_with_bounds(
        path: &Path,
        delivery_limit: u32,
        bounds: Bounds,
    ) -> Result<Self, BusError> {
        let pool = crate::db::sqlite_pool(path, 4)
            .await
            .map_err(local("open"))?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| local("migrate")(e.into()))?;
        // Leases belong to the process that took them; that process is gone.
        sqlx::query("UPDATE bus_messages SET leased = 0 WHERE leased = 1")
            .execute(&pool)
            .await
            .map_err(local("release leases"))?;
        let inner = Arc::new(Inner {
            pool,
            delivery_limit,
            bounds,
            published: Notify::new(),
            closed: Shutdown::new(),
        });
        tokio::spawn(sweeper(Arc::downgrade(&inner), inner.closed.clone()));
        Ok(Self { inner })
    }
}

#[async_trait::async_trait]
impl Bus for LocalBus {
    /// Stores every message in one transaction. A message is refused whole
    /// when one of the queues it routes to is full, so it is in all of them
    /// or none (RabbitMQ, by contrast, stores it in the others and nacks).
    async fn publish(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), BusError>> {
        let mut results: Vec<Result<(), BusError>> = Vec::with_capacity(messages.len());
        let stored = async {
            // IMMEDIATE: the counts read below must still hold at the inserts.
            let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await?;
            // What each queue holds, counted once per batch.
            let mut held: HashMap<&'static str, u32> = HashMap::new();
            for m in messages {
                let queues = route(&m.exchange, &m.routing_key);
                if queues.is_empty() {
                    results.push(Err(BusError::Unroutable(format!(
                        "no queue bound to {} for {}",
                        m.exchange, m.routing_key
                    ))));
                    continue;
                }
                let mut full = None;
                for &queue in &queues {
                    let n = match held.get(queue) {
                        Some(n) => *n,
                        None => {
                            let n = held_in(&mut tx, queue).await?;
                            held.insert(queue, n);
                            n
                        }
                    };
                    let max_length = self.max_length(queue);
                    if n >= max_length {
                        full = Some(BusError::QueueFull { queue, max_length });
                        break;
                    }
                }
                if let Some(refused) = full {
                    results.push(Err(refused));
                    continue;
                }
                for queue in queues {
                    insert(&mut tx, queue, m, &m.headers, 0).await?;
                    *held.entry(queue).or_default() += 1;
                }
                results.push(Ok(()));
            }
            tx.commit().await
        }
        .await;
        match stored {
            Ok(()) => {
                self.inner.published.notify_waiters();
                results
            }
            Err(e) => {
                let reason = e.to_string();
                messages
                    .iter()
                    .map(|_| Err(BusError::Unavailable(reason.clone())))
                    .collect()
            }
        }
    }

    async fn consume(
        &self,
        queue: &str,
        _consumer_tag: &str,
        prefetch: u16,
    ) -> Result<DeliveryStream, BusError> {
        if !QUEUES.iter().any(|q| q.name == queue) {
            return Err(BusError::Unavailable(format!("no queue {queue}")));
        }
        let prefetch = usize::from(prefetch.max(1));
        let (tx, rx) = mpsc::channel(prefetch);
        let inner = self.inner.clone();
        let queue = queue.to_string();
        tokio::spawn(feed(inner, queue, prefetch, tx));
        Ok(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|d| (d, rx)) },
        )))
    }

    async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM bus_messages WHERE queue = ? AND leased = 0")
                .bind(queue)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(local("count"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Leases up to `max` ready messages, oldest first; a delivery dropped
    /// unsettled gives its lease back.
    async fn take(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let rows: Vec<Row> = sqlx::query_as(LEASE)
            .bind(queue)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(local("take"))?;
        let mut rows = rows;
        rows.sort_by_key(|r| r.0);
        let taken: Vec<Delivery> = rows
            .into_iter()
            .map(|row| delivery(&self.inner, queue, row, None))
            .collect();
        Ok(taken)
    }

    fn bounds(&self) -> Bounds {
        self.inner.bounds.clone()
    }

    async fn ensure_ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn close(&self) {
        self.inner.closed.cancel();
    }
}

impl LocalBus {
    fn max_length(&self, queue: &str) -> u32 {
        self.inner
            .bounds
            .of(queue)
            .map_or(u32::MAX, |b| b.max_length)
    }
}

/// What counts against a queue's bound: ready messages and those waiting
/// to be dead-lettered, not those a consumer holds (as RabbitMQ counts).
async fn held_in(tx: &mut sqlx::SqliteConnection, queue: &str) -> Result<u32, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bus_messages WHERE queue = ? AND leased <> ?")
            .bind(queue)
            .bind(LEASED)
            .fetch_one(tx)
            .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Sweeps every so often until the bus is closed or dropped.
async fn sweeper(inner: std::sync::Weak<Inner>, closed: Shutdown) {
    let every = match inner.upgrade() {
        Some(inner) => sweep_period(&inner.bounds),
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closed.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = sweep(&inner).await {
            tracing::warn!(error = %e, "in-process bus sweep failed, will retry");
        }
    }
}

/// A tenth of the shortest age bound, so a message outlives its bound by
/// at most a tenth of it; within `SWEEP_MIN`..`SWEEP_MAX`.
fn sweep_period(bounds: &Bounds) -> Duration {
    bounds
        .iter()
        .filter_map(|(_, b)| b.max_age)
        .min()
        .map_or(SWEEP_MAX, |age| age / 10)
        .clamp(SWEEP_MIN, SWEEP_MAX)
}

/// Marks the expired messages of every queue with an age bound as dying,
/// then moves the dying ones to the dead-letter queue as far as it has room.
async fn sweep(inner: &Inner) -> Result<(), sqlx::Error> {
    for (spec, bound) in inner.bounds.iter() {
        let Some(age) = bound.max_age else { continue };
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        while expire_some(inner, spec.name, &cutoff).await? {}
    }
    let mut tx = inner.pool.begin_with("BEGIN IMMEDIATE").await?;
    for spec in QUEUES.iter().filter(|q| q.dead_letters) {
        bury(&mut tx, &inner.bounds, spec.name).await?;
    }
    tx.commit().await?;
    inner.published.notify_waiters();
    Ok(())
}

/// Marks the oldest ready messages of `queue` enqueued before `cutoff` as
/// dying, with their death headers; whether there may be more. Messages
/// are in `seq` order of their enqueueing, so the expired ones are the first.
async fn expire_some(
    inner: &Inner,
    queue: &'static str,
    cutoff: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = inner.pool.begin_with("BEGIN IMMEDIATE").await?;
    let oldest: Vec<(i64, String, String, bool)> = sqlx::query_as(
        "SELECT seq, exchange, headers, enqueued_at < ? FROM bus_messages \
         WHERE queue = ? AND leased = ? ORDER BY seq LIMIT ?",
    )
    .bind(cutoff)
    .bind(queue)
    .bind(READY)
    .bind(SWEEP_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let expired: Vec<_> = oldest.iter().take_while(|row| row.3).collect();
    for (seq, exchange, headers, _) in &expired {
        let headers = death_headers(*seq, headers, "expired".into(), queue, exchange);
        sqlx::query("UPDATE bus_messages SET leased = ?, headers = ? WHERE seq = ?")
            .bind(DYING)
            .bind(serde_json::to_string(&headers).unwrap_or_default())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    if !expired.is_empty() {
        tracing::warn!(
            queue,
            messages = expired.len(),
            "messages expired, dead-lettering them"
        );
    }
    tx.commit().await?;
    Ok(expired.len() as i64 == SWEEP_BATCH)
}

/// The stored headers of a message about to die, with why, where and when.
fn death_headers(
    seq: i64,
    stored: &str,
    reason: String,
    queue: &str,
    exchange: &str,
) -> BTreeMap<String, String> {
    let mut headers = stored_headers(seq, stored);
    // A reason already there (unreadable headers) says more than this one.
    headers.entry(DEATH_REASON_HEADER.into()).or_insert(reason);
    headers.insert(DEATH_QUEUE_HEADER.into(), queue.to_string());
    headers.insert(DEATH_EXCHANGE_HEADER.into(), exchange.to_string());
    headers.insert(
        DEATH_TIME_HEADER.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    headers
}

/// Moves the dying messages of `queue`, oldest first, into the dead-letter
/// queue as far as its bound allows; the others wait for the next sweep.
async fn bury(
    tx: &mut sqlx::SqliteConnection,
    bounds: &Bounds,
    queue: &str,
) -> Result<(), sqlx::Error> {
    let max_length = bounds
        .of(DEAD_LETTER_QUEUE)
        .map_or(u32::MAX, |b| b.max_length);
    let room = max_length.saturating_sub(held_in(tx, DEAD_LETTER_QUEUE).await?);
    if room == 0 {
        return Ok(());
    }
    let dying: Vec<(i64, String, String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, message_id, exchange, routing_key, headers, body FROM bus_messages \
         WHERE queue = ? AND leased = ? ORDER BY seq LIMIT ?",
    )
    .bind(queue)
    .bind(DYING)
    .bind(i64::from(room))
    .fetch_all(&mut *tx)
    .await?;
    for (seq, message_id, exchange, routing_key, headers, body) in dying {
        let dead = OutgoingMessage {
            message_id,
            exchange,
            routing_key,
            headers: stored_headers(seq, &headers),
            body,
        };
        for queue in route(DEAD_EXCHANGE, &dead.routing_key) {
            insert(&mut *tx, queue, &dead, &dead.headers, 0).await?;
        }
        sqlx::query("DELETE FROM bus_messages WHERE seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn insert(
    tx: &mut sqlx::SqliteConnection,
    queue: &str,
    m: &OutgoingMessage,
    headers: &BTreeMap<String, String>,
    delivery_count: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bus_messages (queue, message_id, exchange, routing_key, headers, body, delivery_count) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(queue)
    .bind(&m.message_id)
    .bind(&m.exchange)
    .bind(&m.routing_key)
    .bind(serde_json::to_string(headers).unwrap_or_default())
    .bind(&m.body)
    .bind(delivery_count)
    .execute(tx)
    .await?;
    Ok(())
}

/// Leases ready messages while the consumer has room, and hands them over.
async fn feed(
    inner: Arc<Inner>,
    queue: String,
    prefetch: usize,
    tx: mpsc::Sender<Result<Delivery, BusError>>,
) {
    let room = Arc::new(Semaphore::new(prefetch));
    loop {
        let Ok(first) = room.clone().acquire_owned().await else {
            return;
        };
        // A consumer that went away must not have messages leased (and their
        // deliveries counted) on its behalf.
        if tx.is_closed() {
            return;
        }
        let mut permits = vec![first];
        while let Ok(p) = room.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Listen before looking, so a publish in between is not missed.
        let published = inner.published.notified();
        tokio::pin!(published);
        published.as_mut().enable();
        let leased: Result<Vec<Row>, sqlx::Error> = sqlx::query_as(LEASE)
            .bind(&queue)
            .bind(permits.len() as i64)
            .fetch_all(&inner.pool)
            .await;
        let mut rows = match leased {
            Ok(rows) => rows,
            Err(e) => {
                if tx.send(Err(local("lease")(e))).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                }
                continue;
            }
        };
        if rows.is_empty() {
            drop(permits);
            tokio::select! {
                _ = &mut published => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return,
            }
            continue;
        }
        rows.sort_by_key(|r| r.0);
        let deliveries: Vec<Delivery> = rows
            .into_iter()
            .zip(permits.drain(..))
            .map(|(row, permit)| delivery(&inner, &queue, row, Some(permit)))
            .collect();
        for delivery in deliveries {
            // If the consumer is gone, the deliveries not handed over are
            // dropped here, and dropping gives their leases back.
            if tx.send(Ok(delivery)).await.is_err() {
                return;
            }
        }
    }
}

/// Settles one leased message.
pub struct LocalAcker {
    inner: Arc<Inner>,
    seq: i64,
    queue: String,
    settled: AtomicBool,
    /// The consumer's prefetch slot, freed as soon as the message is settled.
    room: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl LocalAcker {
    fn settle(&self) {
        self.settled.store(true, Ordering::SeqCst);
        if let Ok(mut room) = self.room.lock() {
            room.take();
        }
    }

    pub(super) async fn ack(&self) -> Result<(), BusError> {
        sqlx::query("DELETE FROM bus_messages WHERE seq = ?")
            .bind(self.seq)
            .execute(&self.inner.pool)
            .await
            .map_err(local("ack"))?;
        self.settle();
        Ok(())
    }

    pub(super) async fn retry_later(&self) -> Result<(), BusError> {
        let limited = QUEUES
            .iter()
            .any(|q| q.name == self.queue && q.dead_letters);
        let mut tx = self.inner.pool.begin().await.map_err(local("retry"))?;
        // Write first: a read-then-write transaction in WAL mode fails at
        // once (SQLITE_BUSY_SNAPSHOT) when another connection wrote between.
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "UPDATE bus_messages SET leased = 0 WHERE seq = ? \
             RETURNING exchange, headers, delivery_count",
        )
        .bind(self.seq)
        .fetch_optional(&mut *tx)
        .await
        .map_err(local("retry"))?;
        let Some((exchange, headers, count)) = row else {
            return Ok(());
        };
        if limited && count > i64::from(self.inner.delivery_limit) {
            // Past the limit: dying, with the reason, then to the dead-letter
            // queue if it has room (else at a later sweep).
            let headers = death_headers(
                self.seq,
                &headers,
                format!("delivery limit reached ({count} deliveries)"),
                &self.queue,
                &exchange,
            );
            sqlx::query("UPDATE bus_messages SET leased = ?, headers = ? WHERE seq = ?")
                .bind(DYING)
                .bind(serde_json::to_string(&headers).unwrap_or_default())
                .bind(self.seq)
                .execute(&mut *tx)
                .await
                .map_err(local("dead-letter"))?;
            bury(&mut tx, &self.inner.bounds, &self.queue)
                .await
                .map_err(local("dead-letter"))?;
        }
        tx.commit().await.map_err(local("retry"))?;
        self.settle();
        self.inner.published.notify_waiters();
        Ok(())
    }
}

impl Drop for LocalAcker {
    /// A delivery dropped without being settled goes back to the queue, as
    /// RabbitMQ does when a consumer's channel closes.
    fn drop(&mut self) {
        if self.settled.load(Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease is voided at the next start
        };
        let inner = self.inner.clone();
        let seq = self.seq;
        runtime.spawn(async move {
            let _ = sqlx::query("UPDATE bus_messages SET leased = 0 WHERE seq = ?")
                .bind(seq)
                .execute(&inner.pool)
                .await;
            inner.published.notify_waiters();
        });
    }
}

#[cfg(test)]
mod stored_headers_tests {
    use super::*;

    #[test]
    fn damaged_headers_are_kept_as_stored_with_the_reason() {
        let fine = stored_headers(1, r#"{"traceparent":"00-abc"}"#);
        assert_eq!(fine.get("traceparent").map(String::as_str), Some("00-abc"));
        let damaged = stored_headers(2, "{\"traceparent\":");
        assert_eq!(
            damaged.get(UNREADABLE_HEADERS).map(String::as_str),
            Some("{\"traceparent\":")
        );
        assert!(
            damaged
                .get(DEATH_REASON_HEADER)
                .is_some_and(|r| r.starts_with("unreadable headers"))
        );
        assert_eq!(damaged.len(), 2);
    }
}
