//! The instruction schema: dossiers, their events, attestations, documents
//! received later and agents' reads, behind one `Store`. The SQL is written
//! once for both backends, as plain functions over `guichet_kit::sql`; the
//! little that differs (date arithmetic, row locks) is asked of the backend
//! once, when the store is made, and the batch inserts PostgreSQL can do in
//! one array statement have their own function beside the row-by-row one.
//!
//! - `rows`: the tables as typed rows;
//! - `arrival`: a batch from the bus, recorded in one transaction;
//! - `steps`: what agents and documents do to a case, a transaction each;
//! - `rights`: attestations issued and the sweep;
//! - `queries`: what is read, a case from one snapshot.

mod arrival;
mod queries;
mod rights;
mod rows;
mod steps;

use chrono::NaiveDate;
use guichet_dossier::UrgencyClass;
use guichet_dossier::urgency::URGENCY_HORIZONS;
use guichet_kit::db::Database;
use guichet_kit::sql::{Backend, Stmt};

pub use rows::{
    AttestationRow, CaseError, CaseRow, CaseSnapshot, CodedAttestation, DocumentRow, EventRow,
    Incoming, QueueFilter, QueueRow, StepDetails,
};
use rows::{CASE_COLUMNS, OPEN};

#[derive(Clone)]
pub struct Store {
    db: Database,
    /// Issue or renew an attestation when cover ends within this many days.
    horizon_days: i64,
    sql: Statements,
}

/// The statements whose text depends on the backend, made once.
#[derive(Clone)]
struct Statements {
    queue: String,
    files_ahead: String,
    take_next: String,
    case_for_update: String,
}

impl Statements {
    fn for_backend(b: Backend) -> Self {
        let urgency = urgency_sql(b);
        Statements {
            queue: format!(
                "SELECT reference, channel, procedure, motif, prefecture, legal_filing_date, \
                 queue_date, cover_until, taken_by, {urgency} AS urgency, state, title_expires_on \
                 FROM dossiers WHERE {OPEN} AND linked_to IS NULL \
                   AND ($7 IS NULL OR prefecture = $7) AND ($8 IS NULL OR procedure = $8) \
                   AND ($9 IS NULL OR motif = $9) AND ($10 IS NULL OR channel = $10) \
                   AND ($11 IS NULL OR state = $11) AND ($12 IS NULL OR cover_until <= $12) \
                   AND ($13 IS NULL OR {urgency} = $13) \
                 ORDER BY urgency, queue_date, filed_at, reference LIMIT $14"
            ),
            files_ahead: format!(
                "SELECT count(*) FROM dossiers WHERE {OPEN} AND linked_to IS NULL \
                 AND prefecture = $7 AND reference <> $11 \
                 AND ({urgency} < $8 OR ({urgency} = $8 AND (queue_date < $9 \
                      OR (queue_date = $9 AND (filed_at < $10 \
                          OR (filed_at = $10 AND reference < $11))))))"
            ),
            take_next: format!(
                "UPDATE dossiers SET taken_by = $7, taken_at = $8, updated_at = $8 \
                 WHERE taken_by IS NULL AND reference = (SELECT reference FROM dossiers \
                     WHERE {OPEN} AND linked_to IS NULL AND taken_by IS NULL AND prefecture = $9 \
                     ORDER BY {urgency}, queue_date, filed_at, reference LIMIT 1 {}) \
                 RETURNING reference",
                b.for_update_skip_locked()
            ),
            case_for_update: format!(
                "SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1 {}",
                b.for_update()
            ),
        }
    }
}

/// The urgency class of a row, from its cover's end: `$1` is today, `$2`
/// and `$3` the horizons, `$4..$6` the class ranks.
fn urgency_sql(b: Backend) -> String {
    let days_left = b.days_from("$1", "cover_until");
    format!(
        "CAST(CASE WHEN cover_until IS NULL THEN $6 WHEN {days_left} <= $2 THEN $4 \
         WHEN {days_left} <= $3 THEN $5 ELSE $6 END AS SMALLINT)"
    )
}

/// A statement using `urgency_sql`, with its six parameters bound.
fn with_urgency(sql: &str, today: NaiveDate) -> Stmt {
    let [(critical_class, critical), (soon_class, soon)] = URGENCY_HORIZONS;
    Stmt::new(sql.to_string())
        .bind(today)
        .bind(critical as i32)
        .bind(soon as i32)
        .bind(critical_class.rank())
        .bind(soon_class.rank())
        .bind(UrgencyClass::Routine.rank())
}

impl Store {
    pub fn new(db: Database, horizon_days: i64) -> Self {
        let sql = Statements::for_backend(db.sql_backend());
        Self {
            db,
            horizon_days,
            sql,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}
