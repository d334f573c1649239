//! The postal tables as typed rows. States, page roles and the JSON columns
//! are read back as their types as the row is read: a value this service did
//! not write fails the read, never a guess or an empty list.

use std::ops::Deref;

use chrono::{DateTime, Utc};
use guichet_dossier::postal::{BatchState, EnvelopeState, ExtractedField, PageRole};
use guichet_kit::sql::Nullable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(super) const BATCH_COLUMNS: &str =
    "id, station_id, reception_date, postmark_dates, state, received_at";
pub(super) const PAGE_COLUMNS: &str =
    "batch_id, seq, sha256, media_type, size_bytes, role, code, envelope_id, ocr_text";
pub(super) const ENVELOPE_COLUMNS: &str = "id, batch_id, seq, page_count, state, station_id, \
    postmark_date, reception_date, form_id, code_problem, fields, reference, routed_reason, \
    routed_to, keyed_by, created_at";
pub(super) const EVENT_COLUMNS: &str =
    "id, envelope_id, kind, operator_id, at, postmark_date, reason, reference";
pub(super) const LETTER_COLUMNS: &str = "id, reference, envelope_id, kind, sha256, emailed_to, email_state, created_at, \
     printed_at, printed_by, posted_at, posted_by";

/// A value kept as JSON text, read back as `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText<T>(pub T);

impl<T: DeserializeOwned> TryFrom<String> for JsonText<T> {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(JsonText)
    }
}

impl<T> Deref for JsonText<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: String,
    pub station_id: String,
    pub reception_date: String,
    /// One per envelope in stack order: an ISO date, or "".
    #[sqlx(try_from = "String")]
    pub postmark_dates: JsonText<Vec<String>>,
    #[sqlx(try_from = "String")]
    pub state: BatchState,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PageRow {
    pub batch_id: String,
    pub seq: i32,
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: i64,
    /// None until the batch is read.
    #[sqlx(try_from = "Option<String>")]
    pub role: Nullable<PageRole>,
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
    #[sqlx(try_from = "String")]
    pub state: EnvelopeState,
    pub station_id: String,
    pub postmark_date: Option<String>,
    pub reception_date: String,
    pub form_id: Option<String>,
    pub code_problem: Option<String>,
    #[sqlx(try_from = "String")]
    pub fields: JsonText<Vec<StoredField>>,
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
    /// pending, none, sent, or why the e-mail failed.
    pub email_state: String,
    pub created_at: DateTime<Utc>,
    pub printed_at: Option<DateTime<Utc>>,
    pub printed_by: Option<String>,
    pub posted_at: Option<DateTime<Utc>>,
    pub posted_by: Option<String>,
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

/// How many envelopes are in a state.
#[derive(sqlx::FromRow)]
pub(super) struct StateCount {
    #[sqlx(try_from = "String")]
    pub state: EnvelopeState,
    pub n: i64,
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
