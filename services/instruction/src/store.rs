//! The instruction schema: dossiers and their events. Plain SQL, batched.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::urgency::URGENCY_HORIZONS;
use guichet_dossier::{Dossier, UrgencyClass};
use guichet_kit::inbox;
use sqlx::PgPool;

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
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records a batch in one transaction: claims the message ids, inserts the
    /// dossiers not seen before and their first event. Returns how many were new.
    pub async fn record(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = batch.iter().map(|i| i.message_id.clone()).collect();
        let claimed = inbox::claim(&mut tx, &ids).await?;
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
            actor.push(format!("channel:{}", d.channel()));
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
        let inserted: std::collections::HashSet<String> =
            inserted.into_iter().map(|(r,)| r).collect();
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

    pub async fn dossier(&self, reference: &str) -> Result<Option<DossierRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT reference, state, dossier AS encoded, recorded_at, cover_until, trace_id \
             FROM dossiers WHERE reference = $1",
        )
        .bind(reference)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn events(&self, reference: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, kind, actor, at, reason, trace_id FROM dossier_events \
             WHERE reference = $1 ORDER BY id",
        )
        .bind(reference)
        .fetch_all(&self.pool)
        .await
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
        sqlx::query_as(
            "SELECT reference, channel, procedure, motif, prefecture, legal_filing_date, \
             CASE WHEN cover_until IS NULL THEN $6::int2 \
                  WHEN cover_until - $1::date <= $2 THEN $4::int2 \
                  WHEN cover_until - $1::date <= $3 THEN $5::int2 \
                  ELSE $6::int2 END AS urgency, \
             state, title_expires_on \
             FROM dossiers \
             WHERE state NOT IN ('favourable', 'unfavourable', 'closed') \
               AND ($7::text IS NULL OR prefecture = $7) \
             ORDER BY urgency, legal_filing_date, filed_at, reference \
             LIMIT $8",
        )
        .bind(today)
        .bind(critical as i32)
        .bind(soon as i32)
        .bind(critical_class.rank())
        .bind(soon_class.rank())
        .bind(UrgencyClass::Routine.rank())
        .bind(prefecture)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
