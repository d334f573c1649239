//! Batches, pages, envelopes and letters, on both backends. A batch's rows
//! are written with its pages before the upload is answered; reading a batch
//! turns it into envelopes in one transaction, so a crash mid-reading
//! leaves it to be read again, never half read.

use chrono::{DateTime, Utc};
use guichet_dossier::postal::{EnvelopeAction, EnvelopeState, ExtractedField};
use guichet_kit::db::Database;
use guichet_kit::{in_tx, on_db};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no envelope {0}")]
    NoEnvelope(String),
    #[error("no batch {0}")]
    NoBatch(String),
    #[error("no letter {0}")]
    NoLetter(String),
    #[error("{0}")]
    WrongState(&'static str),
    #[error("this idempotency key was already used for a different upload")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A row this service wrote that it cannot read back: damaged data,
    /// an internal error, never a state to guess.
    #[error("envelope {0} has an unknown state {1:?}")]
    Unreadable(String, String),
}

/// An envelope's stored state, read back loudly.
pub fn envelope_state(id: &str, state: &str) -> Result<EnvelopeState, StoreError> {
    EnvelopeState::parse(state)
        .ok_or_else(|| StoreError::Unreadable(id.to_string(), state.to_string()))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: String,
    pub station_id: String,
    pub reception_date: String,
    pub postmark_dates: String,
    pub state: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PageRow {
    pub batch_id: String,
    pub seq: i32,
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub role: Option<String>,
    pub code: Option<String>,
    pub envelope_id: Option<String>,
    pub ocr_text: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvelopeRow {
    pub id: String,
    pub batch_id: String,
    pub seq: i32,
    pub page_count: i32,
    pub state: String,
    pub station_id: String,
    pub postmark_date: Option<String>,
    pub reception_date: String,
    pub form_id: Option<String>,
    pub code_problem: Option<String>,
    pub fields: String,
    pub reference: Option<String>,
    pub routed_reason: Option<String>,
    pub routed_to: Option<String>,
    pub keyed_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LetterRow {
    pub id: String,
    pub reference: String,
    pub envelope_id: String,
    pub kind: String,
    pub sha256: String,
    pub emailed_to: Option<String>,
    pub email_state: String,
    pub created_at: DateTime<Utc>,
}

/// One thing an operator did with an envelope.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvelopeEventRow {
    pub id: String,
    pub envelope_id: String,
    pub kind: String,
    pub operator_id: String,
    pub at: DateTime<Utc>,
    pub postmark_date: Option<String>,
    pub reason: String,
    pub reference: Option<String>,
}

/// An event to record with a change of the envelope's state.
pub struct NewEnvelopeEvent<'a> {
    pub kind: &'a str,
    pub operator_id: &'a str,
    pub postmark_date: Option<&'a str>,
    pub reason: &'a str,
    /// The dossier's reference, on the event that filed it.
    pub reference: Option<&'a str>,
}

/// A field as kept in the envelope's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredField {
    pub key: String,
    pub value: String,
    pub confidence: f64,
    pub source: String,
}

impl From<ExtractedField> for StoredField {
    fn from(f: ExtractedField) -> Self {
        Self {
            key: f.key,
            value: f.value,
            confidence: f.confidence,
            source: f.source.to_string(),
        }
    }
}

impl EnvelopeRow {
    pub fn fields(&self) -> Vec<StoredField> {
        serde_json::from_str(&self.fields).unwrap_or_default()
    }
}

const BATCH_COLUMNS: &str = "id, station_id, reception_date, postmark_dates, state, received_at";
const PAGE_COLUMNS: &str =
    "batch_id, seq, sha256, media_type, size_bytes, role, code, envelope_id, ocr_text";
const ENVELOPE_COLUMNS: &str = "id, batch_id, seq, page_count, state, station_id, postmark_date, \
    reception_date, form_id, code_problem, fields, reference, routed_reason, routed_to, keyed_by, \
    created_at";
const EVENT_COLUMNS: &str =
    "id, envelope_id, kind, operator_id, at, postmark_date, reason, reference";
/// The states in which an operator may still act on an envelope.
const OPEN_STATES: &str = "('keying', 'postmark_check')";
const LETTER_COLUMNS: &str =
    "id, reference, envelope_id, kind, sha256, emailed_to, email_state, created_at";

pub struct NewBatch {
    pub idempotency_key: String,
    /// What the upload sent (`guichet_dossier::idempotency`).
    pub fingerprint: String,
    pub station_id: String,
    pub reception_date: String,
    pub postmark_dates: Vec<String>,
    /// (sha256, media type, size) of each page, in scan order.
    pub pages: Vec<(String, String, u64)>,
}

/// What reading found on one page.
pub struct PageReading {
    pub seq: i32,
    pub role: &'static str,
    pub code: String,
    pub envelope_id: Option<String>,
    pub ocr_text: Option<String>,
}

pub struct NewEnvelope {
    pub id: String,
    pub seq: i32,
    pub page_count: i32,
    pub postmark_date: Option<String>,
    pub form_id: Option<String>,
    pub code_problem: Option<String>,
    pub fields: Vec<StoredField>,
}

pub struct NewLetter {
    pub event_key: String,
    pub reference: String,
    pub envelope_id: String,
    pub kind: String,
    pub sha256: String,
    pub emailed_to: Option<String>,
    pub email_state: String,
}

/// Inserts one history event inside the caller's transaction.
macro_rules! insert_event {
    ($conn:expr, $envelope:expr, $e:expr, $now:expr) => {{
        let e: &NewEnvelopeEvent<'_> = $e;
        sqlx::query(
            "INSERT INTO postal_envelope_events (id, envelope_id, kind, operator_id, at, \
             postmark_date, reason, reference) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind($envelope)
        .bind(e.kind)
        .bind(e.operator_id)
        .bind($now)
        .bind(e.postmark_date)
        .bind(e.reason)
        .bind(e.reference)
        .execute($conn)
        .await?;
    }};
}

#[derive(Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records a batch and its pages; the same key again with the same
    /// upload returns the first batch (`false`: nothing new), with another
    /// upload `KeyReused`.
    pub async fn create_batch(
        &self,
        b: &NewBatch,
        now: DateTime<Utc>,
    ) -> Result<(String, bool), StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let postmarks = serde_json::to_string(&b.postmark_dates).unwrap_or_else(|_| "[]".into());
        let out = in_tx!(&self.db, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO postal_batches (id, idempotency_key, station_id, reception_date, \
                 postmark_dates, state, received_at, request_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, 'stored', $6, $7) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&id)
            .bind(&b.idempotency_key)
            .bind(&b.station_id)
            .bind(&b.reception_date)
            .bind(&postmarks)
            .bind(now)
            .bind(&b.fingerprint)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                for (seq, (sha, media, size)) in b.pages.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO postal_pages (batch_id, seq, sha256, media_type, size_bytes) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&id)
                    .bind(seq as i32 + 1)
                    .bind(sha)
                    .bind(media)
                    .bind(*size as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                (id.clone(), true)
            } else {
                let (existing, stored): (String, Option<String>) = sqlx::query_as(
                    "SELECT id, request_fingerprint FROM postal_batches \
                     WHERE idempotency_key = $1",
                )
                .bind(&b.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
                if !guichet_dossier::idempotency::same_request(stored.as_deref(), &b.fingerprint) {
                    return Err(StoreError::KeyReused);
                }
                (existing, false)
            }
        });
        Ok(out)
    }

    /// Claims the oldest batch not read yet for `lease`, if any.
    pub async fn claim_batch(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<BatchRow>, StoreError> {
        let candidate: Option<String> = on_db!(&self.db, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM postal_batches WHERE state = 'stored' \
                 AND (lease_until IS NULL OR lease_until < $1) ORDER BY received_at LIMIT 1",
            )
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let Some(id) = candidate else {
            return Ok(None);
        };
        let claimed = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE postal_batches SET lease_until = $1 WHERE id = $2 AND state = 'stored' \
                 AND (lease_until IS NULL OR lease_until < $3)",
            )
            .bind(now + lease)
            .bind(&id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if claimed == 0 {
            return Ok(None);
        }
        self.batch(&id).await.map(Some)
    }

    pub async fn batch(&self, id: &str) -> Result<BatchRow, StoreError> {
        let row: Option<BatchRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM postal_batches WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or_else(|| StoreError::NoBatch(id.to_string()))
    }

    pub async fn pages_of_batch(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {PAGE_COLUMNS} FROM postal_pages WHERE batch_id = $1 ORDER BY seq"
            ))
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn pages_of_envelope(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {PAGE_COLUMNS} FROM postal_pages WHERE envelope_id = $1 \
                 AND role <> 'separator' ORDER BY seq"
            ))
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Writes what reading found: each page's role and envelope, the
    /// envelopes, and the batch as read, all at once.
    pub async fn record_reading(
        &self,
        batch_id: &str,
        pages: &[PageReading],
        envelopes: &[NewEnvelope],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let batch = self.batch(batch_id).await?;
        in_tx!(&self.db, |tx| {
            for e in envelopes {
                sqlx::query(
                    "INSERT INTO postal_envelopes (id, batch_id, seq, page_count, state, station_id, \
                     postmark_date, reception_date, form_id, code_problem, fields, created_at) \
                     VALUES ($1, $2, $3, $4, 'keying', $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&e.id)
                .bind(batch_id)
                .bind(e.seq)
                .bind(e.page_count)
                .bind(&batch.station_id)
                .bind(&e.postmark_date)
                .bind(&batch.reception_date)
                .bind(&e.form_id)
                .bind(&e.code_problem)
                .bind(serde_json::to_string(&e.fields).unwrap_or_else(|_| "[]".into()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for p in pages {
                sqlx::query(
                    "UPDATE postal_pages SET role = $1, code = $2, envelope_id = $3, ocr_text = $4 \
                     WHERE batch_id = $5 AND seq = $6",
                )
                .bind(p.role)
                .bind(&p.code)
                .bind(&p.envelope_id)
                .bind(&p.ocr_text)
                .bind(batch_id)
                .bind(p.seq)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE postal_batches SET state = 'read', read_at = $1, lease_until = NULL \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn envelope(&self, id: &str) -> Result<EnvelopeRow, StoreError> {
        let row: Option<EnvelopeRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {ENVELOPE_COLUMNS} FROM postal_envelopes WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or_else(|| StoreError::NoEnvelope(id.to_string()))
    }

    /// The envelope a dossier was filed from. Found through the ledger's
    /// idempotency key (`postal-<envelope id>`), not the envelope's own
    /// reference column, which is written just after the filing commits:
    /// instruction's first event can arrive in between.
    pub async fn envelope_of_reference(
        &self,
        reference: &str,
    ) -> Result<Option<EnvelopeRow>, StoreError> {
        let key: Option<String> = on_db!(&self.db, |pool| {
            sqlx::query_scalar("SELECT idempotency_key FROM filings WHERE reference = $1")
                .bind(reference)
                .fetch_optional(pool)
                .await?
        });
        match key.as_deref().and_then(|k| k.strip_prefix("postal-")) {
            Some(id) => match self.envelope(id).await {
                Ok(row) => Ok(Some(row)),
                Err(StoreError::NoEnvelope(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    pub async fn envelopes_of_batch(&self, id: &str) -> Result<Vec<EnvelopeRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {ENVELOPE_COLUMNS} FROM postal_envelopes WHERE batch_id = $1 ORDER BY seq"
            ))
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Envelopes waiting for an operator (to key them, or to give a held
    /// postmark its second look), oldest first.
    pub async fn keying(&self, limit: u32) -> Result<Vec<EnvelopeRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {ENVELOPE_COLUMNS} FROM postal_envelopes WHERE state IN {OPEN_STATES} \
                 ORDER BY created_at, batch_id, seq LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Keeps the operator's corrections (and postmark) on an envelope still
    /// in keying, so a refused confirmation loses nothing.
    pub async fn save_keying(
        &self,
        id: &str,
        fields: &[StoredField],
        postmark_date: Option<&str>,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            sqlx::query(&format!(
                "UPDATE postal_envelopes SET fields = $1, postmark_date = $2 \
                     WHERE id = $3 AND state IN {OPEN_STATES}"
            ))
            .bind(serde_json::to_string(fields).unwrap_or_else(|_| "[]".into()))
            .bind(postmark_date)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Closes an envelope as a dossier or as routed, from keying or from a
    /// postmark hold, with what the operators did (`events`, the closing
    /// one last) in its history, all at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn close(
        &self,
        id: &str,
        action: EnvelopeAction,
        operator: &str,
        reference: Option<&str>,
        routed: Option<(&str, &str)>,
        events: &[NewEnvelopeEvent<'_>],
        now: DateTime<Utc>,
    ) -> Result<EnvelopeRow, StoreError> {
        let current = self.envelope(id).await?;
        let state = envelope_state(id, &current.state)?;
        let next = state.after(action).map_err(StoreError::WrongState)?;
        let changed = in_tx!(&self.db, |tx| {
            let changed = sqlx::query(&format!(
                "UPDATE postal_envelopes SET state = $1, reference = $2, routed_reason = $3, \
                 routed_to = $4, keyed_by = $5, closed_at = $6 \
                 WHERE id = $7 AND state IN {OPEN_STATES}"
            ))
            .bind(next.as_str())
            .bind(reference)
            .bind(routed.map(|r| r.0))
            .bind(routed.map(|r| r.1))
            .bind(operator)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                for e in events {
                    insert_event!(&mut *tx, id, e, now);
                }
            }
            changed
        });
        if changed == 0 {
            // Another operator closed it in between.
            let now_state = EnvelopeState::parse(&self.envelope(id).await?.state)
                .unwrap_or(EnvelopeState::Keying);
            return Err(StoreError::WrongState(
                now_state
                    .after(action)
                    .err()
                    .unwrap_or("this envelope changed meanwhile"),
            ));
        }
        self.envelope(id).await
    }

    /// Holds an open envelope for a second operator's look at its postmark,
    /// recording who held it, the postmark and why.
    pub async fn hold_postmark(
        &self,
        id: &str,
        event: &NewEnvelopeEvent<'_>,
        now: DateTime<Utc>,
    ) -> Result<EnvelopeRow, StoreError> {
        in_tx!(&self.db, |tx| {
            let changed = sqlx::query(&format!(
                "UPDATE postal_envelopes SET state = 'postmark_check' \
                 WHERE id = $1 AND state IN {OPEN_STATES}"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::WrongState("this envelope was closed meanwhile"));
            }
            insert_event!(&mut *tx, id, event, now);
        });
        self.envelope(id).await
    }

    /// The hold on an envelope's postmark, if it is held: the latest
    /// `postmark_held` event's postmark and operator.
    pub async fn postmark_hold(
        &self,
        row: &EnvelopeRow,
    ) -> Result<Option<(String, String)>, StoreError> {
        if row.state != EnvelopeState::PostmarkCheck.as_str() {
            return Ok(None);
        }
        let held: Option<(Option<String>, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT postmark_date, operator_id FROM postal_envelope_events \
                 WHERE envelope_id = $1 AND kind = 'postmark_held' \
                 ORDER BY at DESC, id DESC LIMIT 1",
            )
            .bind(&row.id)
            .fetch_optional(pool)
            .await?
        });
        Ok(held.and_then(|(p, op)| p.map(|p| (p, op))))
    }

    /// An envelope's history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<EnvelopeEventRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM postal_envelope_events WHERE envelope_id = $1 \
                 ORDER BY at, id"
            ))
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The history of every envelope of a batch, oldest first.
    pub async fn history_of_batch(
        &self,
        batch_id: &str,
    ) -> Result<Vec<EnvelopeEventRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT h.id, h.envelope_id, h.kind, h.operator_id, h.at, h.postmark_date, \
                 h.reason, h.reference FROM postal_envelope_events h \
                 JOIN postal_envelopes e ON e.id = h.envelope_id \
                 WHERE e.batch_id = $1 ORDER BY h.at, h.id",
            )
            .bind(batch_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Envelopes per state, for `/metrics`.
    pub async fn envelope_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT state, COUNT(*) FROM postal_envelopes GROUP BY state")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Records a letter once per event; `false` if it was already made.
    pub async fn insert_letter(
        &self,
        l: &NewLetter,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let n = on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO postal_letters (id, event_key, reference, envelope_id, kind, sha256, \
                 emailed_to, email_state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (event_key) DO NOTHING",
            )
            .bind(&id)
            .bind(&l.event_key)
            .bind(&l.reference)
            .bind(&l.envelope_id)
            .bind(&l.kind)
            .bind(&l.sha256)
            .bind(&l.emailed_to)
            .bind(&l.email_state)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((n == 1).then_some(id))
    }

    pub async fn letter_made(&self, event_key: &str) -> Result<bool, StoreError> {
        let n: i64 = on_db!(&self.db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM postal_letters WHERE event_key = $1")
                .bind(event_key)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }

    pub async fn set_email_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            sqlx::query("UPDATE postal_letters SET email_state = $1 WHERE id = $2")
                .bind(state)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    pub async fn letters(&self, reference: &str, limit: u32) -> Result<Vec<LetterRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {LETTER_COLUMNS} FROM postal_letters \
                 WHERE ($1 = '' OR reference = $1) ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(reference)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn letter(&self, id: &str) -> Result<LetterRow, StoreError> {
        let row: Option<LetterRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(&format!(
                "SELECT {LETTER_COLUMNS} FROM postal_letters WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or_else(|| StoreError::NoLetter(id.to_string()))
    }
}
