//! The inbox: claim message ids in the transaction that applies them. A claim
//! that finds the id already there means the message was applied before.

use std::collections::HashSet;

use sqlx::PgConnection;

/// Claims every id it can; returns the ids claimed now (the others were
/// applied before and must be skipped).
pub async fn claim(
    conn: &mut PgConnection,
    message_ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let claimed: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO inbox (message_id) SELECT * FROM UNNEST($1::text[]) \
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(message_ids)
    .fetch_all(conn)
    .await?;
    Ok(claimed.into_iter().map(|(id,)| id).collect())
}
