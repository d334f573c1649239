//! The instruction schema: dossiers and their events. Plain SQL, batched.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::urgency::URGENCY_HORIZONS;
use guichet_dossier::{Dossier, UrgencyClass};
use guichet_kit::db::Database;
use guichet_kit::inbox;

/// A dossier received from the bus, with what is needed to record it.
pub struct Incoming {
    pub message_id: String,
    pub dossier: Dossier,
    /// The dossier as received, kept as the record of what was filed.
    pub encoded: Vec<u8>,
    pub trace_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DossierRow {
    pub reference: String,
    pub state: String,
    pub encoded: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
    pub cover_until: Option<NaiveDate>,
    pub trace_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub trace_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub reference: String,
    pub channel: String,
    pub procedure: String,
    pub motif: String,
    pub prefecture: String,
    pub legal_filing_date: NaiveDate,
    pub urgency: i16,
    pub state: String,
    pub title_expires_on: Option<NaiveDate>,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
}

/// Runs the same query on whichever backend the store has.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Database::Postgres($pool) => $body,
            Database::Sqlite($pool) => $body,
        }
    };
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Records a batch in one transaction: claims the message ids, inserts the
    /// dossiers not seen before and their first event. Returns how many were new.
    pub async fn record(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        match &self.db {
            Database::Postgres(pool) => record_postgres(pool, batch, now).await,
            Database::Sqlite(pool) => record_sqlite(pool, batch, now).await,
        }
    }

    pub async fn dossier(&self, reference: &str) -> Result<Option<DossierRow>, sqlx::Error> {
        const SQL: &str = "SELECT reference, state, dossier AS encoded, recorded_at, \
             cover_until, trace_id FROM dossiers WHERE reference = $1";
        on_db!(&self.db, |p| sqlx::query_as(SQL)
            .bind(reference)
            .fetch_optional(p)
            .await)
    }

    pub async fn events(&self, reference: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        const SQL: &str = "SELECT id, kind, actor, at, reason, trace_id FROM dossier_events \
             WHERE reference = $1 ORDER BY id";
        on_db!(&self.db, |p| sqlx::query_as(SQL)
            .bind(reference)
            .fetch_all(p)
            .await)
    }

    /// Open dossiers by urgency class, then legal filing date, then the time
    /// the person filed; the reference only breaks exact ties.
    pub async fn queue(
        &self,
        prefecture: Option<&str>,
        limit: i64,
        today: NaiveDate,
    ) -> Result<Vec<QueueRow>, sqlx::Error> {
        let [(critical_class, critical), (soon_class, soon)] = URGENCY_HORIZONS;
        // Days of cover left: date subtraction in PostgreSQL, julianday in SQLite.
        let days_left = match &self.db {
            Database::Postgres(_) => "(cover_until - $1::date)",
            Database::Sqlite(_) => "(julianday(cover_until) - julianday($1))",
        };
        let sql = format!(
            "SELECT reference, channel, procedure, motif, prefecture, legal_filing_date, \
             CAST(CASE WHEN cover_until IS NULL THEN $6 \
                  WHEN {days_left} <= $2 THEN $4 \
                  WHEN {days_left} <= $3 THEN $5 \
                  ELSE $6 END AS SMALLINT) AS urgency, \
             state, title_expires_on \
             FROM dossiers \
             WHERE state NOT IN ('favourable', 'unfavourable', 'closed') \
               AND ($7 IS NULL OR prefecture = $7) \
             ORDER BY urgency, legal_filing_date, filed_at, reference \
             LIMIT $8"
        );
        on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(today)
            .bind(critical as i32)
            .bind(soon as i32)
            .bind(critical_class.rank())
            .bind(soon_class.rank())
            .bind(UrgencyClass::Routine.rank())
            .bind(prefecture)
            .bind(limit)
            .fetch_all(p)
            .await)
    }
}

fn actor_of(d: &Dossier) -> String {
    format!("channel:{}", d.channel())
}

/// PostgreSQL: the whole batch in a few array statements.
async fn record_postgres(
    pool: &sqlx::PgPool,
    batch: &[Incoming],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = batch.iter().map(|i| i.message_id.clone()).collect();
    let claimed = inbox::claim_postgres(&mut tx, &ids).await?;
    let fresh: Vec<&Incoming> = batch
        .iter()
        .filter(|i| claimed.contains(&i.message_id))
        .collect();
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut reference = Vec::with_capacity(fresh.len());
    let mut channel = Vec::with_capacity(fresh.len());
    let mut procedure = Vec::with_capacity(fresh.len());
    let mut motif = Vec::with_capacity(fresh.len());
    let mut prefecture = Vec::with_capacity(fresh.len());
    let mut legal_date = Vec::with_capacity(fresh.len());
    let mut filed_at = Vec::with_capacity(fresh.len());
    let mut received_at = Vec::with_capacity(fresh.len());
    let mut expires = Vec::with_capacity(fresh.len());
    let mut encoded = Vec::with_capacity(fresh.len());
    let mut trace = Vec::with_capacity(fresh.len());
    let mut message = Vec::with_capacity(fresh.len());
    let mut actor = Vec::with_capacity(fresh.len());
    for i in &fresh {
        let d = &i.dossier;
        reference.push(d.reference.to_string());
        channel.push(d.channel().as_str().to_string());
        procedure.push(d.filing.procedure.as_str().to_string());
        motif.push(d.filing.motif.as_str().to_string());
        prefecture.push(d.prefecture().to_string());
        legal_date.push(d.legal_filing_date);
        filed_at.push(d.filed_at);
        received_at.push(d.received_at);
        expires.push(d.filing.current_title.as_ref().map(|t| t.expires_on));
        encoded.push(i.encoded.clone());
        trace.push(i.trace_id.clone());
        message.push(i.message_id.clone());
        actor.push(actor_of(d));
    }
    // A reference seen under another message id (a channel re-sent it) is
    // kept as first recorded.
    let inserted: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, \
             legal_filing_date, filed_at, received_at, title_expires_on, cover_until, dossier, trace_id) \
             SELECT r, c, p, m, pf, lfd, fa, ra, te, te, d, t FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], \
             $7::timestamptz[], $8::timestamptz[], $9::date[], $10::bytea[], $11::text[]) \
             AS u(r, c, p, m, pf, lfd, fa, ra, te, d, t) \
             ON CONFLICT (reference) DO NOTHING RETURNING reference",
        )
        .bind(&reference)
        .bind(&channel)
        .bind(&procedure)
        .bind(&motif)
        .bind(&prefecture)
        .bind(&legal_date)
        .bind(&filed_at)
        .bind(&received_at)
        .bind(&expires)
        .bind(&encoded)
        .bind(&trace)
        .fetch_all(&mut *tx)
        .await?;
    let inserted: std::collections::HashSet<String> = inserted.into_iter().map(|(r,)| r).collect();
    let keep: Vec<usize> = (0..reference.len())
        .filter(|&k| inserted.contains(&reference[k]))
        .collect();
    let pick = |v: &Vec<String>| keep.iter().map(|&k| v[k].clone()).collect::<Vec<_>>();
    sqlx::query(
            "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id, message_id) \
             SELECT r, 'filed', a, $4, '', t, m FROM UNNEST($1::text[], $2::text[], $3::text[], $5::text[]) \
             AS u(r, a, t, m)",
        )
        .bind(pick(&reference))
        .bind(pick(&actor))
        .bind(pick(&trace))
        .bind(now)
        .bind(pick(&message))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(inserted.len())
}

/// SQLite: one writer, no arrays; row by row inside one transaction is fast.
async fn record_sqlite(
    pool: &sqlx::SqlitePool,
    batch: &[Incoming],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = batch.iter().map(|i| i.message_id.clone()).collect();
    let claimed = inbox::claim_sqlite(&mut tx, &ids).await?;
    let mut new = 0;
    for i in batch.iter().filter(|i| claimed.contains(&i.message_id)) {
        let d = &i.dossier;
        let expires = d.filing.current_title.as_ref().map(|t| t.expires_on);
        let inserted = sqlx::query(
            "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, \
             legal_filing_date, filed_at, received_at, recorded_at, title_expires_on, cover_until, \
             dossier, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
             ON CONFLICT (reference) DO NOTHING",
        )
        .bind(d.reference.as_str())
        .bind(d.channel().as_str())
        .bind(d.filing.procedure.as_str())
        .bind(d.filing.motif.as_str())
        .bind(d.prefecture())
        .bind(d.legal_filing_date)
        .bind(d.filed_at)
        .bind(d.received_at)
        .bind(now)
        .bind(expires)
        .bind(&i.encoded)
        .bind(&i.trace_id)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            continue;
        }
        new += 1;
        sqlx::query(
            "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id, message_id) \
             VALUES ($1, 'filed', $2, $3, '', $4, $5)",
        )
        .bind(d.reference.as_str())
        .bind(actor_of(d))
        .bind(now)
        .bind(&i.trace_id)
        .bind(&i.message_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(new)
}
