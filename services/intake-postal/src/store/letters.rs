//! The letters made for postal filers: one per event, listed for the
//! mailroom, with what became of their e-mail copy.

use chrono::{DateTime, Utc};
use guichet_kit::db::{Database, answered_within};
use guichet_kit::sql::Stmt;

use super::rows::{LETTER_COLUMNS, LetterRow};
use super::{NewLetter, Store, StoreError};

/// The columns a new letter is inserted with, in the order of the values
/// of both ways of inserting it (one row, or a batch's arrays).
const INSERTED: &str =
    "id, event_key, reference, envelope_id, kind, sha256, emailed_to, email_state, created_at";

/// One letter, unless its event already has one.
fn insert_letter(id: &str, l: &NewLetter, now: DateTime<Utc>) -> Stmt {
    Stmt::new(format!(
        "INSERT INTO postal_letters ({INSERTED}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (event_key) DO NOTHING"
    ))
    .bind(id)
    .bind(&l.event_key)
    .bind(&l.reference)
    .bind(&l.envelope_id)
    .bind(&l.kind)
    .bind(&l.sha256)
    .bind(&l.emailed_to)
    .bind(&l.email_state)
    .bind(now)
}

impl Store {
    /// Records a letter once per event: its id, or `None` if it was already
    /// made.
    pub async fn insert_letter(
        &self,
        l: &NewLetter,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let n = self.db.execute(insert_letter(&id, l, now)).await?;
        Ok((n == 1).then_some(id))
    }

    /// Records the letters of a delivery batch, each once per event, in one
    /// transaction (on PostgreSQL one statement); the kinds of those that
    /// were new.
    pub async fn insert_letters(
        &self,
        letters: &[NewLetter],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = letters
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let new = if let Some((pg, bound)) = c.postgres() {
            let column = |f: fn(&NewLetter) -> &str| letters.iter().map(f).collect::<Vec<_>>();
            let sql = format!(
                "INSERT INTO postal_letters ({INSERTED}) \
                 SELECT i, e, r, v, k, s, m, st, $9 FROM UNNEST($1::text[], $2::text[], \
                 $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                 AS u(i, e, r, v, k, s, m, st) \
                 ON CONFLICT (event_key) DO NOTHING RETURNING kind"
            );
            let insert = sqlx::query_scalar(&sql)
                .bind(&ids)
                .bind(column(|l| &l.event_key))
                .bind(column(|l| &l.reference))
                .bind(column(|l| &l.envelope_id))
                .bind(column(|l| &l.kind))
                .bind(column(|l| &l.sha256))
                .bind(
                    letters
                        .iter()
                        .map(|l| l.emailed_to.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(column(|l| &l.email_state))
                .bind(now)
                .fetch_all(pg);
            answered_within(bound, insert).await?
        } else {
            let mut new = Vec::new();
            for (id, l) in ids.iter().zip(letters) {
                let n = c.execute(insert_letter(id, l, now)).await?;
                if n == 1 {
                    new.push(l.kind.clone());
                }
            }
            new
        };
        tx.commit().await?;
        Ok(new)
    }

    /// Which of `event_keys` already have their letter.
    pub async fn letters_made(
        &self,
        event_keys: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if let Database::Postgres(pool, bound) = &self.db {
            // Planned at each run: prepared while the table was empty, the
            // plan kept would read the whole table for every batch.
            let made = sqlx::query_scalar(
                "SELECT event_key FROM postal_letters WHERE event_key = ANY($1)",
            )
            .bind(event_keys)
            .persistent(false)
            .fetch_all(pool);
            let made: Vec<String> = answered_within(*bound, made).await?;
            return Ok(made.into_iter().collect());
        }
        let mut made = std::collections::HashSet::new();
        for key in event_keys {
            if self.letter_made(key).await? {
                made.insert(key.to_string());
            }
        }
        Ok(made)
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
