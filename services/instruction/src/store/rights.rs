//! Rights continuity in the store: an attestation issued is a row, an event
//! in the dossier's history and a case event for the person, in the caller's
//! transaction; the sweep issues what falls due while nothing happens.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::lifecycle::CARD_HANDED_OVER;
use guichet_dossier::rights::{self, Attestation, Cover};
use guichet_dossier::{CaseState, Step};
use guichet_kit::sql::{Conn, Stmt};
use guichet_proto::v1 as pb;

use super::Store;
use super::rows::{ATTESTATIONS_SQL, AttestationRow, CaseError, CaseRow, StepDetails};
use crate::cases::{self, EventFacts};

/// Records the attestation `a`, issued for `reference` (whose dossier as
/// received is `dossier`, in `state`). Returns it as shown to the person.
pub(super) async fn record_attestation(
    c: &mut Conn<'_>,
    reference: &str,
    dossier: &pb::Dossier,
    state: CaseState,
    a: Attestation,
    now: DateTime<Utc>,
) -> Result<pb::AttestationView, sqlx::Error> {
    let code = cases::verification_code();
    let id: i64 = c
        .scalar(
            Stmt::new(
                "INSERT INTO attestations (reference, kind, valid_from, valid_until, issued_at, \
                 verification_code) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(reference)
            .bind(a.kind.as_str())
            .bind(a.valid_from)
            .bind(a.valid_until)
            .bind(now)
            .bind(code.as_str()),
        )
        .await?;
    c.execute(
        Stmt::new(
            "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
             VALUES ($1, 'attestation_issued', 'system', $2, $3, $4)",
        )
        .bind(reference)
        .bind(now)
        .bind(a.kind.as_str())
        .bind(guichet_kit::telemetry::current_trace_id()),
    )
    .await?;
    let view = AttestationRow {
        id,
        kind: a.kind,
        valid_from: a.valid_from,
        valid_until: a.valid_until,
        issued_at: now,
        verification_code: code,
    }
    .to_pb();
    c.enqueue(&cases::event_message(EventFacts {
        reference,
        kind: "attestation_issued",
        dossier,
        state,
        at: now,
        reason: a.kind.as_str(),
        attestation: Some(view.clone()),
        missing: &[],
        documents_deadline: None,
    }))
    .await?;
    Ok(view)
}

/// Issues the attestation due for `row` in state `state`, if any, when its
/// cover ends within `horizon_days`; keeps the cover columns current either
/// way. Returns whether one was issued.
pub(super) async fn issue_due(
    c: &mut Conn<'_>,
    row: &CaseRow,
    state: CaseState,
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<bool, CaseError> {
    let facts = row.facts(state)?;
    let held: Vec<AttestationRow> = c
        .fetch_all(Stmt::new(ATTESTATIONS_SQL).bind(row.reference.as_str()))
        .await?;
    let mut attestations: Vec<Attestation> = held.iter().map(AttestationRow::attestation).collect();
    let due = rights::attestation_due(&facts, &attestations, today, horizon_days);
    if let Some(a) = due {
        record_attestation(c, &row.reference, &row.dossier, state, a, now).await?;
        attestations.push(a);
    }
    set_cover(
        c,
        &row.reference,
        rights::cover(&facts, &attestations, today),
    )
    .await?;
    Ok(due.is_some())
}

pub(super) async fn set_cover(
    c: &mut Conn<'_>,
    reference: &str,
    cover: Cover,
) -> Result<(), sqlx::Error> {
    c.execute(
        Stmt::new("UPDATE dossiers SET cover_until = $2, cover_basis = $3 WHERE reference = $1")
            .bind(reference)
            .bind(cover.until())
            .bind(cover.basis().map(|b| b.as_str())),
    )
    .await?;
    Ok(())
}

impl Store {
    /// The card a favourable decision granted was handed over at a desk:
    /// the favourable-decision attestation ends today, and from now on the
    /// person's cover rests on the card, until `card_until`.
    pub async fn hand_over_card(
        &self,
        reference: &str,
        agent: &str,
        card_number: &str,
        card_until: NaiveDate,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<CaseState, CaseError> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let row: CaseRow = c
            .fetch_optional(Stmt::new(self.sql.case_for_update.clone()).bind(reference))
            .await?
            .ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        if row.state != CaseState::Favourable {
            return Err(CaseError::Invalid(format!(
                "a card is handed over after a favourable decision; this case is {}",
                row.state.as_str()
            )));
        }
        if row.card_until.is_some() {
            return Err(CaseError::Invalid(
                "the card of this case was already handed over".into(),
            ));
        }
        if card_until < today {
            return Err(CaseError::Invalid(format!(
                "the card's last day ({card_until}) is already past"
            )));
        }
        c.execute(
            Stmt::new(
                "UPDATE attestations SET valid_until = $2 WHERE reference = $1 \
                 AND kind = 'favourable_decision' AND valid_until IS NULL",
            )
            .bind(reference)
            .bind(today),
        )
        .await?;
        c.execute(
            Stmt::new(
                "UPDATE dossiers SET card_number = $2, card_handed_over_on = $3, card_until = $4, \
                 updated_at = $5 WHERE reference = $1",
            )
            .bind(reference)
            .bind(card_number)
            .bind(today)
            .bind(card_until)
            .bind(now),
        )
        .await?;
        let reason = format!("card {card_number}, valid until {card_until}");
        c.execute(
            Stmt::new(
                "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(reference)
            .bind(CARD_HANDED_OVER)
            .bind(agent)
            .bind(now)
            .bind(reason.as_str())
            .bind(guichet_kit::telemetry::current_trace_id()),
        )
        .await?;
        let row = CaseRow {
            card_until: Some(card_until),
            ..row
        };
        let held: Vec<AttestationRow> = c
            .fetch_all(Stmt::new(ATTESTATIONS_SQL).bind(reference))
            .await?;
        let attestations: Vec<Attestation> = held.iter().map(AttestationRow::attestation).collect();
        let facts = row.facts(row.state)?;
        set_cover(
            &mut c,
            reference,
            rights::cover(&facts, &attestations, today),
        )
        .await?;
        c.enqueue(&cases::event_message(EventFacts {
            reference,
            kind: CARD_HANDED_OVER,
            dossier: &row.dossier,
            state: row.state,
            at: now,
            reason: &reason,
            attestation: None,
            missing: &[],
            documents_deadline: None,
        }))
        .await?;
        tx.commit().await?;
        Ok(row.state)
    }

    /// Issues every attestation due today and closes the dossiers whose
    /// deadline for documents passed, once a reply posted on it would be in
    /// (`lifecycle::latest_deadline_to_close`).
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<SweepRound, CaseError> {
        let soon = today + chrono::Duration::days(self.horizon_days);
        // References and states alone: each dossier is read whole under its
        // own lock, so one that does not decode fails alone, not the round.
        let rows: Vec<(String, String)> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT reference, state FROM dossiers WHERE linked_to IS NULL AND (\
                       (state IN ('complete', 'under_review') \
                          AND procedure IN ('renewal', 'regularisation') \
                          AND (cover_until IS NULL OR cover_until <= $1)) \
                       OR (state = 'favourable' AND card_until IS NULL \
                          AND (cover_basis IS NULL OR cover_basis <> 'favourable_decision')) \
                       OR (state = 'documents_requested' AND documents_deadline <= $2))",
                )
                .bind(soon)
                .bind(guichet_dossier::lifecycle::latest_deadline_to_close(today)),
            )
            .await?;
        let mut round = SweepRound::default();
        for (reference, state) in rows {
            match self.sweep_one(&reference, &state, now, today).await {
                Ok(Swept::Issued) => round.issued += 1,
                Ok(Swept::Closed) => round.closed += 1,
                Ok(Swept::Nothing) => {}
                // One damaged dossier must not stop the round for every
                // dossier after it: the others are owed their attestations.
                Err(e) if damaged(&e) => {
                    round.unreadable += 1;
                    tracing::error!(
                        %reference,
                        error = %guichet_kit::error::error_chain(&e),
                        "an unreadable dossier is left out of the sweep: mend it; the others go on"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(round)
    }

    /// The sweep's work on one dossier it found: close it if its deadline
    /// for documents passed, else issue the attestation it is owed.
    async fn sweep_one(
        &self,
        reference: &str,
        state: &str,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Swept, CaseError> {
        if state == CaseState::DocumentsRequested.as_str() {
            // Past its deadline, the step keeps the documents and deadline
            // the case holds (read again under its lock); none are given.
            let details = StepDetails {
                actor: "system".into(),
                holder_only: false,
                reason: "the deadline for the requested documents passed".into(),
                documents: Vec::new(),
                deadline: None,
            };
            return match self
                .step(reference, Step::DeadlinePassed, &details, now, today)
                .await
            {
                Ok(_) => Ok(Swept::Closed),
                // Moved since it was read (documents received, or another
                // instance's sweep closed it first): nothing left to do.
                Err(CaseError::Impossible(_)) => Ok(Swept::Nothing),
                Err(e) => Err(e),
            };
        }
        // Read again under the lock: an agent may have acted since.
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let current: Option<CaseRow> = c
            .fetch_optional(Stmt::new(self.sql.case_for_update.clone()).bind(reference))
            .await?;
        let done = match current {
            Some(row) => issue_due(&mut c, &row, row.state, now, today, self.horizon_days).await?,
            None => false,
        };
        tx.commit().await?;
        Ok(if done { Swept::Issued } else { Swept::Nothing })
    }
}

/// A dossier the rules cannot read (`Unreadable`), or whose stored row
/// does not decode: its own fault, not the database's.
fn damaged(e: &CaseError) -> bool {
    match e {
        CaseError::Unreadable(_) => true,
        CaseError::Db(e) => matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)),
        _ => false,
    }
}

/// What one round of the sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepRound {
    pub issued: usize,
    pub closed: usize,
    /// Dossiers left out because they cannot be read.
    pub unreadable: usize,
}

/// What the sweep did to one dossier.
enum Swept {
    Issued,
    Closed,
    Nothing,
}
