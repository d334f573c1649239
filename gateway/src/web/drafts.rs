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

/// Crockford's base 32: no I, L, O or U, so a code read aloud or copied
/// by hand is not misread.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new draft's code: 16 characters (80 random bits) in groups of four,
/// short enough to write down, too many to guess.
pub fn new_secret() -> String {
    let mut out = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[rand::random_range(0..32usize)]));
    }
    out
}

/// A code as a person typed it (spaces, small letters, O for 0, I or L
/// for 1), in the form links hold; `None` when it cannot be one.
pub fn normalize(typed: &str) -> Option<String> {
    let chars: Vec<char> = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    if chars.len() != 16 || chars.iter().any(|c| !ALPHABET.contains(&(*c as u8))) {
        return None;
    }
    Some(
        chars
            .chunks(4)
            .map(|g| g.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-"),
    )
}

/// A draft's secret: what its link holds.
pub fn is_secret(s: &str) -> bool {
    normalize(s).as_deref() == Some(s)
}

#[derive(sqlx::FromRow)]
struct Row {
    data: String,
}

/// Starts a draft; returns its secret.
pub async fn create(dir: &Directory, now: DateTime<Utc>) -> Result<String, sqlx::Error> {
    let secret = new_secret();
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
    write(
        dir,
        "INSERT INTO web_drafts (id, data, updated_at) VALUES ($1, $2, $3)",
        secret,
        draft,
        now,
    )
    .await
}

/// `sql` with the draft's key, its JSON and the time, in that order.
async fn write(
    dir: &Directory,
    sql: &'static str,
    secret: &str,
    draft: &Draft,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_string(draft).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    dir.db()
        .execute(Stmt::new(sql).bind(key(secret)).bind(data).bind(now))
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
    // A stored draft that no longer reads is damaged data: said, not
    // taken for a draft that does not exist.
    row.map(|r| serde_json::from_str(&r.data))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub async fn save(
    dir: &Directory,
    secret: &str,
    draft: &Draft,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    write(
        dir,
        "UPDATE web_drafts SET data = $2, updated_at = $3 WHERE id = $1",
        secret,
        draft,
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_back_as_written() {
        let code = new_secret();
        assert!(is_secret(&code), "{code}");
        assert_eq!(code.len(), 19);
        let table = [
            ("ABCD-EFGH-JKMN-PQRS", Some("ABCD-EFGH-JKMN-PQRS")),
            ("abcd efgh jkmn pqrs", Some("ABCD-EFGH-JKMN-PQRS")),
            ("ABCDEFGHJKMNPQRS", Some("ABCD-EFGH-JKMN-PQRS")),
            ("O0Il-0000-0000-0000", Some("0011-0000-0000-0000")),
            ("ABCD-EFGH-JKMN-PQRU", None),
            ("ABCD-EFGH-JKMN", None),
            ("", None),
        ];
        for (typed, expected) in table {
            assert_eq!(normalize(typed).as_deref(), expected, "{typed:?}");
        }
        assert!(
            !is_secret("abcd-efgh-jkmn-pqrs"),
            "links hold the canonical form"
        );
    }
}
