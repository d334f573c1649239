//! The instruction schema: dossiers, their events, attestations, documents
//! received later and agents' reads. Plain SQL that both backends run (only
//! the urgency arithmetic, row locks and the batch insert differ); the body of
//! each transaction is written once and expanded for each backend by `in_tx!`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::lifecycle::{self, ImpossibleStep};
use guichet_dossier::rights::{self, Attestation, AttestationKind, CaseFacts, Cover};
use guichet_dossier::urgency::URGENCY_HORIZONS;
use guichet_dossier::{
    CaseState, DocumentKind, Dossier, Procedure, Step, UrgencyClass, requirements,
};
use guichet_kit::bus::OutgoingMessage;
use guichet_kit::db::Database;
use guichet_kit::inbox::Claim;
use guichet_kit::outbox::{self, Enqueue};
use guichet_kit::{in_tx, on_db};
use guichet_proto::{convert, v1 as pb};

use crate::cases::{self, EventFacts, join_kinds, split_kinds};

/// States a dossier can still move from: in the queue, owed proof of stay.
const OPEN: &str = "state NOT IN ('favourable', 'unfavourable', 'closed')";

/// Records an issued attestation in the transaction `conn`: its row, the
/// event in the dossier's history and the case event that tells the person.
/// `$dossier` is the dossier as received (`pb::Dossier`). Evaluates to the
/// attestation as shown to the person.
macro_rules! record_attestation {
    ($conn:expr, $reference:expr, $dossier:expr, $state:expr, $a:expr, $now:expr) => {{
        let conn = $conn;
        let reference: &str = $reference;
        let a: Attestation = $a;
        let code = cases::verification_code();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO attestations (reference, kind, valid_from, valid_until, issued_at, \
             verification_code) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(reference)
        .bind(a.kind.as_str())
        .bind(a.valid_from)
        .bind(a.valid_until)
        .bind($now)
        .bind(&code)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
             VALUES ($1, 'attestation_issued', 'system', $2, $3, $4)",
        )
        .bind(reference)
        .bind($now)
        .bind(a.kind.as_str())
        .bind(guichet_kit::telemetry::current_trace_id())
        .execute(&mut *conn)
        .await?;
        let view = AttestationRow {
            id,
            kind: a.kind,
            valid_from: a.valid_from,
            valid_until: a.valid_until,
            issued_at: $now,
            verification_code: code,
        }
        .to_pb();
        conn.enqueue(&cases::event_message(EventFacts {
            reference,
            kind: "attestation_issued",
            dossier: $dossier,
            state: $state,
            at: $now,
            reason: a.kind.as_str(),
            attestation: Some(view.clone()),
            missing: &[],
            documents_deadline: None,
        }))
        .await?;
        view
    }};
}

/// Issues the attestation due for `row` in state `state`, if any, within
/// `horizon` days, in the transaction `conn`; updates the cover. Evaluates to
/// whether one was issued.
macro_rules! issue_due {
    ($conn:expr, $row:expr, $state:expr, $now:expr, $today:expr, $horizon:expr) => {{
        let conn = $conn;
        let row: &CaseRow = $row;
        let facts = row.facts($state)?;
        let held: Vec<AttestationRow> = sqlx::query_as(
            "SELECT id, kind, valid_from, valid_until, issued_at, verification_code \
             FROM attestations WHERE reference = $1 ORDER BY id",
        )
        .bind(&row.reference)
        .fetch_all(&mut *conn)
        .await?;
        let mut attestations: Vec<Attestation> =
            held.iter().map(AttestationRow::attestation).collect();
        let due = rights::attestation_due(&facts, &attestations, $today, $horizon);
        if let Some(a) = due {
            record_attestation!(&mut *conn, &row.reference, &row.dossier, $state, a, $now);
            attestations.push(a);
        }
        let cover: Cover = rights::cover(&facts, &attestations, $today);
        sqlx::query("UPDATE dossiers SET cover_until = $2, cover_basis = $3 WHERE reference = $1")
            .bind(&row.reference)
            .bind(cover.until())
            .bind(cover.basis().map(|b| b.as_str()))
            .execute(&mut *conn)
            .await?;
        due.is_some()
    }};
}

/// The attestation a dossier is owed the moment it is recorded (a complete
/// renewal whose cover ends within the horizon), after its case messages so
/// the person hears of the filing first. A filing just linked to an earlier
/// one stands where that one stands and gets none of its own: its cover
/// columns are set back to what it holds without it.
macro_rules! attest_on_arrival {
    ($conn:expr, $d:expr, $arrival:expr, $linked:expr, $now:expr, $today:expr) => {{
        let conn = $conn;
        let d: &Dossier = $d;
        let arrival: &cases::Arrival = $arrival;
        match arrival.attestation {
            Some(a) if !$linked => {
                let dossier = convert::dossier_to_pb(d);
                record_attestation!(
                    &mut *conn,
                    d.reference.as_str(),
                    &dossier,
                    arrival.state,
                    a,
                    $now
                );
            }
            Some(_) => {
                let cover = cases::cover_without_attestations(d, arrival.state, $today);
                sqlx::query(
                    "UPDATE dossiers SET cover_until = $2, cover_basis = $3 WHERE reference = $1",
                )
                .bind(d.reference.as_str())
                .bind(cover.until())
                .bind(cover.basis().map(|b| b.as_str()))
                .execute(&mut *conn)
                .await?;
            }
            None => {}
        }
    }};
}

/// After the dossiers are in: their first events, the case events for the
/// person's channel, and the link of a second filing of the same request to
/// the first (one place in the queue, at the earlier legal filing date).
/// SQLite, row by row (one writer, no round trips to save); PostgreSQL has
/// `after_insert_postgres`, which does the same in a few array statements.
macro_rules! after_insert {
    ($conn:expr, $fresh:expr, $inserted:expr, $now:expr, $today:expr, $horizon:expr) => {{
        let conn = $conn;
        let mut new: Vec<String> = Vec::new();
        for (i, arrival) in first_arrivals($fresh, $inserted, $today, $horizon) {
            new.push(i.dossier.reference.as_str().to_string());
            let d = &i.dossier;
            let reference = d.reference.as_str();
            for (kind, reason) in arrival_events(&arrival) {
                sqlx::query(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id, message_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(reference)
                .bind(kind)
                .bind(actor_of(d))
                .bind($now)
                .bind(&reason)
                .bind(&i.trace_id)
                .bind(&i.message_id)
                .execute(&mut *conn)
                .await?;
            }
            conn.enqueue(&arrival_message(d, &arrival, $now)).await?;
            let linked = link_to_first!(&mut *conn, i, $now);
            attest_on_arrival!(&mut *conn, d, &arrival, linked, $now, $today);
            propose_near_matches!(&mut *conn, i, $now);
        }
        new
    }};
}

/// Links the dossier `$i` to the first open filing of the same request by
/// the same person, if there is one; evaluates to whether it did. The first is the one filed first;
/// looking only at earlier ones makes the choice the same whatever the order
/// dossiers arrive in, or are batched in.
macro_rules! link_to_first {
    ($conn:expr, $i:expr, $now:expr) => {{
        let conn = $conn;
        let i: &Incoming = $i;
        let d = &i.dossier;
        let reference = d.reference.as_str();
        let first: Option<(String, Option<NaiveDate>)> = sqlx::query_as(&format!(
            "SELECT reference, queue_date FROM dossiers WHERE person_key = $1 AND procedure = $2 \
             AND reference <> $3 AND linked_to IS NULL AND {OPEN} \
             AND (filed_at < $4 OR (filed_at = $4 AND reference < $3)) \
             ORDER BY filed_at, reference LIMIT 1"
        ))
        .bind(d.filing.applicant.person_key())
        .bind(d.filing.procedure.as_str())
        .bind(reference)
        .bind(d.filed_at)
        .fetch_optional(&mut *conn)
        .await?;
        let first_found = first.is_some();
        if let Some((primary, queue_date)) = first {
            let earliest = queue_date.map_or(d.legal_filing_date, |q| q.min(d.legal_filing_date));
            sqlx::query("UPDATE dossiers SET linked_to = $2, updated_at = $3 WHERE reference = $1")
                .bind(reference)
                .bind(&primary)
                .bind($now)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE dossiers SET queue_date = $2, updated_at = $3 WHERE reference = $1",
            )
            .bind(&primary)
            .bind(earliest)
            .bind($now)
            .execute(&mut *conn)
            .await?;
            for (r, other) in [(reference, primary.as_str()), (primary.as_str(), reference)] {
                sqlx::query(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, 'linked', 'system', $2, $3, $4)",
                )
                .bind(r)
                .bind($now)
                .bind(format!("same request as {other}; an agent confirms"))
                .bind(&i.trace_id)
                .execute(&mut *conn)
                .await?;
            }
        }
        first_found
    }};
}

/// Proposes to an agent the open filings, filed before the dossier `$i`,
/// that share its family name, birth date and nationality but not its given
/// names: one person spelled two ways, or twins. Nothing is linked; both get
/// a `near_match` event naming the other, and the case view lists them.
/// Looking only at earlier filings proposes each pair once.
macro_rules! propose_near_matches {
    ($conn:expr, $i:expr, $now:expr) => {{
        let conn = $conn;
        let i: &Incoming = $i;
        let d = &i.dossier;
        let reference = d.reference.as_str();
        let near: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT reference FROM dossiers WHERE near_key = $1 AND procedure = $2 \
             AND person_key <> $3 AND reference <> $4 AND linked_to IS NULL AND {OPEN} \
             AND (filed_at < $5 OR (filed_at = $5 AND reference < $4)) \
             ORDER BY filed_at, reference LIMIT {NEAR_MATCHES_SHOWN}"
        ))
        .bind(d.filing.applicant.near_key())
        .bind(d.filing.procedure.as_str())
        .bind(d.filing.applicant.person_key())
        .bind(reference)
        .bind(d.filed_at)
        .fetch_all(&mut *conn)
        .await?;
        for other in &near {
            for (r, o) in [(reference, other.as_str()), (other.as_str(), reference)] {
                sqlx::query(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, 'near_match', 'system', $2, $3, $4)",
                )
                .bind(r)
                .bind($now)
                .bind(format!(
                    "{o}: same family name, birth date and nationality, other given names; \
                     an agent decides whether it is the same person"
                ))
                .bind(&i.trace_id)
                .execute(&mut *conn)
                .await?;
            }
        }
    }};
}

/// At most this many near matches are proposed for one filing.
const NEAR_MATCHES_SHOWN: i64 = 10;

/// The dossiers of a batch recorded for the first time, each once even if
/// two messages carried it, with their state on arrival.
fn first_arrivals<'a>(
    fresh: &[&'a Incoming],
    inserted: &HashSet<String>,
    today: NaiveDate,
    horizon_days: i64,
) -> Vec<(&'a Incoming, cases::Arrival)> {
    let mut pending = inserted.clone();
    fresh
        .iter()
        .filter(|i| pending.remove(i.dossier.reference.as_str()))
        .map(|i| (*i, cases::on_arrival(&i.dossier, today, horizon_days)))
        .collect()
}

/// A new dossier's first two events: filed, then found complete or not.
fn arrival_events(arrival: &cases::Arrival) -> [(&'static str, String); 2] {
    let found = if arrival.state == CaseState::Complete {
        Step::FoundComplete
    } else {
        Step::FoundIncomplete
    };
    [
        ("filed", String::new()),
        (found.as_str(), join_kinds(&arrival.missing)),
    ]
}

/// The case event telling the person's channel how their dossier was found.
fn arrival_message(d: &Dossier, arrival: &cases::Arrival, now: DateTime<Utc>) -> OutgoingMessage {
    let [_, (kind, _)] = arrival_events(arrival);
    cases::event_message(EventFacts {
        reference: d.reference.as_str(),
        kind,
        dossier: &convert::dossier_to_pb(d),
        state: arrival.state,
        at: now,
        reason: "",
        attestation: None,
        missing: &arrival.missing,
        documents_deadline: None,
    })
}

/// PostgreSQL: what `after_insert!` does, with the events and the case
/// messages of the whole batch in one statement each, and the search for a
/// first filing in one statement too. That search only narrows the per-
/// dossier linking down to the dossiers that have a candidate at all: no
/// candidate before linking means none after (linking only takes dossiers
/// out of the candidates), so the outcome is the row-by-row one.
async fn after_insert_postgres(
    conn: &mut sqlx::PgConnection,
    fresh: &[&Incoming],
    inserted: &HashSet<String>,
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let arrivals = first_arrivals(fresh, inserted, today, horizon_days);
    if arrivals.is_empty() {
        return Ok(Vec::new());
    }
    let mut events: [Vec<String>; 6] = Default::default();
    let mut messages = Vec::with_capacity(arrivals.len());
    for (i, arrival) in &arrivals {
        let d = &i.dossier;
        for (kind, reason) in arrival_events(arrival) {
            events[0].push(d.reference.to_string());
            events[1].push(kind.to_string());
            events[2].push(actor_of(d));
            events[3].push(reason);
            events[4].push(i.trace_id.clone());
            events[5].push(i.message_id.clone());
        }
        messages.push(arrival_message(d, arrival, now));
    }
    sqlx::query(
        "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id, message_id) \
         SELECT r, k, a, $7, re, t, m FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[]) AS u(r, k, a, re, t, m)",
    )
    .bind(&events[0])
    .bind(&events[1])
    .bind(&events[2])
    .bind(&events[3])
    .bind(&events[4])
    .bind(&events[5])
    .bind(now)
    .execute(&mut *conn)
    .await?;
    outbox::enqueue_all_postgres(&mut *conn, &messages).await?;

    let (mut refs, mut keys, mut procedures, mut filed) = (vec![], vec![], vec![], vec![]);
    for (i, _) in &arrivals {
        let d = &i.dossier;
        refs.push(d.reference.to_string());
        keys.push(d.filing.applicant.person_key());
        procedures.push(d.filing.procedure.as_str().to_string());
        filed.push(d.filed_at);
    }
    let with_candidate: HashSet<String> = sqlx::query_scalar(&format!(
        "SELECT u.r FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(r, pk, p, fa) \
         WHERE EXISTS (SELECT 1 FROM dossiers WHERE person_key = u.pk AND procedure = u.p \
         AND reference <> u.r AND linked_to IS NULL AND {OPEN} \
         AND (filed_at < u.fa OR (filed_at = u.fa AND reference < u.r)))"
    ))
    .bind(&refs)
    .bind(&keys)
    .bind(&procedures)
    .bind(&filed)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    for (i, arrival) in &arrivals {
        let linked = with_candidate.contains(i.dossier.reference.as_str())
            && link_to_first!(&mut *conn, *i, now);
        attest_on_arrival!(&mut *conn, &i.dossier, arrival, linked, now, today);
    }
    let near_keys: Vec<String> = arrivals
        .iter()
        .map(|(i, _)| i.dossier.filing.applicant.near_key())
        .collect();
    let with_near: HashSet<String> = sqlx::query_scalar(&format!(
        "SELECT u.r FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
         AS u(r, nk, pk, p, fa) \
         WHERE EXISTS (SELECT 1 FROM dossiers WHERE near_key = u.nk AND procedure = u.p \
         AND person_key <> u.pk AND reference <> u.r AND linked_to IS NULL AND {OPEN} \
         AND (filed_at < u.fa OR (filed_at = u.fa AND reference < u.r)))"
    ))
    .bind(&refs)
    .bind(&near_keys)
    .bind(&keys)
    .bind(&procedures)
    .bind(&filed)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    for (i, _) in &arrivals {
        if with_near.contains(i.dossier.reference.as_str()) {
            propose_near_matches!(&mut *conn, *i, now);
        }
    }
    Ok(refs)
}

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

/// A dossier's row, decoded as it is read: a state, a procedure or dossier
/// bytes this service did not write make the read fail, never a guess.
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
        )
    }
}

const CASE_COLUMNS: &str = "reference, state, dossier, recorded_at, legal_filing_date, \
    filed_at, prefecture, procedure, cover_until, cover_basis, trace_id, missing, documents_deadline, \
    linked_to, link_confirmed, queue_date, taken_by";

const EVENTS_SQL: &str = "SELECT id, kind, actor, at, reason, trace_id FROM dossier_events \
     WHERE reference = $1 ORDER BY id";
const ATTESTATIONS_SQL: &str = "SELECT id, kind, valid_from, valid_until, issued_at, \
     verification_code FROM attestations WHERE reference = $1 ORDER BY id";
const LINKED_SQL: &str = "SELECT reference FROM dossiers WHERE linked_to = $1 ORDER BY reference";

/// The open filings that may be the same person as `$1` (see
/// `propose_near_matches!`), while both are open and unlinked.
fn near_matches_sql() -> String {
    format!(
        "SELECT o.reference FROM dossiers d JOIN dossiers o ON o.near_key = d.near_key \
         AND o.procedure = d.procedure AND o.person_key <> d.person_key \
         AND o.reference <> d.reference AND o.linked_to IS NULL \
         AND o.state NOT IN ('favourable', 'unfavourable', 'closed') \
         WHERE d.reference = $1 AND d.near_key <> '' \
         ORDER BY o.filed_at, o.reference LIMIT {NEAR_MATCHES_SHOWN}"
    )
}

/// A case read in one snapshot (`Store::snapshot`).
#[derive(Debug, Clone)]
pub struct CaseSnapshot {
    pub row: CaseRow,
    pub events: Vec<EventRow>,
    pub attestations: Vec<AttestationRow>,
    pub linked: Vec<String>,
    pub near_matches: Vec<String>,
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

/// An attestation found by its verification code, with its dossier.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodedAttestation {
    pub reference: String,
    #[sqlx(flatten)]
    pub attestation: AttestationRow,
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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub reference: String,
    pub channel: String,
    pub procedure: String,
    pub motif: String,
    pub prefecture: String,
    pub legal_filing_date: NaiveDate,
    pub queue_date: Option<NaiveDate>,
    pub cover_until: Option<NaiveDate>,
    pub taken_by: Option<String>,
    pub urgency: i16,
    pub state: String,
    pub title_expires_on: Option<NaiveDate>,
}

/// Filters of the queue; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub prefecture: Option<String>,
    pub procedure: Option<String>,
    pub motif: Option<String>,
    pub channel: Option<String>,
    pub state: Option<String>,
    pub cover_ends_before: Option<NaiveDate>,
}

/// What a step carries besides its kind.
#[derive(Debug, Clone, Default)]
pub struct StepDetails {
    pub actor: String,
    pub reason: String,
    pub documents: Vec<DocumentKind>,
    pub deadline: Option<NaiveDate>,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    /// Issue or renew an attestation when cover ends within this many days.
    horizon_days: i64,
}

/// The urgency class of a row, from its cover's end: `$1` is today, `$2`
/// and `$3` the horizons, `$4..$6` the class ranks.
fn urgency_sql(db: &Database) -> String {
    let days_left = match db {
        Database::Postgres(_) => "(cover_until - $1::date)",
        Database::Sqlite(_) => "(julianday(cover_until) - julianday($1))",
    };
    format!(
        "CAST(CASE WHEN cover_until IS NULL THEN $6 WHEN {days_left} <= $2 THEN $4 \
         WHEN {days_left} <= $3 THEN $5 ELSE $6 END AS SMALLINT)"
    )
}

/// The six parameters `urgency_sql` expects, in order.
fn urgency_params(today: NaiveDate) -> (NaiveDate, i32, i32, i16, i16, i16) {
    let [(critical_class, critical), (soon_class, soon)] = URGENCY_HORIZONS;
    (
        today,
        critical as i32,
        soon as i32,
        critical_class.rank(),
        soon_class.rank(),
        UrgencyClass::Routine.rank(),
    )
}

fn actor_of(d: &Dossier) -> String {
    format!("channel:{}", d.channel())
}

impl Store {
    pub fn new(db: Database, horizon_days: i64) -> Self {
        Self { db, horizon_days }
    }

    /// The attestation with this verification code, and its dossier.
    pub async fn attestation_by_code(
        &self,
        code: &str,
    ) -> Result<Option<CodedAttestation>, sqlx::Error> {
        const SQL: &str = "SELECT reference, id, kind, valid_from, valid_until, issued_at, \
             verification_code FROM attestations WHERE verification_code = $1";
        on_db!(&self.db, |p| sqlx::query_as(SQL)
            .bind(code)
            .fetch_optional(p)
            .await)
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    // ---- arrival ---------------------------------------------------------------

    /// Records a batch in one transaction: claims the message ids, inserts the
    /// dossiers not seen before with their state on arrival and their first
    /// events, and links a second filing of the same request to the first.
    /// Returns how many were new.
    pub async fn record(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Vec<String>, sqlx::Error> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let fresh = claim_fresh(&mut *tx, batch).await?;
                let inserted =
                    insert_postgres(&mut tx, &fresh, now, today, self.horizon_days).await?;
                let new = after_insert_postgres(
                    &mut tx,
                    &fresh,
                    &inserted,
                    now,
                    today,
                    self.horizon_days,
                )
                .await?;
                tx.commit().await?;
                Ok(new)
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let fresh = claim_fresh(&mut *tx, batch).await?;
                let inserted =
                    insert_sqlite(&mut tx, &fresh, now, today, self.horizon_days).await?;
                let new = after_insert!(&mut *tx, &fresh, &inserted, now, today, self.horizon_days);
                tx.commit().await?;
                Ok(new)
            }
        }
    }

    // ---- reads -----------------------------------------------------------------

    pub async fn case(&self, reference: &str) -> Result<Option<CaseRow>, sqlx::Error> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1");
        on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(reference)
            .fetch_optional(p)
            .await)
    }

    /// A case as one snapshot: its row, history, attestations, linked and
    /// near-matching filings all read in one read-only transaction that sees
    /// one state of the database (REPEATABLE READ on PostgreSQL; SQLite's
    /// read transactions are snapshots). Read statement by statement, a view
    /// could show a new attestation beside the cover from before it.
    pub async fn snapshot(&self, reference: &str) -> Result<Option<CaseSnapshot>, sqlx::Error> {
        macro_rules! read {
            ($tx:expr) => {{
                let tx = $tx;
                let row: Option<CaseRow> = sqlx::query_as(&format!(
                    "SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1"
                ))
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    None => None,
                    Some(row) => Some(CaseSnapshot {
                        events: sqlx::query_as(EVENTS_SQL)
                            .bind(reference)
                            .fetch_all(&mut *tx)
                            .await?,
                        attestations: sqlx::query_as(ATTESTATIONS_SQL)
                            .bind(reference)
                            .fetch_all(&mut *tx)
                            .await?,
                        linked: sqlx::query_scalar(LINKED_SQL)
                            .bind(reference)
                            .fetch_all(&mut *tx)
                            .await?,
                        near_matches: sqlx::query_scalar(&near_matches_sql())
                            .bind(reference)
                            .fetch_all(&mut *tx)
                            .await?,
                        row,
                    }),
                }
            }};
        }
        Ok(match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let snapshot = read!(&mut *tx);
                tx.commit().await?;
                snapshot
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let snapshot = read!(&mut *tx);
                tx.commit().await?;
                snapshot
            }
        })
    }

    pub async fn events(&self, reference: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        on_db!(&self.db, |p| sqlx::query_as(EVENTS_SQL)
            .bind(reference)
            .fetch_all(p)
            .await)
    }

    pub async fn attestations(&self, reference: &str) -> Result<Vec<AttestationRow>, sqlx::Error> {
        on_db!(&self.db, |p| sqlx::query_as(ATTESTATIONS_SQL)
            .bind(reference)
            .fetch_all(p)
            .await)
    }

    /// The other filings linked to this one.
    pub async fn linked(&self, reference: &str) -> Result<Vec<String>, sqlx::Error> {
        on_db!(&self.db, |p| sqlx::query_scalar(LINKED_SQL)
            .bind(reference)
            .fetch_all(p)
            .await)
    }

    /// Records that `agent` read `reference`.
    pub async fn record_read(
        &self,
        reference: &str,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        const SQL: &str = "INSERT INTO agent_reads (reference, agent, at) VALUES ($1, $2, $3)";
        on_db!(&self.db, |p| sqlx::query(SQL)
            .bind(reference)
            .bind(agent)
            .bind(now)
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Open dossiers by urgency class, then the queue date (the earliest legal
    /// filing date of linked filings), then the time the person filed; the
    /// reference only breaks exact ties. Never by channel or arrival.
    pub async fn queue(
        &self,
        filter: &QueueFilter,
        limit: i64,
        today: NaiveDate,
    ) -> Result<Vec<QueueRow>, sqlx::Error> {
        let sql = format!(
            "SELECT reference, channel, procedure, motif, prefecture, legal_filing_date, queue_date, \
             cover_until, taken_by, {} AS urgency, state, title_expires_on FROM dossiers \
             WHERE {OPEN} AND linked_to IS NULL \
               AND ($7 IS NULL OR prefecture = $7) AND ($8 IS NULL OR procedure = $8) \
               AND ($9 IS NULL OR motif = $9) AND ($10 IS NULL OR channel = $10) \
               AND ($11 IS NULL OR state = $11) AND ($12 IS NULL OR cover_until <= $12) \
             ORDER BY urgency, queue_date, filed_at, reference LIMIT $13",
            urgency_sql(&self.db)
        );
        let u = urgency_params(today);
        on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(u.0)
            .bind(u.1)
            .bind(u.2)
            .bind(u.3)
            .bind(u.4)
            .bind(u.5)
            .bind(filter.prefecture.as_deref())
            .bind(filter.procedure.as_deref())
            .bind(filter.motif.as_deref())
            .bind(filter.channel.as_deref())
            .bind(filter.state.as_deref())
            .bind(filter.cover_ends_before)
            .bind(limit)
            .fetch_all(p)
            .await)
    }

    /// How many open dossiers of the same prefecture come before this one.
    pub async fn files_ahead(&self, row: &CaseRow, today: NaiveDate) -> Result<i64, sqlx::Error> {
        let urgency = urgency_sql(&self.db);
        let sql = format!(
            "SELECT count(*) FROM dossiers WHERE {OPEN} AND linked_to IS NULL AND prefecture = $7 \
             AND reference <> $11 \
             AND ({urgency} < $8 OR ({urgency} = $8 AND (queue_date < $9 \
                  OR (queue_date = $9 AND (filed_at < $10 OR (filed_at = $10 AND reference < $11))))))"
        );
        let u = urgency_params(today);
        let rank = UrgencyClass::for_cover(row.cover_until, today).rank();
        let queue_date = row.queue_date.unwrap_or(row.legal_filing_date);
        on_db!(&self.db, |p| sqlx::query_scalar(&sql)
            .bind(u.0)
            .bind(u.1)
            .bind(u.2)
            .bind(u.3)
            .bind(u.4)
            .bind(u.5)
            .bind(&row.prefecture)
            .bind(rank)
            .bind(queue_date)
            .bind(row.filed_at)
            .bind(&row.reference)
            .fetch_one(p)
            .await)
    }

    /// Days from legal filing to decision of the decisions since `since`, for
    /// one procedure and prefecture.
    pub async fn decision_days(
        &self,
        procedure: Option<&str>,
        prefecture: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        const SQL: &str = "SELECT procedure, legal_filing_date, decided_at FROM dossiers \
             WHERE prefecture = $1 AND ($2 IS NULL OR procedure = $2) AND decided_at IS NOT NULL \
             AND decided_at >= $3 AND linked_to IS NULL";
        let rows: Vec<(String, NaiveDate, DateTime<Utc>)> =
            on_db!(&self.db, |p| sqlx::query_as(SQL)
                .bind(prefecture)
                .bind(procedure)
                .bind(since)
                .fetch_all(p)
                .await)?;
        Ok(rows
            .into_iter()
            .map(|(procedure, filed, decided)| {
                let decided = guichet_dossier::calendar::paris_date(decided);
                (procedure, (decided - filed).num_days().max(0))
            })
            .collect())
    }

    /// What the equity comparison needs of each dossier received since
    /// `since` (linked second filings are counted with their first).
    pub async fn equity_facts(
        &self,
        prefecture: &str,
        since: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Vec<guichet_dossier::equity::CaseFacts>, sqlx::Error> {
        type Row = (
            String,
            NaiveDate,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            bool,
            String,
            Option<NaiveDate>,
            Option<NaiveDate>,
        );
        const SQL: &str = "SELECT d.channel, d.legal_filing_date, d.received_at, d.decided_at, \
             EXISTS (SELECT 1 FROM dossier_events e WHERE e.reference = d.reference \
                     AND e.kind = 'found_complete'), \
             d.state, d.title_expires_on, d.cover_until \
             FROM dossiers d WHERE d.received_at >= $1 AND ($2 = '' OR d.prefecture = $2) \
             AND d.linked_to IS NULL";
        let rows: Vec<Row> = on_db!(&self.db, |p| sqlx::query_as(SQL)
            .bind(since)
            .bind(prefecture)
            .fetch_all(p)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(channel, filed, received, decided, complete, state, expires, cover)| {
                    let channel = guichet_dossier::Channel::parse(&channel)?;
                    let open = CaseState::parse(&state).is_some_and(CaseState::is_open);
                    Some(guichet_dossier::equity::CaseFacts {
                        channel,
                        legal_filing_date: filed,
                        receipt_date: guichet_dossier::calendar::paris_date(received),
                        decided_on: decided.map(guichet_dossier::calendar::paris_date),
                        complete_at_filing: complete,
                        needs_cover: open && expires.is_some_and(|e| e < today),
                        covered: cover.is_some_and(|c| c >= today),
                    })
                },
            )
            .collect())
    }

    /// Open dossiers by state, for the operators' figures.
    pub async fn open_by_state(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let sql = format!("SELECT state, count(*) FROM dossiers WHERE {OPEN} GROUP BY state");
        on_db!(&self.db, |p| sqlx::query_as(&sql).fetch_all(p).await)
    }

    /// Attestations issued by kind: (kind, all, renewals), a renewal being
    /// one that follows an earlier attestation of the same kind for the same dossier.
    pub async fn attestation_counts(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        const SQL: &str = "SELECT kind, count(*), count(*) - count(DISTINCT reference) \
             FROM attestations GROUP BY kind";
        on_db!(&self.db, |p| sqlx::query_as(SQL).fetch_all(p).await)
    }

    /// Open dossiers per procedure in a prefecture.
    pub async fn open_counts(
        &self,
        prefecture: &str,
    ) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let sql = format!(
            "SELECT procedure, count(*) FROM dossiers WHERE {OPEN} AND linked_to IS NULL \
             AND prefecture = $1 GROUP BY procedure"
        );
        let rows: Vec<(String, i64)> = on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(prefecture)
            .fetch_all(p)
            .await)?;
        Ok(rows.into_iter().collect())
    }

    // ---- agents' work -------------------------------------------------------------

    /// Takes the first untaken dossier of the prefecture's queue for `agent`.
    /// Concurrent calls get different dossiers: PostgreSQL skips rows another
    /// transaction holds; SQLite runs one writer at a time.
    pub async fn take_next(
        &self,
        agent: &str,
        prefecture: &str,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Option<String>, sqlx::Error> {
        let lock = match self.db {
            Database::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Database::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE dossiers SET taken_by = $7, taken_at = $8, updated_at = $8 \
             WHERE taken_by IS NULL AND reference = (SELECT reference FROM dossiers \
                 WHERE {OPEN} AND linked_to IS NULL AND taken_by IS NULL AND prefecture = $9 \
                 ORDER BY {} , queue_date, filed_at, reference LIMIT 1 {lock}) \
             RETURNING reference",
            urgency_sql(&self.db)
        );
        let u = urgency_params(today);
        on_db!(&self.db, |p| sqlx::query_scalar(&sql)
            .bind(u.0)
            .bind(u.1)
            .bind(u.2)
            .bind(u.3)
            .bind(u.4)
            .bind(u.5)
            .bind(agent)
            .bind(now)
            .bind(prefecture)
            .fetch_optional(p)
            .await)
    }

    /// Takes one lifecycle step, with its event, the case event for the
    /// person's channel, the same step mirrored on linked filings, and any
    /// attestation it makes due. Refused when the lifecycle does not allow it.
    pub async fn step(
        &self,
        reference: &str,
        step: Step,
        details: &StepDetails,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<CaseState, CaseError> {
        let lock = match self.db {
            Database::Postgres(_) => "FOR UPDATE",
            Database::Sqlite(_) => "",
        };
        let select = format!("SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1 {lock}");
        let state = in_tx!(&self.db, |tx| {
            let row: Option<CaseRow> = sqlx::query_as(&select)
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
            if let Some(primary) = &row.linked_to {
                return Err(CaseError::Invalid(format!(
                    "{reference} is linked to {primary}: act on {primary}"
                )));
            }
            let to = lifecycle::next(row.state, step)?;
            let missing = match step {
                Step::RequestDocuments => details.documents.clone(),
                _ => row.missing()?,
            };
            let deadline = match step {
                Step::RequestDocuments => details.deadline,
                _ => row.documents_deadline,
            };
            let decided = matches!(step, Step::DecideFavourable | Step::DecideUnfavourable);
            let mut targets = vec![row.clone()];
            let linked: Vec<CaseRow> = sqlx::query_as(&format!(
                "SELECT {CASE_COLUMNS} FROM dossiers WHERE linked_to = $1"
            ))
            .bind(reference)
            .fetch_all(&mut *tx)
            .await?;
            targets.extend(linked);
            for target in &targets {
                sqlx::query(
                    "UPDATE dossiers SET state = $2, missing = $3, documents_deadline = $4, \
                     decided_at = CASE WHEN $5 THEN $6 ELSE decided_at END, \
                     taken_by = CASE WHEN $7 THEN NULL ELSE taken_by END, updated_at = $6 \
                     WHERE reference = $1",
                )
                .bind(&target.reference)
                .bind(to.as_str())
                .bind(join_kinds(&missing))
                .bind(deadline)
                .bind(decided)
                .bind(now)
                .bind(!to.is_open())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&target.reference)
                .bind(step.as_str())
                .bind(&details.actor)
                .bind(now)
                .bind(&details.reason)
                .bind(guichet_kit::telemetry::current_trace_id())
                .execute(&mut *tx)
                .await?;
                tx.enqueue(&cases::event_message(EventFacts {
                    reference: &target.reference,
                    kind: step.as_str(),
                    dossier: &target.dossier,
                    state: to,
                    at: now,
                    reason: &details.reason,
                    attestation: None,
                    missing: &missing,
                    documents_deadline: deadline,
                }))
                .await?;
                let _issued = issue_due!(&mut *tx, target, to, now, today, self.horizon_days);
            }
            to
        });
        Ok(state)
    }

    /// A document arrived for a dossier, from any channel: kept, and
    /// completeness recomputed.
    pub async fn add_document(
        &self,
        reference: &str,
        document: &guichet_dossier::DocumentRef,
        channel: guichet_dossier::Channel,
        actor: &str,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<CaseState, CaseError> {
        let row = self
            .case(reference)
            .await?
            .ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        let primary = row
            .linked_to
            .clone()
            .unwrap_or_else(|| reference.to_string());
        const INSERT: &str = "INSERT INTO dossier_documents (reference, kind, sha256, media_type, \
             size_bytes, channel, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        in_tx!(&self.db, |tx| {
            sqlx::query(INSERT)
                .bind(&primary)
                .bind(document.kind.as_str())
                .bind(&document.sha256)
                .bind(&document.media_type)
                .bind(document.size_bytes as i64)
                .bind(channel.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        });
        let received = self.received_kinds(&primary).await?;
        let primary_row = self
            .case(&primary)
            .await?
            .ok_or_else(|| CaseError::NotFound(primary.clone()))?;
        let unreadable = |what: &str| cases::Unreadable::new(&primary, what);
        let motif = primary_row
            .dossier
            .filing
            .as_ref()
            .and_then(|f| convert::motif_text(f.motif))
            .and_then(|m| guichet_dossier::Motif::parse(&m))
            .ok_or_else(|| unreadable("motif"))?;
        let missing = requirements::missing(primary_row.procedure, motif, &received);
        let step = if missing.is_empty() {
            Step::FoundComplete
        } else {
            Step::FoundIncomplete
        };
        let details = StepDetails {
            actor: actor.to_string(),
            reason: format!("{} received", document.kind),
            documents: missing.clone(),
            deadline: primary_row.documents_deadline,
        };
        // Keep the list of what is still missing current, whatever the step.
        let set_missing = "UPDATE dossiers SET missing = $2 WHERE reference = $1";
        on_db!(&self.db, |p| sqlx::query(set_missing)
            .bind(&primary)
            .bind(join_kinds(&missing))
            .execute(p)
            .await
            .map(|_| ()))?;
        self.step(&primary, step, &details, now, today).await
    }

    /// Every document kind a dossier has: filed with it, or received since.
    async fn received_kinds(&self, reference: &str) -> Result<Vec<DocumentKind>, CaseError> {
        let row = self
            .case(reference)
            .await?
            .ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        let filed = row.dossier.filing.as_ref().map(|f| f.documents.as_slice());
        let mut kinds = filed
            .unwrap_or_default()
            .iter()
            .map(|d| {
                convert::document_kind_text(d.kind)
                    .and_then(|k| DocumentKind::parse(&k))
                    .ok_or_else(|| cases::Unreadable::new(reference, "a document kind"))
            })
            .collect::<Result<Vec<DocumentKind>, _>>()?;
        const SQL: &str = "SELECT kind FROM dossier_documents WHERE reference = $1";
        let later: Vec<String> = on_db!(&self.db, |p| sqlx::query_scalar(SQL)
            .bind(reference)
            .fetch_all(p)
            .await)?;
        for k in later {
            kinds
                .push(DocumentKind::try_from(k).map_err(|e| cases::Unreadable::new(reference, e))?);
        }
        Ok(kinds)
    }

    /// Confirms that a second filing is the same request, or undoes the link
    /// so each filing gets its own place in the queue.
    pub async fn confirm_link(
        &self,
        reference: &str,
        same_request: bool,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CaseError> {
        let row = self
            .case(reference)
            .await?
            .ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        let Some(primary) = row.linked_to.clone() else {
            return Err(CaseError::Invalid(format!(
                "{reference} is not linked to another filing"
            )));
        };
        in_tx!(&self.db, |tx| {
            if same_request {
                sqlx::query("UPDATE dossiers SET link_confirmed = true, updated_at = $2 WHERE reference = $1")
                    .bind(reference)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "UPDATE dossiers SET linked_to = NULL, link_confirmed = false, \
                     queue_date = legal_filing_date, updated_at = $2 WHERE reference = $1",
                )
                .bind(reference)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // The first filing keeps the earliest date of what stays linked.
                sqlx::query(
                    "UPDATE dossiers SET queue_date = (SELECT min(d.legal_filing_date) FROM dossiers d \
                     WHERE d.reference = $1 OR d.linked_to = $1), updated_at = $2 WHERE reference = $1",
                )
                .bind(&primary)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let kind = if same_request {
                "link_confirmed"
            } else {
                "link_undone"
            };
            for r in [reference, primary.as_str()] {
                sqlx::query(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, $2, $3, $4, $5, '')",
                )
                .bind(r)
                .bind(kind)
                .bind(agent)
                .bind(now)
                .bind(format!("{reference} and {primary}"))
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    // ---- rights continuity ---------------------------------------------------------

    /// Issues every attestation due today and closes the dossiers whose
    /// deadline for documents passed. Returns (attestations issued, closed).
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<(usize, usize), CaseError> {
        let soon = today + chrono::Duration::days(self.horizon_days);
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM dossiers WHERE linked_to IS NULL AND (\
               (state IN ('complete', 'under_review') AND procedure IN ('renewal', 'regularisation') \
                  AND (cover_until IS NULL OR cover_until <= $1)) \
               OR (state = 'favourable' AND (cover_basis IS NULL OR cover_basis <> 'favourable_decision')) \
               OR (state = 'documents_requested' AND documents_deadline < $2))"
        );
        let rows: Vec<CaseRow> = on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(soon)
            .bind(today)
            .fetch_all(p)
            .await)?;
        let (mut issued, mut closed) = (0, 0);
        for row in rows {
            if row.state == CaseState::DocumentsRequested {
                let details = StepDetails {
                    actor: "system".into(),
                    reason: "the deadline for the requested documents passed".into(),
                    documents: row.missing()?,
                    deadline: row.documents_deadline,
                };
                self.step(&row.reference, Step::DeadlinePassed, &details, now, today)
                    .await?;
                closed += 1;
                continue;
            }
            let state = row.state;
            let done = in_tx!(&self.db, |tx| {
                issue_due!(&mut *tx, &row, state, now, today, self.horizon_days)
            });
            issued += usize::from(done);
        }
        Ok((issued, closed))
    }
}

/// Claims the batch's message ids; the deliveries seen before are dropped.
async fn claim_fresh<'a, C: Claim>(
    conn: &mut C,
    batch: &'a [Incoming],
) -> Result<Vec<&'a Incoming>, sqlx::Error> {
    let ids: Vec<String> = batch.iter().map(|i| i.message_id.clone()).collect();
    let mut claimed = conn.claim(&ids).await?;
    // A message republished by an outbox can come twice in one batch: the
    // first copy is the one applied.
    Ok(batch
        .iter()
        .filter(|i| claimed.remove(&i.message_id))
        .collect())
}

/// PostgreSQL: the whole batch in two array statements. Returns the
/// references inserted (a reference seen under another message id, a channel
/// re-sending, is kept as first recorded).
async fn insert_postgres(
    tx: &mut sqlx::PgConnection,
    fresh: &[&Incoming],
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    if fresh.is_empty() {
        return Ok(HashSet::new());
    }
    let n = fresh.len();
    let mut cols: [Vec<String>; 11] = Default::default();
    let mut dates: [Vec<NaiveDate>; 1] = Default::default();
    let mut times: [Vec<DateTime<Utc>>; 2] = Default::default();
    let mut opt_dates: [Vec<Option<NaiveDate>>; 2] = Default::default();
    let mut opt_text: Vec<Option<String>> = Vec::with_capacity(n);
    let mut encoded = Vec::with_capacity(n);
    for i in fresh {
        let d = &i.dossier;
        let arrival = cases::on_arrival(d, today, horizon_days);
        cols[0].push(d.reference.to_string());
        cols[1].push(d.channel().as_str().to_string());
        cols[2].push(d.filing.procedure.as_str().to_string());
        cols[3].push(d.filing.motif.as_str().to_string());
        cols[4].push(d.prefecture().to_string());
        cols[5].push(i.trace_id.clone());
        cols[6].push(arrival.state.as_str().to_string());
        cols[7].push(join_kinds(&arrival.missing));
        cols[8].push(d.filing.applicant.person_key());
        cols[9].push(i.message_id.clone());
        cols[10].push(d.filing.applicant.near_key());
        dates[0].push(d.legal_filing_date);
        times[0].push(d.filed_at);
        times[1].push(d.received_at);
        opt_dates[0].push(d.filing.current_title.as_ref().map(|t| t.expires_on));
        opt_dates[1].push(arrival.cover.until());
        opt_text.push(arrival.cover.basis().map(|b| b.as_str().to_string()));
        encoded.push(i.encoded.clone());
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, legal_filing_date, \
         queue_date, filed_at, received_at, recorded_at, title_expires_on, cover_until, cover_basis, \
         dossier, trace_id, state, missing, person_key, near_key, updated_at) \
         SELECT r, c, p, m, pf, lfd, lfd, fa, ra, $15, te, cu, cb, d, t, s, mi, pk, nk, $15 FROM UNNEST(\
         $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], \
         $7::timestamptz[], $8::timestamptz[], $9::date[], $10::date[], $11::text[], $12::bytea[], \
         $13::text[], $14::text[], $16::text[], $17::text[], $18::text[]) \
         AS u(r, c, p, m, pf, lfd, fa, ra, te, cu, cb, d, t, s, mi, pk, nk) \
         ON CONFLICT (reference) DO NOTHING RETURNING reference",
    )
    .bind(&cols[0])
    .bind(&cols[1])
    .bind(&cols[2])
    .bind(&cols[3])
    .bind(&cols[4])
    .bind(&dates[0])
    .bind(&times[0])
    .bind(&times[1])
    .bind(&opt_dates[0])
    .bind(&opt_dates[1])
    .bind(&opt_text)
    .bind(&encoded)
    .bind(&cols[5])
    .bind(&cols[6])
    .bind(now)
    .bind(&cols[7])
    .bind(&cols[8])
    .bind(&cols[10])
    .fetch_all(&mut *tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// SQLite: one writer, no arrays; row by row inside one transaction is fast.
async fn insert_sqlite(
    tx: &mut sqlx::SqliteConnection,
    fresh: &[&Incoming],
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::new();
    for i in fresh {
        let d = &i.dossier;
        let arrival = cases::on_arrival(d, today, horizon_days);
        let done = sqlx::query(
            "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, \
             legal_filing_date, queue_date, filed_at, received_at, recorded_at, title_expires_on, \
             cover_until, cover_basis, dossier, trace_id, state, missing, person_key, near_key, \
             updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $9) \
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
        .bind(d.filing.current_title.as_ref().map(|t| t.expires_on))
        .bind(arrival.cover.until())
        .bind(arrival.cover.basis().map(|b| b.as_str()))
        .bind(&i.encoded)
        .bind(&i.trace_id)
        .bind(arrival.state.as_str())
        .bind(join_kinds(&arrival.missing))
        .bind(d.filing.applicant.person_key())
        .bind(d.filing.applicant.near_key())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            inserted.insert(d.reference.to_string());
        }
    }
    Ok(inserted)
}
