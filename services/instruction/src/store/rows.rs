//! The instruction tables as typed rows. Each row decodes into domain types
//! as it is read: a state, a procedure, a kind or dossier bytes that this
//! service did not write make the read fail, never a guess.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::lifecycle::ImpossibleStep;
use guichet_dossier::rights::{Attestation, AttestationKind, CaseFacts};
use guichet_dossier::{CaseState, Channel, DocumentKind, Dossier, Motif, Procedure};
use guichet_proto::{convert, v1 as pb};

use crate::cases::{self, split_kinds};

/// States a dossier can still move from: in the queue, owed proof of stay.
pub(super) const OPEN: &str = "state NOT IN ('favourable', 'unfavourable', 'closed')";

pub(super) const CASE_COLUMNS: &str = "reference, state, dossier, recorded_at, legal_filing_date, \
    filed_at, prefecture, procedure, cover_until, cover_basis, trace_id, missing, documents_deadline, \
    linked_to, link_confirmed, queue_date, taken_by, card_until";

pub(super) const EVENTS_SQL: &str = "SELECT id, kind, actor, at, reason, trace_id \
    FROM dossier_events WHERE reference = $1 ORDER BY id";
pub(super) const ATTESTATIONS_SQL: &str = "SELECT id, kind, valid_from, valid_until, issued_at, \
    verification_code FROM attestations WHERE reference = $1 ORDER BY id";
pub(super) const DOCUMENTS_SQL: &str = "SELECT kind, sha256, media_type, size_bytes, channel, \
    received_at FROM dossier_documents WHERE reference = $1 ORDER BY id";
pub(super) const LINKED_SQL: &str =
    "SELECT reference FROM dossiers WHERE linked_to = $1 ORDER BY reference";

/// At most this many near matches are proposed for one filing.
pub(super) const NEAR_MATCHES_SHOWN: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("no dossier {0} in instruction")]
    NotFound(String),
    #[error(transparent)]
    Impossible(#[from] ImpossibleStep),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unreadable(#[from] cases::Unreadable),
    /// An agent acted on a case someone else holds (or nobody): taking it
    /// over comes first, and is recorded.
    #[error("{reference} is not held by {agent}: take it over first")]
    NotHeld { reference: String, agent: String },
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

/// A dossier received from the bus, with what is needed to record it.
pub struct Incoming {
    pub message_id: String,
    pub dossier: Dossier,
    /// The dossier as received, kept as the record of what was filed.
    pub encoded: Vec<u8>,
    pub trace_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseRow {
    pub reference: String,
    #[sqlx(try_from = "String")]
    pub state: CaseState,
    #[sqlx(try_from = "Vec<u8>")]
    pub dossier: pb::Dossier,
    pub recorded_at: DateTime<Utc>,
    pub legal_filing_date: NaiveDate,
    pub filed_at: DateTime<Utc>,
    pub prefecture: String,
    #[sqlx(try_from = "String")]
    pub procedure: Procedure,
    pub cover_until: Option<NaiveDate>,
    pub cover_basis: Option<String>,
    pub trace_id: String,
    pub missing: String,
    pub documents_deadline: Option<NaiveDate>,
    pub linked_to: Option<String>,
    pub link_confirmed: bool,
    pub queue_date: Option<NaiveDate>,
    pub taken_by: Option<String>,
    /// The new card's last day, once it was handed over.
    pub card_until: Option<NaiveDate>,
}

impl CaseRow {
    pub fn missing(&self) -> Result<Vec<DocumentKind>, cases::Unreadable> {
        split_kinds(&self.missing).map_err(|e| cases::Unreadable::new(&self.reference, e))
    }

    /// What the rights rules need, as if the case were in `state`.
    pub fn facts(&self, state: CaseState) -> Result<CaseFacts, cases::Unreadable> {
        cases::facts_of(
            &self.reference,
            &self.dossier,
            self.procedure,
            state,
            self.legal_filing_date,
            self.card_until,
        )
    }
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
pub struct AttestationRow {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: AttestationKind,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub issued_at: DateTime<Utc>,
    pub verification_code: String,
}

impl AttestationRow {
    pub fn attestation(&self) -> Attestation {
        Attestation {
            kind: self.kind,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
        }
    }

    pub fn to_pb(&self) -> pb::AttestationView {
        pb::AttestationView {
            id: self.id as u64,
            kind: self.kind.as_str().to_string(),
            valid_from: Some(convert::date_to_pb(self.valid_from)),
            valid_until: self.valid_until.map(convert::date_to_pb),
            issued_at: Some(convert::timestamp_to_pb(self.issued_at)),
            verification_code: self.verification_code.clone(),
        }
    }
}

/// An attestation found by its verification code, with its dossier.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodedAttestation {
    pub reference: String,
    #[sqlx(flatten)]
    pub attestation: AttestationRow,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub reference: String,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    #[sqlx(try_from = "String")]
    pub procedure: Procedure,
    #[sqlx(try_from = "String")]
    pub motif: Motif,
    pub prefecture: String,
    pub legal_filing_date: NaiveDate,
    pub queue_date: Option<NaiveDate>,
    pub cover_until: Option<NaiveDate>,
    pub taken_by: Option<String>,
    pub urgency: i16,
    #[sqlx(try_from = "String")]
    pub state: CaseState,
    pub title_expires_on: Option<NaiveDate>,
}

/// A case read in one snapshot (`Store::snapshot`).
#[derive(Debug, Clone)]
pub struct CaseSnapshot {
    pub row: CaseRow,
    pub events: Vec<EventRow>,
    pub attestations: Vec<AttestationRow>,
    pub linked: Vec<String>,
    pub near_matches: Vec<String>,
    /// Documents received after filing.
    pub documents: Vec<DocumentRow>,
}

/// A document received after filing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    #[sqlx(try_from = "String")]
    pub kind: DocumentKind,
    pub sha256: String,
    pub media_type: String,
    /// A negative size is damaged data: the read fails.
    #[sqlx(try_from = "i64")]
    pub size_bytes: u64,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    pub received_at: DateTime<Utc>,
}

/// Filters of the queue; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub prefecture: Option<String>,
    pub procedure: Option<Procedure>,
    pub motif: Option<Motif>,
    pub channel: Option<Channel>,
    pub state: Option<CaseState>,
    pub cover_ends_before: Option<NaiveDate>,
    pub urgency: Option<guichet_dossier::UrgencyClass>,
}

/// What a step carries besides its kind.
#[derive(Debug, Clone, Default)]
pub struct StepDetails {
    pub actor: String,
    /// The actor must hold the case (an agent's act, not a channel's).
    pub holder_only: bool,
    pub reason: String,
    pub documents: Vec<DocumentKind>,
    pub deadline: Option<NaiveDate>,
}
