//! Batches, pages, envelopes and letters, written once for both backends as
//! plain functions over `guichet_kit::sql`. A batch's rows are written with
//! its pages before the upload is answered; reading a batch turns it into
//! envelopes in one transaction, so a crash mid-reading leaves it to be
//! read again, never half read.
//!
//! - `rows`: the tables as typed rows;
//! - `batches`: uploads, their pages and their reading;
//! - `envelopes`: the keying queue, closing an envelope, its history;
//! - `letters`: the letters made for postal filers.

mod batches;
mod envelopes;
mod letters;
mod rows;

use guichet_dossier::postal::PageRole;
use guichet_kit::db::{self, Database};
use guichet_kit::sql::{AnyRow, Stmt};

pub use rows::{
    BatchRow, EnvelopeEventRow, EnvelopeRow, JsonText, LetterRow, PageRow, StoredField,
};

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
    /// A row this service wrote that it cannot read back: damaged data,
    /// an internal error, never a state to guess.
    #[error(transparent)]
    Unreadable(#[from] db::Unreadable),
    #[error("encoding a value to store")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
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
    pub role: PageRole,
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

#[derive(Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The row of `table` with this id (`what` names it): `missing` when
    /// there is none, `Unreadable` when it does not decode.
    async fn by_id<T: AnyRow>(
        &self,
        (table, columns): (&str, &str),
        what: &str,
        id: &str,
        missing: fn(String) -> StoreError,
    ) -> Result<T, StoreError> {
        self.db
            .fetch_optional(
                Stmt::new(format!("SELECT {columns} FROM {table} WHERE id = $1")).bind(id),
            )
            .await
            .map_err(db::reading::<StoreError>(|| format!("{what} {id}")))?
            .ok_or_else(|| missing(id.to_string()))
    }

    /// The rows `s` reads; `rows()` names them if one does not decode.
    async fn rows<T: AnyRow>(
        &self,
        rows: impl FnOnce() -> String,
        s: Stmt,
    ) -> Result<Vec<T>, StoreError> {
        self.db.fetch_all(s).await.map_err(db::reading(rows))
    }
}
