//! Blocked-user reports (signalements), stored on both backends. Each step
//! is a row in `report_events` and an event on `guichet.events`
//! (`report.<step>.<prefecture>`), written in the same transaction through
//! the outbox. The rules (deadline, allowed steps, overdue) are in
//! `guichet_dossier::signalement`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::signalement::{self, ReportState, ReportStep};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::db::Database;
use guichet_kit::outbox::Enqueue;
use guichet_kit::{in_tx, on_db};
use guichet_proto::{convert, v1 as pb};
use prost::Message;

/// A report as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: String,
    pub category: String,
    pub what_was_tried: String,
    pub family_name: String,
    pub given_names: String,
    pub contact: Vec<u8>,
    pub procedure: Option<String>,
    pub prefecture: String,
    pub state: String,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub deadline: NaiveDate,
    pub alternative_kind: Option<String>,
    pub appointment_id: Option<String>,
    pub kit_sent_to: Option<Vec<u8>>,
    pub offered_at: Option<DateTime<Utc>>,
    pub offered_by: Option<String>,
    pub outcome: Option<String>,
    pub outcome_note: String,
}

const COLUMNS: &str = "id, category, what_was_tried, family_name, given_names, contact, \
    procedure, prefecture, state, opened_at, opened_by, deadline, alternative_kind, \
    appointment_id, kit_sent_to, offered_at, offered_by, outcome, outcome_note";

impl ReportRow {
    pub fn state(&self) -> ReportState {
        ReportState::parse(&self.state).unwrap_or(ReportState::Open)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub kind: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub detail: String,
}

/// A new report, checked.
pub struct NewReport {
    pub id: String,
    pub idempotency_key: String,
    pub category: signalement::Category,
    pub what_was_tried: String,
    pub family_name: String,
    pub given_names: String,
    pub contact: pb::Contact,
    pub procedure: Option<String>,
    pub prefecture: String,
    pub opened_by: String,
    pub call_id: String,
    pub deadline: NaiveDate,
}

/// What a step changes.
pub enum StepChange {
    Offer {
        kind: &'static str,
        appointment_id: Option<String>,
        kit_sent_to: Option<pb::PostalAddress>,
    },
    Close {
        outcome: &'static str,
        note: String,
    },
    Escalate,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no report {0}")]
    NotFound(String),
    #[error("{0}")]
    WrongState(String),
    #[error("this idempotency key was already used for a different report")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

// Queries used inside transactions on either backend: macros, so each is
// compiled for the connection type at hand.
macro_rules! fetch_optional {
    ($conn:expr, $id:expr) => {
        sqlx::query_as::<_, ReportRow>(&format!("SELECT {COLUMNS} FROM reports WHERE id = $1"))
            .bind($id)
            .fetch_optional($conn)
            .await?
    };
}

macro_rules! fetch {
    ($conn:expr, $id:expr) => {
        sqlx::query_as::<_, ReportRow>(&format!("SELECT {COLUMNS} FROM reports WHERE id = $1"))
            .bind($id)
            .fetch_one($conn)
            .await?
    };
}

macro_rules! fetch_events {
    ($conn:expr, $id:expr) => {
        sqlx::query_as::<_, EventRow>(
            "SELECT kind, actor, at, detail FROM report_events WHERE report_id = $1 ORDER BY id",
        )
        .bind($id)
        .fetch_all($conn)
        .await?
    };
}

macro_rules! insert_event {
    ($conn:expr, $id:expr, $kind:expr, $actor:expr, $at:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO report_events (report_id, kind, actor, at, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($id)
        .bind($kind)
        .bind($actor)
        .bind($at)
        .bind($detail)
        .execute($conn)
        .await?
    };
}

#[derive(Clone)]
pub struct Reports {
    db: Database,
}

/// The event published for a step, with the report as it stands after it.
fn event_message(report: &pb::Report, kind: &str) -> OutgoingMessage {
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("report.{kind}.{}", report.prefecture),
        report.encode_to_vec(),
    )
}

impl Reports {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Opens a report; the same idempotency key again with the same report
    /// gives the report it opened, with another report `KeyReused`.
    pub async fn open(
        &self,
        new: NewReport,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<ReportRow, ReportError> {
        let contact = new.contact.encode_to_vec();
        let fingerprint = guichet_dossier::idempotency::fingerprint([
            new.category.as_str().as_bytes(),
            new.what_was_tried.as_bytes(),
            new.family_name.as_bytes(),
            new.given_names.as_bytes(),
            contact.as_slice(),
            new.procedure.as_deref().unwrap_or_default().as_bytes(),
            new.opened_by.as_bytes(),
            new.call_id.as_bytes(),
        ]);
        let id = match self
            .open_once(&new, &contact, &fingerprint, now, today)
            .await
        {
            // The same key opened at the same moment by another request: its
            // row is there now, to replay or to refuse.
            Err(ReportError::Db(e)) if guichet_kit::db::is_unique_violation(&e) => {
                self.open_once(&new, &contact, &fingerprint, now, today)
                    .await?
            }
            other => other?,
        };
        self.get(&id).await?.ok_or(ReportError::NotFound(id))
    }

    async fn open_once(
        &self,
        new: &NewReport,
        contact: &[u8],
        fingerprint: &str,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<String, ReportError> {
        let id = in_tx!(&self.db, |tx| {
            let existing: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT id, request_fingerprint FROM reports WHERE idempotency_key = $1",
            )
            .bind(&new.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some((_, stored))
                    if !guichet_dossier::idempotency::same_request(
                        stored.as_deref(),
                        fingerprint,
                    ) =>
                {
                    return Err(ReportError::KeyReused);
                }
                Some((id, _)) => id,
                None => {
                    sqlx::query(
                        "INSERT INTO reports (id, idempotency_key, category, what_was_tried, \
                         family_name, given_names, contact, procedure, prefecture, state, \
                         opened_at, opened_by, call_id, deadline, request_fingerprint) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $11, $12, $13, \
                         $14)",
                    )
                    .bind(&new.id)
                    .bind(&new.idempotency_key)
                    .bind(new.category.as_str())
                    .bind(&new.what_was_tried)
                    .bind(&new.family_name)
                    .bind(&new.given_names)
                    .bind(contact)
                    .bind(&new.procedure)
                    .bind(&new.prefecture)
                    .bind(now)
                    .bind(&new.opened_by)
                    .bind(&new.call_id)
                    .bind(new.deadline)
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?;
                    let detail = format!("call {}", new.call_id);
                    insert_event!(&mut *tx, &new.id, "opened", &new.opened_by, now, &detail);
                    let row = fetch!(&mut *tx, &new.id);
                    let events = fetch_events!(&mut *tx, &new.id);
                    tx.enqueue(&event_message(&to_pb(&row, &events, today), "opened"))
                        .await?;
                    new.id.clone()
                }
            }
        });
        Ok(id)
    }

    pub async fn get(&self, id: &str) -> Result<Option<ReportRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM reports WHERE id = $1");
        on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
    }

    pub async fn events(&self, id: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        on_db!(&self.db, |p| Ok(fetch_events!(p, id)))
    }

    pub async fn list(
        &self,
        prefecture: &str,
        state: Option<ReportState>,
        limit: i64,
    ) -> Result<Vec<ReportRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM reports WHERE ($1 = '' OR prefecture = $1) \
             AND ($2 = '' OR state = $2) ORDER BY deadline, opened_at LIMIT $3"
        );
        let state = state.map_or("", ReportState::as_str);
        on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(prefecture)
            .bind(state)
            .bind(limit)
            .fetch_all(p)
            .await)
    }

    /// Takes `step` on a report, if the rules allow it from its state.
    pub async fn step(
        &self,
        id: &str,
        step: ReportStep,
        change: StepChange,
        actor: &str,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<ReportRow, ReportError> {
        let row = in_tx!(&self.db, |tx| {
            let row = fetch_optional!(&mut *tx, id)
                .ok_or_else(|| ReportError::NotFound(id.to_string()))?;
            let next = signalement::next_state(row.state(), step)
                .map_err(|e| ReportError::WrongState(e.to_string()))?;
            let detail = match &change {
                StepChange::Offer {
                    kind,
                    appointment_id,
                    kit_sent_to,
                } => {
                    sqlx::query(
                        "UPDATE reports SET state = $2, alternative_kind = $3, \
                         appointment_id = $4, kit_sent_to = $5, \
                         offered_at = COALESCE(offered_at, $6), offered_by = $7 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(next.as_str())
                    .bind(*kind)
                    .bind(appointment_id)
                    .bind(kit_sent_to.as_ref().map(Message::encode_to_vec))
                    .bind(now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                    match (appointment_id, kit_sent_to) {
                        (Some(a), _) => format!("{kind} {a}"),
                        (None, Some(to)) => format!("{kind} to {} {}", to.postal_code, to.city),
                        (None, None) => kind.to_string(),
                    }
                }
                StepChange::Close { outcome, note } => {
                    sqlx::query(
                        "UPDATE reports SET state = $2, outcome = $3, outcome_note = $4, \
                         closed_at = $5 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(next.as_str())
                    .bind(*outcome)
                    .bind(note)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    format!("{outcome}: {note}")
                }
                StepChange::Escalate => {
                    sqlx::query("UPDATE reports SET state = $2 WHERE id = $1")
                        .bind(id)
                        .bind(next.as_str())
                        .execute(&mut *tx)
                        .await?;
                    format!("no alternative offered by {}", row.deadline)
                }
            };
            insert_event!(&mut *tx, id, step.as_str(), actor, now, &detail);
            let row = fetch!(&mut *tx, id);
            let events = fetch_events!(&mut *tx, id);
            tx.enqueue(&event_message(&to_pb(&row, &events, today), step.as_str()))
                .await?;
            row
        });
        Ok(row)
    }

    /// Escalates every report past its deadline without an alternative.
    pub async fn escalate_overdue(
        &self,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<usize, ReportError> {
        let due: Vec<String> = on_db!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM reports WHERE state = 'open' AND deadline < $1"
        )
        .bind(today)
        .fetch_all(p)
        .await)?;
        let mut escalated = 0;
        for id in due {
            match self
                .step(
                    &id,
                    ReportStep::Escalate,
                    StepChange::Escalate,
                    "guichet",
                    now,
                    today,
                )
                .await
            {
                Ok(_) => escalated += 1,
                // Answered meanwhile: nothing to escalate.
                Err(ReportError::WrongState(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(escalated)
    }

    /// Per prefecture: reports waiting, overdue, and the median seconds from
    /// opening to an alternative offered.
    pub async fn figures(&self, today: NaiveDate) -> Result<Vec<Figures>, sqlx::Error> {
        type Row = (
            String,
            String,
            NaiveDate,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = on_db!(&self.db, |p| sqlx::query_as(
            "SELECT prefecture, state, deadline, opened_at, offered_at FROM reports"
        )
        .fetch_all(p)
        .await)?;
        let mut by: BTreeMap<String, (i64, i64, Vec<f64>)> = BTreeMap::new();
        for (prefecture, state, deadline, opened, offered) in rows {
            let entry = by.entry(prefecture).or_default();
            let state = ReportState::parse(&state).unwrap_or(ReportState::Open);
            if state.awaits_alternative() {
                entry.0 += 1;
            }
            if signalement::is_overdue(state, deadline, today) {
                entry.1 += 1;
            }
            if let Some(offered) = offered {
                entry.2.push((offered - opened).num_seconds().max(0) as f64);
            }
        }
        Ok(by
            .into_iter()
            .map(|(prefecture, (waiting, overdue, mut times))| {
                times.sort_by(f64::total_cmp);
                let median = match times.len() {
                    0 => None,
                    n if n % 2 == 1 => Some(times[n / 2]),
                    n => Some((times[n / 2 - 1] + times[n / 2]) / 2.0),
                };
                Figures {
                    prefecture,
                    waiting,
                    overdue,
                    median_seconds_to_alternative: median,
                }
            })
            .collect())
    }
}

pub struct Figures {
    pub prefecture: String,
    pub waiting: i64,
    pub overdue: i64,
    pub median_seconds_to_alternative: Option<f64>,
}

/// The wire form of a report, with its history and whether it is overdue today.
pub fn to_pb(row: &ReportRow, events: &[EventRow], today: NaiveDate) -> pb::Report {
    let state = row.state();
    pb::Report {
        id: row.id.clone(),
        category: category_to_pb(&row.category) as i32,
        what_was_tried: row.what_was_tried.clone(),
        family_name: row.family_name.clone(),
        given_names: row.given_names.clone(),
        contact: pb::Contact::decode(row.contact.as_slice()).ok(),
        procedure: row
            .procedure
            .as_deref()
            .and_then(guichet_dossier::Procedure::parse)
            .map_or(0, convert::procedure_to_pb),
        prefecture: row.prefecture.clone(),
        state: convert::report_state_to_pb(state),
        opened_at: Some(convert::timestamp_to_pb(row.opened_at)),
        deadline: Some(convert::date_to_pb(row.deadline)),
        overdue: signalement::is_overdue(state, row.deadline, today),
        alternative: row.alternative_kind.as_ref().map(|kind| pb::Alternative {
            kind: match kind.as_str() {
                "pan_appointment" => pb::AlternativeKind::PanAppointment,
                _ => pb::AlternativeKind::PaperKit,
            } as i32,
            appointment_id: row.appointment_id.clone().unwrap_or_default(),
            kit_sent_to: row
                .kit_sent_to
                .as_ref()
                .and_then(|b| pb::PostalAddress::decode(b.as_slice()).ok()),
            offered_at: row.offered_at.map(convert::timestamp_to_pb),
            offered_by: row.offered_by.clone().unwrap_or_default(),
        }),
        outcome: match row.outcome.as_deref() {
            Some("filed") => pb::ReportOutcome::Filed,
            Some("declined") => pb::ReportOutcome::Declined,
            Some("unreachable") => pb::ReportOutcome::Unreachable,
            _ => pb::ReportOutcome::Unspecified,
        } as i32,
        outcome_note: row.outcome_note.clone(),
        history: events
            .iter()
            .map(|e| pb::ReportEvent {
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                at: Some(convert::timestamp_to_pb(e.at)),
                detail: e.detail.clone(),
            })
            .collect(),
    }
}

fn category_to_pb(c: &str) -> pb::ReportCategory {
    use signalement::Category as C;
    match signalement::Category::parse(c) {
        Some(C::CannotCreateAccount) => pb::ReportCategory::CannotCreateAccount,
        Some(C::UploadFails) => pb::ReportCategory::UploadFails,
        Some(C::AppointmentImpossible) => pb::ReportCategory::AppointmentImpossible,
        Some(C::TwoProceduresAtOnce) => pb::ReportCategory::TwoProceduresAtOnce,
        Some(C::NoReceipt) => pb::ReportCategory::NoReceipt,
        Some(C::Other) => pb::ReportCategory::Other,
        None => pb::ReportCategory::Unspecified,
    }
}

pub fn category_from_pb(c: pb::ReportCategory) -> Option<signalement::Category> {
    use signalement::Category as C;
    match c {
        pb::ReportCategory::Unspecified => None,
        pb::ReportCategory::CannotCreateAccount => Some(C::CannotCreateAccount),
        pb::ReportCategory::UploadFails => Some(C::UploadFails),
        pb::ReportCategory::AppointmentImpossible => Some(C::AppointmentImpossible),
        pb::ReportCategory::TwoProceduresAtOnce => Some(C::TwoProceduresAtOnce),
        pb::ReportCategory::NoReceipt => Some(C::NoReceipt),
        pb::ReportCategory::Other => Some(C::Other),
    }
}
