//! Filings being written on the pages, saved at each step in the gateway's
//! store so that a person can stop and come back by their link (on another
//! device too). The link holds a random secret; the store keeps its hash.

use chrono::{DateTime, Duration, Utc};
use guichet_dossier::RawFiling;
use guichet_kit::sql::Stmt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::directory::Directory;

/// How long a draft is kept after its last change.
pub const KEPT_DAYS: i64 = 30;

/// A document uploaded on the documents step, already checked and kept in
/// the document store under its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DraftDocument {
    pub kind: String,
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: u64,
    pub filename: Option<String>,
}

/// What the filing's receipt said, once filed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filed {
    pub reference: String,
    pub legal_filing_date: String,
    pub verification_code: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Draft {
    pub filing: RawFiling,
    #[serde(default)]
    pub documents: Vec<DraftDocument>,
    /// The key the filing is sent under, so that sending twice files once.
    pub idempotency_key: String,
    #[serde(default)]
    pub filed: Option<Filed>,
}

fn key(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A draft's secret: what its link holds.
pub fn is_secret(s: &str) -> bool {
    (20..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(sqlx::FromRow)]
struct Row {
    data: String,
}

/// Starts a draft; returns its secret.
pub async fn create(dir: &Directory, now: DateTime<Utc>) -> Result<String, sqlx::Error> {
    let secret = crate::session::random_secret();
    let draft = Draft {
        idempotency_key: format!("web-draft:{}", uuid::Uuid::new_v4()),
        ..Draft::default()
    };
    dir.db()
        .execute(
            Stmt::new("DELETE FROM web_drafts WHERE updated_at < $1")
                .bind(now - Duration::days(KEPT_DAYS)),
        )
        .await?;
    save_new(dir, &secret, &draft, now).await?;
    Ok(secret)
}

async fn save_new(
    dir: &Directory,
    secret: &str,
    draft: &Draft,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_string(draft).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    dir.db()
        .execute(
            Stmt::new("INSERT INTO web_drafts (id, data, updated_at) VALUES ($1, $2, $3)")
                .bind(key(secret))
                .bind(data)
                .bind(now),
        )
        .await?;
    Ok(())
}

/// The draft the secret opens, if it is still kept.
pub async fn load(
    dir: &Directory,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<Draft>, sqlx::Error> {
    if !is_secret(secret) {
        return Ok(None);
    }
    let row: Option<Row> = dir
        .db()
        .fetch_optional(
            Stmt::new("SELECT data FROM web_drafts WHERE id = $1 AND updated_at >= $2")
                .bind(key(secret))
                .bind(now - Duration::days(KEPT_DAYS)),
        )
        .await?;
    Ok(row.and_then(|r| serde_json::from_str(&r.data).ok()))
}

pub async fn save(
    dir: &Directory,
    secret: &str,
    draft: &Draft,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_string(draft).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    dir.db()
        .execute(
            Stmt::new("UPDATE web_drafts SET data = $2, updated_at = $3 WHERE id = $1")
                .bind(key(secret))
                .bind(data)
                .bind(now),
        )
        .await?;
    Ok(())
}
