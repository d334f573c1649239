//! The letters made for postal filers: one per event, listed for the
//! mailroom, with what became of their e-mail copy.

use chrono::{DateTime, Utc};
use guichet_kit::sql::Stmt;

use super::rows::{LETTER_COLUMNS, LetterRow};
use super::{NewLetter, Store, StoreError};

impl Store {
    /// Records a letter once per event: its id, or `None` if it was already
    /// made.
    pub async fn insert_letter(
        &self,
        l: &NewLetter,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let n = self
            .db
            .execute(
                Stmt::new(
                    "INSERT INTO postal_letters (id, event_key, reference, envelope_id, kind, \
                     sha256, emailed_to, email_state, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (event_key) DO NOTHING",
                )
                .bind(&id)
                .bind(&l.event_key)
                .bind(&l.reference)
                .bind(&l.envelope_id)
                .bind(&l.kind)
                .bind(&l.sha256)
                .bind(&l.emailed_to)
                .bind(&l.email_state)
                .bind(now),
            )
            .await?;
        Ok((n == 1).then_some(id))
    }

    pub async fn letter_made(&self, event_key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .db
            .scalar(
                Stmt::new("SELECT COUNT(*) FROM postal_letters WHERE event_key = $1")
                    .bind(event_key),
            )
            .await?;
        Ok(n > 0)
    }

    pub async fn set_email_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                Stmt::new("UPDATE postal_letters SET email_state = $1 WHERE id = $2")
                    .bind(state)
                    .bind(id),
            )
            .await?;
        Ok(())
    }

    /// The latest letters, of one dossier or (`reference` empty) of all;
    /// those not posted yet first.
    pub async fn letters(&self, reference: &str, limit: u32) -> Result<Vec<LetterRow>, StoreError> {
        self.rows(
            || format!("a letter of {reference:?}"),
            Stmt::new(format!(
                "SELECT {LETTER_COLUMNS} FROM postal_letters \
                 WHERE ($1 = '' OR reference = $1) \
                 ORDER BY posted_at IS NOT NULL, created_at DESC, id DESC LIMIT $2"
            ))
            .bind(reference)
            .bind(i64::from(limit)),
        )
        .await
    }

    /// Marks the letter printed (`posted` false) or posted, by `operator`;
    /// posting marks it printed too when it was not. A mark already made
    /// stays as it was (a second click changes nothing).
    pub async fn mark_letter(
        &self,
        id: &str,
        posted: bool,
        operator: &str,
        now: DateTime<Utc>,
    ) -> Result<LetterRow, StoreError> {
        let sql = if posted {
            "UPDATE postal_letters SET \
             printed_at = COALESCE(printed_at, $3), printed_by = COALESCE(printed_by, $2), \
             posted_at = COALESCE(posted_at, $3), posted_by = COALESCE(posted_by, $2) \
             WHERE id = $1"
        } else {
            "UPDATE postal_letters SET \
             printed_at = COALESCE(printed_at, $3), printed_by = COALESCE(printed_by, $2) \
             WHERE id = $1"
        };
        self.db
            .execute(Stmt::new(sql).bind(id).bind(operator).bind(now))
            .await?;
        self.letter(id).await
    }

    pub async fn letter(&self, id: &str) -> Result<LetterRow, StoreError> {
        self.by_id(
            ("postal_letters", LETTER_COLUMNS),
            "letter",
            id,
            StoreError::NoLetter,
        )
        .await
    }
}
