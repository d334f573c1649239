//! Blocked-user reports (signalements), stored on both backends. Each step
//! is a row in `report_events` and an event on `guichet.events`
//! (`report.<step>.<prefecture>`), written in the same transaction through
//! the outbox. The rules (deadline, allowed steps, overdue) are in
//! `guichet_dossier::signalement`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::Procedure;
use guichet_dossier::idempotency;
use guichet_dossier::signalement::{
    self, AlternativeKind, Category, ReportOutcome, ReportState, ReportStep,
};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::db::{self, Database};
use guichet_kit::sql::{Conn, Nullable, Stmt};
use guichet_proto::{convert, v1 as pb};
use prost::Message;

/// A report as stored, each value read back as its type: a value this
/// service did not write fails the read, never a guess.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub category: Category,
    pub what_was_tried: String,
    pub family_name: String,
    pub given_names: String,
    #[sqlx(try_from = "Vec<u8>")]
    pub contact: pb::Contact,
    #[sqlx(try_from = "Option<String>")]
    pub procedure: Nullable<Procedure>,
    pub prefecture: String,
    #[sqlx(try_from = "String")]
    pub state: ReportState,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub deadline: NaiveDate,
    #[sqlx(try_from = "Option<String>")]
    pub alternative_kind: Nullable<AlternativeKind>,
    pub appointment_id: Option<String>,
    #[sqlx(try_from = "Option<Vec<u8>>")]
    pub kit_sent_to: Nullable<pb::PostalAddress>,
    pub offered_at: Option<DateTime<Utc>>,
    pub offered_by: Option<String>,
    #[sqlx(try_from = "Option<String>")]
    pub outcome: Nullable<ReportOutcome>,
    pub outcome_note: String,
}

const COLUMNS: &str = "id, category, what_was_tried, family_name, given_names, contact, \
    procedure, prefecture, state, opened_at, opened_by, deadline, alternative_kind, \
    appointment_id, kit_sent_to, offered_at, offered_by, outcome, outcome_note";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub kind: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub detail: String,
}

/// What the figures need of a report.
#[derive(sqlx::FromRow)]
struct FigureRow {
    prefecture: String,
    #[sqlx(try_from = "String")]
    state: ReportState,
    deadline: NaiveDate,
    opened_at: DateTime<Utc>,
    offered_at: Option<DateTime<Utc>>,
}

/// A new report, checked.
pub struct NewReport {
    pub id: String,
    pub idempotency_key: String,
    pub category: Category,
    pub what_was_tried: String,
    pub family_name: String,
    pub given_names: String,
    pub contact: pb::Contact,
    pub procedure: Option<Procedure>,
    pub prefecture: String,
    pub opened_by: String,
    pub call_id: String,
    pub deadline: NaiveDate,
}

/// What a step changes.
pub enum StepChange {
    Offer {
        kind: AlternativeKind,
        appointment_id: Option<String>,
        kit_sent_to: Option<pb::PostalAddress>,
    },
    Close {
        outcome: ReportOutcome,
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
    /// A stored report this service cannot read back: damaged data.
    #[error(transparent)]
    Unreadable(#[from] db::Unreadable),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<idempotency::KeyReused> for ReportError {
    fn from(_: idempotency::KeyReused) -> Self {
        ReportError::KeyReused
    }
}

fn report(id: &str) -> Stmt {
    Stmt::new(format!("SELECT {COLUMNS} FROM reports WHERE id = $1")).bind(id)
}

fn events(id: &str) -> Stmt {
    Stmt::new("SELECT kind, actor, at, detail FROM report_events WHERE report_id = $1 ORDER BY id")
        .bind(id)
}

/// Reading report `id` failed: named when it does not decode.
fn reading(id: &str) -> impl FnOnce(sqlx::Error) -> ReportError + '_ {
    db::reading(move || format!("report {id}"))
}

/// Records a step's event, then publishes the report as it stands after it
/// with its history; returns the report.
async fn record_step(
    c: &mut Conn<'_>,
    id: &str,
    kind: &str,
    actor: &str,
    detail: &str,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Result<ReportRow, ReportError> {
    c.execute(
        Stmt::new(
            "INSERT INTO report_events (report_id, kind, actor, at, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(kind)
        .bind(actor)
        .bind(now)
        .bind(detail),
    )
    .await?;
    let row: ReportRow = c.fetch_one(report(id)).await.map_err(reading(id))?;
    let events: Vec<EventRow> = c.fetch_all(events(id)).await?;
    c.enqueue(&event_message(&to_pb(&row, &events, today), kind))
        .await?;
    Ok(row)
}

#[derive(Clone)]
pub struct Reports {
    db: Database,
    /// A report read to take a step on it, locked until the step commits
    /// (the backend's words for it, asked once).
    report_for_step: String,
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
        let report_for_step = format!(
            "SELECT {COLUMNS} FROM reports WHERE id = $1 {}",
            db.sql_backend().for_update()
        );
        Self {
            db,
            report_for_step,
        }
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
        let fingerprint = idempotency::fingerprint([
            new.category.as_str().as_bytes(),
            new.what_was_tried.as_bytes(),
            new.family_name.as_bytes(),
            new.given_names.as_bytes(),
            contact.as_slice(),
            new.procedure.map_or("", Procedure::as_str).as_bytes(),
            new.opened_by.as_bytes(),
            new.call_id.as_bytes(),
        ]);
        let id = match self
            .open_once(&new, &contact, &fingerprint, now, today)
            .await
        {
            // The same key opened at the same moment by another request: its
            // row is there now, to replay or to refuse.
            Err(ReportError::Db(e)) if db::is_unique_violation(&e) => {
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
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let found = c
            .fetch_optional(
                Stmt::new("SELECT id, request_fingerprint FROM reports WHERE idempotency_key = $1")
                    .bind(&new.idempotency_key),
            )
            .await?;
        if let Some(id) = idempotency::earlier(found, fingerprint)? {
            return Ok(id);
        }
        c.execute(
            Stmt::new(
                "INSERT INTO reports (id, idempotency_key, category, what_was_tried, \
                 family_name, given_names, contact, procedure, prefecture, state, \
                 opened_at, opened_by, call_id, deadline, request_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $11, $12, $13, $14)",
            )
            .bind(&new.id)
            .bind(&new.idempotency_key)
            .bind(new.category.as_str())
            .bind(&new.what_was_tried)
            .bind(&new.family_name)
            .bind(&new.given_names)
            .bind(contact)
            .bind(new.procedure.map(Procedure::as_str))
            .bind(&new.prefecture)
            .bind(now)
            .bind(&new.opened_by)
            .bind(&new.call_id)
            .bind(new.deadline)
            .bind(fingerprint),
        )
        .await?;
        let detail = format!("call {}", new.call_id);
        record_step(
            &mut c,
            &new.id,
            "opened",
            &new.opened_by,
            &detail,
            now,
            today,
        )
        .await?;
        tx.commit().await?;
        Ok(new.id.clone())
    }

    pub async fn get(&self, id: &str) -> Result<Option<ReportRow>, ReportError> {
        self.db
            .fetch_optional(report(id))
            .await
            .map_err(reading(id))
    }

    pub async fn events(&self, id: &str) -> Result<Vec<EventRow>, ReportError> {
        Ok(self.db.fetch_all(events(id)).await?)
    }

    pub async fn list(
        &self,
        prefecture: &str,
        state: Option<ReportState>,
        limit: i64,
    ) -> Result<Vec<ReportRow>, ReportError> {
        self.db
            .fetch_all(
                Stmt::new(format!(
                    "SELECT {COLUMNS} FROM reports WHERE ($1 = '' OR prefecture = $1) \
                     AND ($2 = '' OR state = $2) ORDER BY deadline, opened_at LIMIT $3"
                ))
                .bind(prefecture)
                .bind(state.map_or("", ReportState::as_str))
                .bind(limit),
            )
            .await
            .map_err(db::reading(|| {
                format!("a report of prefecture {prefecture:?}")
            }))
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
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let row: ReportRow = c
            .fetch_optional(Stmt::new(self.report_for_step.clone()).bind(id))
            .await
            .map_err(reading(id))?
            .ok_or_else(|| ReportError::NotFound(id.to_string()))?;
        let next = signalement::next_state(row.state, step)
            .map_err(|e| ReportError::WrongState(e.to_string()))?;
        let (update, detail) = match change {
            StepChange::Offer {
                kind,
                appointment_id,
                kit_sent_to,
            } => (
                Stmt::new(
                    "UPDATE reports SET state = $2, alternative_kind = $3, \
                     appointment_id = $4, kit_sent_to = $5, \
                     offered_at = COALESCE(offered_at, $6), offered_by = $7 WHERE id = $1",
                )
                .bind(id)
                .bind(next.as_str())
                .bind(kind.as_str())
                .bind(&appointment_id)
                .bind(kit_sent_to.as_ref().map(Message::encode_to_vec))
                .bind(now)
                .bind(actor),
                match (appointment_id, kit_sent_to) {
                    (Some(a), _) => format!("{kind} {a}"),
                    (None, Some(to)) => format!("{kind} to {} {}", to.postal_code, to.city),
                    (None, None) => kind.to_string(),
                },
            ),
            StepChange::Close { outcome, note } => (
                Stmt::new(
                    "UPDATE reports SET state = $2, outcome = $3, outcome_note = $4, \
                     closed_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(next.as_str())
                .bind(outcome.as_str())
                .bind(note.as_str())
                .bind(now),
                format!("{outcome}: {note}"),
            ),
            StepChange::Escalate => (
                Stmt::new("UPDATE reports SET state = $2 WHERE id = $1")
                    .bind(id)
                    .bind(next.as_str()),
                format!("no alternative offered by {}", row.deadline),
            ),
        };
        c.execute(update).await?;
        let row = record_step(&mut c, id, step.as_str(), actor, &detail, now, today).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Escalates every report past its deadline without an alternative.
    pub async fn escalate_overdue(
        &self,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<usize, ReportError> {
        let due: Vec<String> = self
            .db
            .scalars(
                Stmt::new("SELECT id FROM reports WHERE state = 'open' AND deadline < $1")
                    .bind(today),
            )
            .await?;
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
    pub async fn figures(&self, today: NaiveDate) -> Result<Vec<Figures>, ReportError> {
        let rows: Vec<FigureRow> = self
            .db
            .fetch_all(Stmt::new(
                "SELECT prefecture, state, deadline, opened_at, offered_at FROM reports",
            ))
            .await
            .map_err(db::reading::<ReportError>(|| {
                "a report counted in the figures".to_string()
            }))?;
        let mut by: BTreeMap<String, (i64, i64, Vec<f64>)> = BTreeMap::new();
        for r in rows {
            let entry = by.entry(r.prefecture).or_default();
            if r.state.awaits_alternative() {
                entry.0 += 1;
            }
            if signalement::is_overdue(r.state, r.deadline, today) {
                entry.1 += 1;
            }
            if let Some(offered) = r.offered_at {
                entry
                    .2
                    .push((offered - r.opened_at).num_seconds().max(0) as f64);
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
    pb::Report {
        id: row.id.clone(),
        category: convert::report_category_to_pb(row.category),
        what_was_tried: row.what_was_tried.clone(),
        family_name: row.family_name.clone(),
        given_names: row.given_names.clone(),
        contact: Some(row.contact.clone()),
        procedure: row.procedure.map_or(0, convert::procedure_to_pb),
        prefecture: row.prefecture.clone(),
        state: convert::report_state_to_pb(row.state),
        opened_at: Some(convert::timestamp_to_pb(row.opened_at)),
        deadline: Some(convert::date_to_pb(row.deadline)),
        overdue: signalement::is_overdue(row.state, row.deadline, today),
        alternative: row.alternative_kind.map(|kind| pb::Alternative {
            kind: convert::alternative_kind_to_pb(kind),
            appointment_id: row.appointment_id.clone().unwrap_or_default(),
            kit_sent_to: row.kit_sent_to.0.clone(),
            offered_at: row.offered_at.map(convert::timestamp_to_pb),
            offered_by: row.offered_by.clone().unwrap_or_default(),
        }),
        outcome: row.outcome.map_or(0, convert::report_outcome_to_pb),
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
