//! What agents and arriving documents do to a case: each change in one
//! transaction, with its event in the history, the case event for the
//! person's channel, the same step mirrored on linked filings, and any
//! attestation the change makes due.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::lifecycle;
use guichet_dossier::{CaseState, Channel, DocumentKind, DocumentRef, Motif, Step, requirements};
use guichet_kit::sql::Stmt;
use guichet_proto::convert;

use super::Store;
use super::rights::issue_due;
use super::rows::{CASE_COLUMNS, CaseError, CaseRow, StepDetails};
use crate::cases::{self, EventFacts, join_kinds};

impl Store {
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
        self.db
            .scalar_optional(
                super::with_urgency(&self.sql.take_next, today)
                    .bind(agent)
                    .bind(now)
                    .bind(prefecture),
            )
            .await
    }

    /// `agent` takes `reference` over from whoever held it (or nobody),
    /// with the event in its history; the previous holder, if any.
    pub async fn take_over(
        &self,
        reference: &str,
        agent: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, CaseError> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let row: Option<CaseRow> = c
            .fetch_optional(Stmt::new(self.sql.case_for_update.clone()).bind(reference))
            .await?;
        let row = row.ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        if !row.state.is_open() {
            return Err(CaseError::Invalid(format!(
                "{reference} is {}: there is nothing to take over",
                row.state.as_str()
            )));
        }
        if let Some(primary) = &row.linked_to {
            return Err(CaseError::Invalid(format!(
                "{reference} is linked to {primary}: take {primary} over"
            )));
        }
        let previous = row.taken_by.clone();
        if previous.as_deref() == Some(agent) {
            return Ok(previous);
        }
        c.execute(
            Stmt::new(
                "UPDATE dossiers SET taken_by = $2, taken_at = $3, updated_at = $3 \
                 WHERE reference = $1",
            )
            .bind(reference)
            .bind(agent)
            .bind(now),
        )
        .await?;
        let from = previous.as_deref().unwrap_or("nobody");
        c.execute(
            Stmt::new(
                "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                 VALUES ($1, 'taken_over', $2, $3, $4, $5)",
            )
            .bind(reference)
            .bind(agent)
            .bind(now)
            .bind(format!("from {from}: {reason}"))
            .bind(guichet_kit::telemetry::current_trace_id()),
        )
        .await?;
        tx.commit().await?;
        Ok(previous)
    }

    /// Releases the cases whose holder has not acted since `idle_since`,
    /// with a `released` event each; how many.
    pub async fn release_idle(
        &self,
        idle_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let idle: Vec<(String, String)> = c
            .fetch_all(
                Stmt::new(
                    "SELECT reference, taken_by FROM dossiers \
                     WHERE taken_by IS NOT NULL AND taken_at < $1",
                )
                .bind(idle_since),
            )
            .await?;
        for (reference, holder) in &idle {
            c.execute(
                Stmt::new(
                    "UPDATE dossiers SET taken_by = NULL, taken_at = NULL, updated_at = $2 \
                     WHERE reference = $1 AND taken_by = $3",
                )
                .bind(reference.as_str())
                .bind(now)
                .bind(holder.as_str()),
            )
            .await?;
            c.execute(
                Stmt::new(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, 'released', 'system', $2, $3, '')",
                )
                .bind(reference.as_str())
                .bind(now)
                .bind(format!("{holder} had not acted on it for the idle time")),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(idle.len() as u64)
    }

    /// Records that `agent` read `reference`.
    pub async fn record_read(
        &self,
        reference: &str,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new("INSERT INTO agent_reads (reference, agent, at) VALUES ($1, $2, $3)")
                    .bind(reference)
                    .bind(agent)
                    .bind(now),
            )
            .await?;
        Ok(())
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
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let row: Option<CaseRow> = c
            .fetch_optional(Stmt::new(self.sql.case_for_update.clone()).bind(reference))
            .await?;
        let row = row.ok_or_else(|| CaseError::NotFound(reference.to_string()))?;
        // Checked again here, in the transaction: the gateway judged on
        // facts read before, and the case may have been taken over since.
        if details.holder_only && row.taken_by.as_deref() != Some(details.actor.as_str()) {
            return Err(CaseError::NotHeld {
                reference: reference.to_string(),
                agent: details.actor.clone(),
            });
        }
        if let Some(primary) = &row.linked_to {
            return Err(CaseError::Invalid(format!(
                "{reference} is linked to {primary}: act on {primary}"
            )));
        }
        let to = lifecycle::next(row.state, step)?;
        // Checked again under the lock, on the case's own calendar and
        // clock: an agent may have set a new deadline since the sweep read
        // the case, and the sweep chose on the national calendar.
        if step == Step::DeadlinePassed
            && !row
                .documents_deadline
                .is_some_and(|d| lifecycle::documents_deadline_missed(d, &row.prefecture, now))
        {
            return Err(lifecycle::ImpossibleStep {
                from: row.state,
                step,
            }
            .into());
        }
        let (missing, deadline) = match step {
            Step::RequestDocuments => (details.documents.clone(), details.deadline),
            _ => (row.missing()?, row.documents_deadline),
        };
        let decided = matches!(step, Step::DecideFavourable | Step::DecideUnfavourable);
        let mut targets = vec![row];
        let linked: Vec<CaseRow> = c
            .fetch_all(
                Stmt::new(format!(
                    "SELECT {CASE_COLUMNS} FROM dossiers WHERE linked_to = $1"
                ))
                .bind(reference),
            )
            .await?;
        targets.extend(linked);
        for target in &targets {
            c.execute(
                Stmt::new(
                    "UPDATE dossiers SET state = $2, missing = $3, documents_deadline = $4, \
                     decided_at = CASE WHEN $5 THEN $6 ELSE decided_at END, \
                     taken_by = CASE WHEN $7 THEN NULL ELSE taken_by END, \
                     taken_at = CASE WHEN $7 OR taken_by IS NULL THEN NULL ELSE $6 END, updated_at = $6 \
                     WHERE reference = $1",
                )
                .bind(target.reference.as_str())
                .bind(to.as_str())
                .bind(join_kinds(&missing))
                .bind(deadline)
                .bind(decided)
                .bind(now)
                .bind(!to.is_open()),
            )
            .await?;
            c.execute(
                Stmt::new(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(target.reference.as_str())
                .bind(step.as_str())
                .bind(details.actor.as_str())
                .bind(now)
                .bind(details.reason.as_str())
                .bind(guichet_kit::telemetry::current_trace_id()),
            )
            .await?;
            c.enqueue(&cases::event_message(EventFacts {
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
            issue_due(&mut c, target, to, now, today, self.horizon_days).await?;
        }
        tx.commit().await?;
        Ok(to)
    }

    /// A document arrived for a dossier, from any channel: kept, and
    /// completeness recomputed.
    pub async fn add_document(
        &self,
        reference: &str,
        document: &DocumentRef,
        channel: Channel,
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
        // The same bytes as the same kind, sent again (a retried upload):
        // one receipt, and nothing to recompute.
        let known: Vec<i64> = self
            .db
            .scalars(
                Stmt::new(
                    "SELECT id FROM dossier_documents WHERE reference = $1 AND sha256 = $2 \
                     AND kind = $3",
                )
                .bind(primary.as_str())
                .bind(document.sha256.as_str())
                .bind(document.kind.as_str()),
            )
            .await?;
        if !known.is_empty() {
            return Ok(row.state);
        }
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO dossier_documents (reference, kind, sha256, media_type, \
                     size_bytes, channel, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(primary.as_str())
                .bind(document.kind.as_str())
                .bind(document.sha256.as_str())
                .bind(document.media_type.as_str())
                .bind(document.size_bytes as i64)
                .bind(channel.as_str())
                .bind(now),
            )
            .await?;
        let primary_row = self
            .case(&primary)
            .await?
            .ok_or_else(|| CaseError::NotFound(primary.clone()))?;
        let received = self.received_kinds(&primary_row).await?;
        let motif = primary_row
            .dossier
            .filing
            .as_ref()
            .and_then(|f| convert::motif_text(f.motif))
            .and_then(|m| Motif::parse(&m))
            .ok_or_else(|| cases::Unreadable::new(&primary, "motif"))?;
        let missing = requirements::missing(primary_row.procedure, motif, &received);
        let step = if missing.is_empty() {
            Step::FoundComplete
        } else {
            Step::FoundIncomplete
        };
        let details = StepDetails {
            actor: actor.to_string(),
            holder_only: false,
            // The receipt, in the history: what, which bytes, how large.
            reason: format!(
                "{} received: {}, {} bytes, sha256 {}",
                document.kind, document.media_type, document.size_bytes, document.sha256
            ),
            documents: missing.clone(),
            deadline: primary_row.documents_deadline,
        };
        // Keep the list of what is still missing current, whatever the step.
        self.db
            .execute(
                Stmt::new("UPDATE dossiers SET missing = $2 WHERE reference = $1")
                    .bind(primary.as_str())
                    .bind(join_kinds(&missing)),
            )
            .await?;
        self.step(&primary, step, &details, now, today).await
    }

    /// Every document kind a dossier has: filed with it, or received since.
    async fn received_kinds(&self, row: &CaseRow) -> Result<Vec<DocumentKind>, CaseError> {
        let unreadable = |e: &dyn std::fmt::Display| cases::Unreadable::new(&row.reference, e);
        let filed = row.dossier.filing.as_ref().map(|f| f.documents.as_slice());
        let mut kinds = filed
            .unwrap_or_default()
            .iter()
            .map(|d| {
                convert::document_kind_text(d.kind)
                    .and_then(|k| DocumentKind::parse(&k))
                    .ok_or_else(|| unreadable(&format!("document kind {}", d.kind)))
            })
            .collect::<Result<Vec<DocumentKind>, _>>()?;
        let later: Vec<String> = self
            .db
            .scalars(
                Stmt::new("SELECT kind FROM dossier_documents WHERE reference = $1")
                    .bind(row.reference.as_str()),
            )
            .await?;
        for k in later {
            kinds.push(DocumentKind::try_from(k).map_err(|e| unreadable(&e))?);
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
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        if same_request {
            c.execute(
                Stmt::new(
                    "UPDATE dossiers SET link_confirmed = true, updated_at = $2 \
                     WHERE reference = $1",
                )
                .bind(reference)
                .bind(now),
            )
            .await?;
        } else {
            c.execute(
                Stmt::new(
                    "UPDATE dossiers SET linked_to = NULL, link_confirmed = false, \
                     queue_date = legal_filing_date, updated_at = $2 WHERE reference = $1",
                )
                .bind(reference)
                .bind(now),
            )
            .await?;
            // The first filing keeps the earliest date of what stays linked.
            c.execute(
                Stmt::new(
                    "UPDATE dossiers SET queue_date = (SELECT min(d.legal_filing_date) \
                     FROM dossiers d WHERE d.reference = $1 OR d.linked_to = $1), \
                     updated_at = $2 WHERE reference = $1",
                )
                .bind(primary.as_str())
                .bind(now),
            )
            .await?;
        }
        let kind = if same_request {
            "link_confirmed"
        } else {
            "link_undone"
        };
        for r in [reference, primary.as_str()] {
            c.execute(
                Stmt::new(
                    "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
                     VALUES ($1, $2, $3, $4, $5, '')",
                )
                .bind(r)
                .bind(kind)
                .bind(agent)
                .bind(now)
                .bind(format!("{reference} and {primary}")),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
