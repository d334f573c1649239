//! What is read of the instruction tables: a case (its view from one
//! snapshot), the queue, where a file stands, and the operators' figures.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::calendar::paris_date;
use guichet_dossier::{CaseState, Channel, UrgencyClass, equity, evaluation};
use guichet_kit::sql::Stmt;

use super::Store;
use super::rows::{
    ATTESTATIONS_SQL, AttestationRow, CASE_COLUMNS, CaseRow, CaseSnapshot, CodedAttestation,
    DOCUMENTS_SQL, DocumentRow, EVENTS_SQL, EventRow, LINKED_SQL, NEAR_MATCHES_SHOWN, OPEN,
    QueueFilter, QueueRow,
};

/// The open filings that may be the same person as `$1` (see
/// `arrival::propose_near_matches`), while both are open and unlinked.
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

/// What the equity comparison reads of one dossier.
#[derive(sqlx::FromRow)]
struct EquityRow {
    #[sqlx(try_from = "String")]
    channel: Channel,
    legal_filing_date: NaiveDate,
    received_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    complete_at_filing: bool,
    #[sqlx(try_from = "String")]
    state: CaseState,
    title_expires_on: Option<NaiveDate>,
    cover_until: Option<NaiveDate>,
}

/// What the evaluation reads of one dossier.
#[derive(sqlx::FromRow)]
struct EvaluationRow {
    #[sqlx(try_from = "String")]
    channel: Channel,
    prefecture: String,
    legal_filing_date: NaiveDate,
    #[sqlx(try_from = "String")]
    state: CaseState,
    decided_at: Option<DateTime<Utc>>,
    title_expires_on: Option<NaiveDate>,
    withdrawn: bool,
    attested: bool,
    ended_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn case(&self, reference: &str) -> Result<Option<CaseRow>, sqlx::Error> {
        self.db
            .fetch_optional(
                Stmt::new(format!(
                    "SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1"
                ))
                .bind(reference),
            )
            .await
    }

    /// A case as one snapshot: its row, history, attestations, linked and
    /// near-matching filings, all read in one read-only transaction that sees
    /// one state of the database. Read statement by statement, a view could
    /// show a new attestation beside the cover from before it.
    pub async fn snapshot(&self, reference: &str) -> Result<Option<CaseSnapshot>, sqlx::Error> {
        let mut tx = self.db.begin_snapshot().await?;
        let mut c = tx.conn();
        let row: Option<CaseRow> = c
            .fetch_optional(
                Stmt::new(format!(
                    "SELECT {CASE_COLUMNS} FROM dossiers WHERE reference = $1"
                ))
                .bind(reference),
            )
            .await?;
        let snapshot = match row {
            None => None,
            Some(row) => Some(CaseSnapshot {
                events: c.fetch_all(Stmt::new(EVENTS_SQL).bind(reference)).await?,
                attestations: c
                    .fetch_all(Stmt::new(ATTESTATIONS_SQL).bind(reference))
                    .await?,
                linked: c.scalars(Stmt::new(LINKED_SQL).bind(reference)).await?,
                near_matches: c
                    .scalars(Stmt::new(near_matches_sql()).bind(reference))
                    .await?,
                documents: c
                    .fetch_all(Stmt::new(DOCUMENTS_SQL).bind(reference))
                    .await?,
                row,
            }),
        };
        tx.commit().await?;
        Ok(snapshot)
    }

    pub async fn events(&self, reference: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        self.db
            .fetch_all(Stmt::new(EVENTS_SQL).bind(reference))
            .await
    }

    pub async fn attestations(&self, reference: &str) -> Result<Vec<AttestationRow>, sqlx::Error> {
        self.db
            .fetch_all(Stmt::new(ATTESTATIONS_SQL).bind(reference))
            .await
    }

    /// The documents received after filing.
    pub async fn documents(&self, reference: &str) -> Result<Vec<DocumentRow>, sqlx::Error> {
        self.db
            .fetch_all(Stmt::new(DOCUMENTS_SQL).bind(reference))
            .await
    }

    /// The other filings linked to this one.
    pub async fn linked(&self, reference: &str) -> Result<Vec<String>, sqlx::Error> {
        self.db.scalars(Stmt::new(LINKED_SQL).bind(reference)).await
    }

    /// The attestation with this verification code, and its dossier.
    pub async fn attestation_by_code(
        &self,
        code: &str,
    ) -> Result<Option<CodedAttestation>, sqlx::Error> {
        self.db
            .fetch_optional(
                Stmt::new(
                    "SELECT reference, id, kind, valid_from, valid_until, issued_at, \
                     verification_code FROM attestations WHERE verification_code = $1",
                )
                .bind(code),
            )
            .await
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
        self.db
            .fetch_all(
                super::with_urgency(&self.sql.queue, today)
                    .bind(filter.prefecture.as_deref())
                    .bind(filter.procedure.map(|p| p.as_str()))
                    .bind(filter.motif.map(|m| m.as_str()))
                    .bind(filter.channel.map(|c| c.as_str()))
                    .bind(filter.state.map(|s| s.as_str()))
                    .bind(filter.cover_ends_before)
                    .bind(filter.urgency.map(UrgencyClass::rank))
                    .bind(limit),
            )
            .await
    }

    /// How many open dossiers of the same prefecture come before this one.
    pub async fn files_ahead(&self, row: &CaseRow, today: NaiveDate) -> Result<i64, sqlx::Error> {
        let rank = UrgencyClass::for_cover(row.cover_until, today).rank();
        self.db
            .scalar(
                super::with_urgency(&self.sql.files_ahead, today)
                    .bind(row.prefecture.as_str())
                    .bind(rank)
                    .bind(row.queue_date.unwrap_or(row.legal_filing_date))
                    .bind(row.filed_at)
                    .bind(row.reference.as_str()),
            )
            .await
    }

    /// Days from legal filing to decision of the decisions since `since`, for
    /// one procedure and prefecture.
    pub async fn decision_days(
        &self,
        procedure: Option<&str>,
        prefecture: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows: Vec<(String, NaiveDate, DateTime<Utc>)> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT procedure, legal_filing_date, decided_at FROM dossiers \
                     WHERE prefecture = $1 AND ($2 IS NULL OR procedure = $2) \
                     AND decided_at IS NOT NULL AND decided_at >= $3 AND linked_to IS NULL",
                )
                .bind(prefecture)
                .bind(procedure)
                .bind(since),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(procedure, filed, decided)| {
                (procedure, (paris_date(decided) - filed).num_days().max(0))
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
    ) -> Result<Vec<equity::CaseFacts>, sqlx::Error> {
        let rows: Vec<EquityRow> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT d.channel, d.legal_filing_date, d.received_at, d.decided_at, \
                     EXISTS (SELECT 1 FROM dossier_events e WHERE e.reference = d.reference \
                             AND e.kind = 'found_complete') AS complete_at_filing, \
                     d.state, d.title_expires_on, d.cover_until \
                     FROM dossiers d WHERE d.received_at >= $1 \
                     AND ($2 = '' OR d.prefecture = $2) AND d.linked_to IS NULL",
                )
                .bind(since)
                .bind(prefecture),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| equity::CaseFacts {
                channel: r.channel,
                legal_filing_date: r.legal_filing_date,
                receipt_date: paris_date(r.received_at),
                decided_on: r.decided_at.map(paris_date),
                complete_at_filing: r.complete_at_filing,
                needs_cover: r.state.is_open() && r.title_expires_on.is_some_and(|e| e < today),
                covered: r.cover_until.is_some_and(|c| c >= today),
            })
            .collect())
    }

    /// What the evaluation reads of each dossier filed (by legal filing
    /// date) from `from` to before `until`; a linked second filing is not
    /// a dossier of its own.
    pub async fn evaluation_facts(
        &self,
        from: NaiveDate,
        until: NaiveDate,
        today: NaiveDate,
    ) -> Result<Vec<evaluation::DossierFacts>, sqlx::Error> {
        let rows: Vec<EvaluationRow> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT d.channel, d.prefecture, d.legal_filing_date, d.state, d.decided_at, \
                     d.title_expires_on, \
                     EXISTS (SELECT 1 FROM dossier_events e WHERE e.reference = d.reference \
                             AND e.kind = 'withdrawn') AS withdrawn, \
                     EXISTS (SELECT 1 FROM attestations a WHERE a.reference = d.reference) \
                       AS attested, \
                     (SELECT MIN(e.at) FROM dossier_events e WHERE e.reference = d.reference \
                      AND e.kind IN ('decided_favourable', 'decided_unfavourable', 'withdrawn', \
                                     'closed_deadline_passed')) AS ended_at \
                     FROM dossiers d WHERE d.linked_to IS NULL \
                     AND d.legal_filing_date >= $1 AND d.legal_filing_date < $2",
                )
                .bind(from)
                .bind(until),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                use evaluation::Outcome;
                let outcome = match r.state {
                    CaseState::Favourable => Outcome::Favourable,
                    CaseState::Unfavourable => Outcome::Unfavourable,
                    CaseState::Closed if r.withdrawn => Outcome::Withdrawn,
                    CaseState::Closed => Outcome::ClosedMissingDocuments,
                    _ => Outcome::Pending,
                };
                // Until the outcome, or today for a file still pending.
                let until = r.ended_at.map_or(today, paris_date);
                evaluation::DossierFacts {
                    channel: r.channel,
                    prefecture: r.prefecture,
                    legal_filing_date: r.legal_filing_date,
                    outcome,
                    decided_on: r.decided_at.map(paris_date),
                    needed_cover: r.title_expires_on.is_some_and(|e| e < until),
                    attested: r.attested,
                }
            })
            .collect())
    }

    /// Open dossiers by state, for the operators' figures.
    pub async fn open_by_state(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        self.db
            .fetch_all(Stmt::new(format!(
                "SELECT state, count(*) FROM dossiers WHERE {OPEN} GROUP BY state"
            )))
            .await
    }

    /// Attestations issued by kind: (kind, all, renewals), a renewal being
    /// one that follows an earlier attestation of the same kind for the same
    /// dossier.
    pub async fn attestation_counts(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        self.db
            .fetch_all(Stmt::new(
                "SELECT kind, count(*), count(*) - count(DISTINCT reference) \
                 FROM attestations GROUP BY kind",
            ))
            .await
    }

    /// Open dossiers per procedure in a prefecture.
    pub async fn open_counts(
        &self,
        prefecture: &str,
    ) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = self
            .db
            .fetch_all(
                Stmt::new(format!(
                    "SELECT procedure, count(*) FROM dossiers WHERE {OPEN} \
                     AND linked_to IS NULL AND prefecture = $1 GROUP BY procedure"
                ))
                .bind(prefecture),
            )
            .await?;
        Ok(rows.into_iter().collect())
    }
}
