//! The keying queue: envelopes waiting for an operator, the corrections
//! kept as they are typed, an envelope closed as a dossier or as routed or
//! held for a second look at its postmark, each with its history.

use chrono::{DateTime, Utc};
use guichet_dossier::postal::{EnvelopeAction, EnvelopeState};
use guichet_dossier::{Channel, Reference};
use guichet_kit::sql::Stmt;

use super::rows::{ENVELOPE_COLUMNS, EVENT_COLUMNS, EnvelopeEventRow, EnvelopeRow, StateCount};
use super::{NewEnvelopeEvent, Store, StoreError, StoredField};

/// The states in which an operator may still act on an envelope.
const OPEN_STATES: &str = "('keying', 'postmark_check')";

/// One history event of envelope `envelope`.
fn insert_event(envelope: &str, e: &NewEnvelopeEvent<'_>, now: DateTime<Utc>) -> Stmt {
    Stmt::new(
        "INSERT INTO postal_envelope_events (id, envelope_id, kind, operator_id, at, \
         postmark_date, reason, reference) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(envelope)
    .bind(e.kind)
    .bind(e.operator_id)
    .bind(now)
    .bind(e.postmark_date)
    .bind(e.reason)
    .bind(e.reference)
}

impl Store {
    pub async fn envelope(&self, id: &str) -> Result<EnvelopeRow, StoreError> {
        let table = ("postal_envelopes", ENVELOPE_COLUMNS);
        self.by_id(table, "envelope", id, StoreError::NoEnvelope)
            .await
    }

    /// The envelope a dossier was filed from. Found through the ledger's
    /// idempotency key (`postal-<envelope id>`), not the envelope's own
    /// reference column, which is written just after the filing commits:
    /// instruction's first event can arrive in between.
    pub async fn envelope_of_reference(
        &self,
        reference: &str,
    ) -> Result<Option<EnvelopeRow>, StoreError> {
        // A reference names its channel: a dossier filed elsewhere came
        // in no envelope, and most letters are for those.
        if Reference::parse(reference).is_ok_and(|r| r.channel() != Channel::Postal) {
            return Ok(None);
        }
        let key: Option<String> = self
            .db
            .scalar_optional(
                Stmt::new("SELECT idempotency_key FROM filings WHERE reference = $1")
                    .bind(reference),
            )
            .await?;
        match key.as_deref().and_then(|k| k.strip_prefix("postal-")) {
            Some(id) => match self.envelope(id).await {
                Ok(row) => Ok(Some(row)),
                Err(StoreError::NoEnvelope(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    pub async fn envelopes_of_batch(&self, id: &str) -> Result<Vec<EnvelopeRow>, StoreError> {
        self.rows(
            || format!("an envelope of batch {id}"),
            Stmt::new(format!(
                "SELECT {ENVELOPE_COLUMNS} FROM postal_envelopes WHERE batch_id = $1 ORDER BY seq"
            ))
            .bind(id),
        )
        .await
    }

    /// Envelopes waiting for an operator (to key them, or to give a held
    /// postmark its second look), oldest first.
    pub async fn keying(&self, limit: u32) -> Result<Vec<EnvelopeRow>, StoreError> {
        self.rows(
            || "an envelope waiting for keying".to_string(),
            Stmt::new(format!(
                "SELECT {ENVELOPE_COLUMNS} FROM postal_envelopes WHERE state IN {OPEN_STATES} \
                 ORDER BY created_at, batch_id, seq LIMIT $1"
            ))
            .bind(i64::from(limit)),
        )
        .await
    }

    /// Keeps the operator's corrections (and postmark) on an envelope still
    /// in keying, so a refused confirmation loses nothing.
    pub async fn save_keying(
        &self,
        id: &str,
        fields: &[StoredField],
        postmark_date: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                Stmt::new(format!(
                    "UPDATE postal_envelopes SET fields = $1, postmark_date = $2 \
                     WHERE id = $3 AND state IN {OPEN_STATES}"
                ))
                .bind(serde_json::to_string(fields)?)
                .bind(postmark_date)
                .bind(id),
            )
            .await?;
        Ok(())
    }

    /// Closes an envelope as a dossier or as routed, from keying or from a
    /// postmark hold, with what the operators did (`events`, the closing
    /// one last) in its history, all at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn close(
        &self,
        id: &str,
        action: EnvelopeAction,
        operator: &str,
        reference: Option<&str>,
        routed: Option<(&str, &str)>,
        events: &[NewEnvelopeEvent<'_>],
        now: DateTime<Utc>,
    ) -> Result<EnvelopeRow, StoreError> {
        let next = self
            .envelope(id)
            .await?
            .state
            .after(action)
            .map_err(StoreError::WrongState)?;
        let mut tx = self.db.begin_write().await?;
        let changed = tx
            .conn()
            .execute(
                Stmt::new(format!(
                    "UPDATE postal_envelopes SET state = $1, reference = $2, routed_reason = $3, \
                     routed_to = $4, keyed_by = $5, closed_at = $6 \
                     WHERE id = $7 AND state IN {OPEN_STATES}"
                ))
                .bind(next.as_str())
                .bind(reference)
                .bind(routed.map(|r| r.0))
                .bind(routed.map(|r| r.1))
                .bind(operator)
                .bind(now)
                .bind(id),
            )
            .await?;
        if changed == 0 {
            drop(tx);
            // Another operator closed it in between: why this action is
            // refused now.
            let why = match self.envelope(id).await?.state.after(action) {
                Err(why) => why,
                Ok(_) => "this envelope changed meanwhile",
            };
            return Err(StoreError::WrongState(why));
        }
        for e in events {
            tx.conn().execute(insert_event(id, e, now)).await?;
        }
        tx.commit().await?;
        self.envelope(id).await
    }

    /// Holds an open envelope for a second operator's look at its postmark,
    /// recording who held it, the postmark and why.
    pub async fn hold_postmark(
        &self,
        id: &str,
        event: &NewEnvelopeEvent<'_>,
        now: DateTime<Utc>,
    ) -> Result<EnvelopeRow, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let changed = c
            .execute(
                Stmt::new(format!(
                    "UPDATE postal_envelopes SET state = 'postmark_check' \
                     WHERE id = $1 AND state IN {OPEN_STATES}"
                ))
                .bind(id),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::WrongState("this envelope was closed meanwhile"));
        }
        c.execute(insert_event(id, event, now)).await?;
        tx.commit().await?;
        self.envelope(id).await
    }

    /// The hold on an envelope's postmark, if it is held: the latest
    /// `postmark_held` event's postmark and operator.
    pub async fn postmark_hold(
        &self,
        row: &EnvelopeRow,
    ) -> Result<Option<(String, String)>, StoreError> {
        if row.state != EnvelopeState::PostmarkCheck {
            return Ok(None);
        }
        let held: Option<(Option<String>, String)> = self
            .db
            .fetch_optional(
                Stmt::new(
                    "SELECT postmark_date, operator_id FROM postal_envelope_events \
                     WHERE envelope_id = $1 AND kind = 'postmark_held' \
                     ORDER BY at DESC, id DESC LIMIT 1",
                )
                .bind(&row.id),
            )
            .await?;
        Ok(held.and_then(|(p, op)| p.map(|p| (p, op))))
    }

    /// An envelope's history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<EnvelopeEventRow>, StoreError> {
        self.rows(
            || format!("an event of envelope {id}"),
            Stmt::new(format!(
                "SELECT {EVENT_COLUMNS} FROM postal_envelope_events WHERE envelope_id = $1 \
                 ORDER BY at, id"
            ))
            .bind(id),
        )
        .await
    }

    /// The history of every envelope of a batch, oldest first.
    pub async fn history_of_batch(
        &self,
        batch_id: &str,
    ) -> Result<Vec<EnvelopeEventRow>, StoreError> {
        self.rows(
            || format!("an event of batch {batch_id}"),
            Stmt::new(format!(
                "SELECT {EVENT_COLUMNS} FROM postal_envelope_events WHERE envelope_id IN \
                 (SELECT id FROM postal_envelopes WHERE batch_id = $1) ORDER BY at, id"
            ))
            .bind(batch_id),
        )
        .await
    }

    /// Envelopes per state, for `/metrics`.
    pub async fn envelope_counts(&self) -> Result<Vec<(EnvelopeState, i64)>, StoreError> {
        let counts: Vec<StateCount> = self
            .rows(
                || "an envelope counted for /metrics".to_string(),
                Stmt::new("SELECT state, COUNT(*) AS n FROM postal_envelopes GROUP BY state"),
            )
            .await?;
        Ok(counts.into_iter().map(|c| (c.state, c.n)).collect())
    }
}
