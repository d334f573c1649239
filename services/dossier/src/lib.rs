//! Guichet's pure domain: the normalized dossier, how a filing is parsed and
//! checked, the dossier reference, and the legal rules on dates and urgency.
//! No I/O here: no tokio, no database, no broker. Time is always an argument.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod calendar;
pub mod channel;
pub mod codes;
pub mod desk;
pub mod equity;
pub mod evaluation;
pub mod filing;
pub mod idempotency;
pub mod lifecycle;
pub mod notice;
pub mod postal;
pub mod prefecture;
pub mod reference;
pub mod requirements;
pub mod rights;
pub mod signalement;
pub mod text;
pub mod urgency;
pub mod violations;

pub use channel::Channel;
pub use codes::{AnswerChannel, DocumentKind, Language, Motif, Procedure, TitleKind};
pub use filing::{
    Applicant, Contact, CurrentTitle, DocumentRef, Dossier, Filing, PostalAddress, Provenance,
    RawFiling, RawTitleRecord, SCHEMA_VERSION, TitleRecord, reads_schema_version,
};
pub use lifecycle::{CaseState, Step};
pub use reference::Reference;
pub use urgency::UrgencyClass;
pub use violations::{FieldViolation, Violations};
