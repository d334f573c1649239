//! The inbox: claim message ids in the transaction that applies them. A claim
//! that finds the id already there means the message was applied before.

use std::collections::HashSet;

use sqlx::{PgConnection, SqliteConnection};

/// Claims every id it can, in the caller's PostgreSQL transaction; returns
/// the ids claimed now (the others were applied before and must be skipped).
pub async fn claim_postgres(
    conn: &mut PgConnection,
    message_ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    // Sorted: consumers claiming overlapping batches (a redelivery after an
    // instance died) wait on each other's ids in one order, never in a cycle.
    let mut sorted: Vec<&str> = message_ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let claimed: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO inbox (message_id) SELECT * FROM UNNEST($1::text[]) \
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(&sorted)
    .fetch_all(conn)
    .await?;
    Ok(claimed.into_iter().map(|(id,)| id).collect())
}

/// The same, in the caller's SQLite transaction.
pub async fn claim_sqlite(
    conn: &mut SqliteConnection,
    message_ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut claimed = HashSet::with_capacity(message_ids.len());
    for id in message_ids {
        let done = sqlx::query("INSERT INTO inbox (message_id) VALUES (?) ON CONFLICT DO NOTHING")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 {
            claimed.insert(id.clone());
        }
    }
    Ok(claimed)
}

/// Claiming in whichever transaction a store holds.
#[allow(async_fn_in_trait)]
pub trait Claim {
    async fn claim(&mut self, message_ids: &[String]) -> Result<HashSet<String>, sqlx::Error>;
}

impl Claim for PgConnection {
    async fn claim(&mut self, message_ids: &[String]) -> Result<HashSet<String>, sqlx::Error> {
        claim_postgres(self, message_ids).await
    }
}

impl Claim for SqliteConnection {
    async fn claim(&mut self, message_ids: &[String]) -> Result<HashSet<String>, sqlx::Error> {
        claim_sqlite(self, message_ids).await
    }
}
