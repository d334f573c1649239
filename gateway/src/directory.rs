//! The gateway's own store: which roles each agent holds in which
//! prefectures (Guichet's, not the identity provider's), and the audit log
//! of what agents read and changed. PostgreSQL in production (schema
//! `gateway`), a SQLite file in the embedded default.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use guichet_access::{Agent, Role};
use guichet_kit::db::{Database, DbError, Migrations};
use guichet_kit::sql::Stmt;
use serde::Serialize;

pub const SCHEMA: &str = "gateway";

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&POSTGRES],
    sqlite: &[&SQLITE],
};

/// Audit rows kept at most this long unless configured otherwise: the
/// retention French administrations apply to access logs of personal data.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 365;

#[derive(Clone, Debug)]
pub struct Directory {
    db: Database,
}

/// One role held by one agent, in one prefecture ("" for a national role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct GrantRow {
    pub uid: String,
    pub role: String,
    pub prefecture: String,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub agent: Option<String>,
    pub operation: String,
    pub target: String,
    pub dossier: Option<String>,
    pub prefecture: Option<String>,
    pub client: String,
    pub status: i32,
    pub trace_id: String,
}

/// An entry to add to the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub agent: Option<String>,
    pub operation: String,
    pub target: String,
    pub dossier: Option<String>,
    pub prefecture: Option<String>,
    pub client: String,
    pub status: u16,
}

/// What the audit log is searched by; every part optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub agent: Option<String>,
    pub dossier: Option<String>,
    /// Rows of these prefectures only (a supervisor's); `None`: every row.
    pub prefectures: Option<Vec<String>>,
    pub since: Option<DateTime<Utc>>,
    /// Rows before this id (the next page).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Grant,
    Revoke,
}

impl Change {
    /// The audit log's operation.
    fn as_str(self) -> &'static str {
        match self {
            Change::Grant => "grant",
            Change::Revoke => "revoke",
        }
    }
}

/// Who changes a grant, and from where, for the audit log.
#[derive(Debug, Clone)]
pub struct ChangedBy {
    pub actor: String,
    pub agent: Option<String>,
    pub client: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0} is held for the whole country: grant it without a prefecture")]
    NationalRole(Role),
    #[error("{0} is held in prefectures: name one")]
    NeedsPrefecture(Role),
    #[error("{0:?} is not a department code (59, 2A, 974)")]
    BadPrefecture(String),
    #[error("{0:?} is not an agent uid")]
    BadUid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A department code: two digits, 2A/2B, or three digits overseas.
pub fn is_department_code(code: &str) -> bool {
    let b = code.as_bytes();
    match b.len() {
        2 => b.iter().all(u8::is_ascii_digit) || matches!(code, "2A" | "2B"),
        3 => b.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

pub fn check_uid(uid: &str) -> Result<(), GrantError> {
    let fine = !uid.is_empty()
        && uid.len() <= 128
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if fine {
        Ok(())
    } else {
        Err(GrantError::BadUid(uid.to_string()))
    }
}

/// The prefecture a grant of `role` is stored with: "" for a national role.
fn grant_place(role: Role, prefecture: Option<&str>) -> Result<String, GrantError> {
    match (role.is_national(), prefecture) {
        (true, None) => Ok(String::new()),
        (true, Some(_)) => Err(GrantError::NationalRole(role)),
        (false, None) => Err(GrantError::NeedsPrefecture(role)),
        (false, Some(p)) if is_department_code(p) => Ok(p.to_string()),
        (false, Some(p)) => Err(GrantError::BadPrefecture(p.to_string())),
    }
}

impl Directory {
    /// Opens (and migrates) the gateway's store, with `pool`'s statement
    /// bound and 4 connections (a grant or a look at a time).
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &std::path::Path,
        pool: guichet_kit::db::Pool,
    ) -> Result<Directory, DbError> {
        let db = Database::open(
            database_url,
            data_dir,
            SCHEMA,
            pool.with_size(4),
            &MIGRATIONS,
        )
        .await?;
        Ok(Directory { db })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The agent `uid` as Guichet knows them: no row, no role.
    pub async fn agent(&self, uid: &str) -> Result<Agent, sqlx::Error> {
        let rows: Vec<GrantRow> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT uid, role, prefecture, granted_by, granted_at \
                     FROM agent_grants WHERE uid = $1",
                )
                .bind(uid),
            )
            .await?;
        Ok(Agent::with_grants(
            uid,
            rows.into_iter()
                .filter_map(|r| match r.role.parse::<Role>() {
                    Ok(role) => Some((role, r.prefecture)),
                    Err(e) => {
                        // A role this version does not know grants nothing.
                        tracing::error!(uid = %r.uid, error = %e, "unreadable grant ignored");
                        None
                    }
                }),
        ))
    }

    /// Every grant, by agent; only those in `prefectures` when given.
    pub async fn grants(
        &self,
        prefectures: Option<&[String]>,
    ) -> Result<BTreeMap<String, Vec<GrantRow>>, sqlx::Error> {
        let rows: Vec<GrantRow> = self
            .db
            .fetch_all(Stmt::new(
                "SELECT uid, role, prefecture, granted_by, granted_at \
                 FROM agent_grants ORDER BY uid, role, prefecture",
            ))
            .await?;
        let mut by_agent: BTreeMap<String, Vec<GrantRow>> = BTreeMap::new();
        for row in rows {
            if prefectures.is_none_or(|only| only.contains(&row.prefecture)) {
                by_agent.entry(row.uid.clone()).or_default().push(row);
            }
        }
        Ok(by_agent)
    }

    /// Grants `role` to `uid` (in `prefecture`, for a prefecture's role),
    /// with its line in the audit log, in one transaction. Granting what
    /// is held already changes nothing and says so (`false`).
    pub async fn grant(
        &self,
        uid: &str,
        role: Role,
        prefecture: Option<&str>,
        by: &ChangedBy,
        now: DateTime<Utc>,
    ) -> Result<bool, GrantError> {
        self.change_grant(Change::Grant, uid, role, prefecture, by, now)
            .await
    }

    /// Revokes it; `false` when it was not held.
    pub async fn revoke(
        &self,
        uid: &str,
        role: Role,
        prefecture: Option<&str>,
        by: &ChangedBy,
        now: DateTime<Utc>,
    ) -> Result<bool, GrantError> {
        self.change_grant(Change::Revoke, uid, role, prefecture, by, now)
            .await
    }

    async fn change_grant(
        &self,
        change: Change,
        uid: &str,
        role: Role,
        prefecture: Option<&str>,
        by: &ChangedBy,
        now: DateTime<Utc>,
    ) -> Result<bool, GrantError> {
        check_uid(uid)?;
        let place = grant_place(role, prefecture)?;
        let stmt = match change {
            Change::Grant => Stmt::new(
                "INSERT INTO agent_grants (uid, role, prefecture, granted_by, granted_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(uid)
            .bind(role.as_str())
            .bind(place.as_str())
            .bind(by.actor.as_str())
            .bind(now),
            Change::Revoke => Stmt::new(
                "DELETE FROM agent_grants WHERE uid = $1 AND role = $2 AND prefecture = $3",
            )
            .bind(uid)
            .bind(role.as_str())
            .bind(place.as_str()),
        };
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let changed = c.execute(stmt).await? > 0;
        if changed {
            insert_audit(
                &mut c,
                &grant_entry(change.as_str(), uid, role, &place, by, now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), sqlx::Error> {
        let mut pooled = self.db.acquire().await?;
        insert_audit(&mut pooled.conn(), entry).await
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, sqlx::Error> {
        // Filters are bound, never spliced: `$n IS NULL OR ...` for each.
        let mut sql = String::from(
            "SELECT id, at, actor, agent, operation, target, dossier, prefecture, client, \
             status, trace_id FROM audit_log \
             WHERE ($1 IS NULL OR agent = $1) AND ($2 IS NULL OR dossier = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR id < $4)",
        );
        let places = q.prefectures.clone().unwrap_or_default();
        if q.prefectures.is_some() {
            if places.is_empty() {
                return Ok(Vec::new());
            }
            let list: Vec<String> = (0..places.len()).map(|i| format!("${}", i + 6)).collect();
            sql.push_str(&format!(" AND prefecture IN ({})", list.join(", ")));
        }
        sql.push_str(" ORDER BY id DESC LIMIT $5");
        let mut stmt = Stmt::new(sql)
            .bind(q.agent.clone())
            .bind(q.dossier.clone())
            .bind(q.since)
            .bind(q.before_id)
            .bind(i64::from(q.limit));
        for p in places {
            stmt = stmt.bind(p);
        }
        self.db.fetch_all(stmt).await
    }

    /// Removes audit rows older than `before` (retention); how many.
    pub async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        self.db
            .execute(Stmt::new("DELETE FROM audit_log WHERE at < $1").bind(before))
            .await
    }
}

/// A browser session, as the gateway checks it on each request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub uid: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A sign-in under way, kept until the provider sends the browser back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingRow {
    pub nonce: String,
    pub code_verifier: String,
    pub created_at: DateTime<Utc>,
}

/// The hash kept of a secret the browser holds: a copy of the table opens
/// no session.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(secret.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Directory {
    pub async fn save_pending_login(
        &self,
        state: &str,
        nonce: &str,
        code_verifier: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO pending_logins (state_hash, nonce, code_verifier, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(secret_hash(state))
                .bind(nonce)
                .bind(code_verifier)
                .bind(now),
            )
            .await?;
        Ok(())
    }

    /// The sign-in `state` started, once: it is gone after this.
    pub async fn take_pending_login(&self, state: &str) -> Result<Option<PendingRow>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let hash = secret_hash(state);
        let row: Option<PendingRow> = c
            .fetch_optional(
                Stmt::new(
                    "SELECT nonce, code_verifier, created_at FROM pending_logins \
                     WHERE state_hash = $1",
                )
                .bind(hash.as_str()),
            )
            .await?;
        c.execute(Stmt::new("DELETE FROM pending_logins WHERE state_hash = $1").bind(hash))
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn open_session(
        &self,
        id: &str,
        uid: &str,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO sessions (id_hash, uid, csrf_token, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(secret_hash(id))
                .bind(uid)
                .bind(csrf_token)
                .bind(now)
                .bind(expires_at),
            )
            .await?;
        Ok(())
    }

    /// The session `id` opened, unless it expired.
    pub async fn session(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, sqlx::Error> {
        let row: Option<SessionRow> = self
            .db
            .fetch_optional(
                Stmt::new("SELECT uid, csrf_token, expires_at FROM sessions WHERE id_hash = $1")
                    .bind(secret_hash(id)),
            )
            .await?;
        Ok(row.filter(|r| r.expires_at > now))
    }

    pub async fn close_session(&self, id: &str) -> Result<(), sqlx::Error> {
        self.db
            .execute(Stmt::new("DELETE FROM sessions WHERE id_hash = $1").bind(secret_hash(id)))
            .await?;
        Ok(())
    }

    /// Expired sessions and sign-ins never finished; how many.
    pub async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        logins_before: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let sessions = self
            .db
            .execute(Stmt::new("DELETE FROM sessions WHERE expires_at <= $1").bind(now))
            .await?;
        let logins = self
            .db
            .execute(
                Stmt::new("DELETE FROM pending_logins WHERE created_at < $1").bind(logins_before),
            )
            .await?;
        let codes = self
            .db
            .execute(Stmt::new("DELETE FROM person_codes WHERE expires_at <= $1").bind(now))
            .await?;
        Ok(sessions + logins + codes)
    }

    /// Keeps the code just sent for `reference`, in place of any earlier one.
    pub async fn save_person_code(
        &self,
        reference: &str,
        code_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO person_codes (reference, code_hash, wrong_tries, sent_at, expires_at) \
                     VALUES ($1, $2, 0, $3, $4) \
                     ON CONFLICT (reference) DO UPDATE SET code_hash = excluded.code_hash, \
                     wrong_tries = 0, sent_at = excluded.sent_at, expires_at = excluded.expires_at",
                )
                .bind(reference)
                .bind(code_hash)
                .bind(now)
                .bind(expires_at),
            )
            .await?;
        Ok(())
    }

    /// Whether `code_hash` is the live code of `reference`. A wrong one
    /// counts; past `max_wrong` the code is dead even if right.
    pub async fn check_person_code(
        &self,
        reference: &str,
        code_hash: &str,
        max_wrong: i32,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let row: Option<CodeRow> = c
            .fetch_optional(
                Stmt::new(
                    "SELECT code_hash, wrong_tries, expires_at FROM person_codes WHERE reference = $1",
                )
                .bind(reference),
            )
            .await?;
        let Some(row) = row.filter(|r| r.expires_at > now && r.wrong_tries < max_wrong) else {
            return Ok(false);
        };
        let right = constant_time_eq(row.code_hash.as_bytes(), code_hash.as_bytes());
        if !right {
            c.execute(
                Stmt::new(
                    "UPDATE person_codes SET wrong_tries = wrong_tries + 1 WHERE reference = $1",
                )
                .bind(reference),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(right)
    }
}

#[derive(Debug, sqlx::FromRow)]
struct CodeRow {
    code_hash: String,
    wrong_tries: i32,
    expires_at: DateTime<Utc>,
}

/// Compares two secrets without telling, by the time taken, how much of
/// them matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn grant_entry(
    operation: &str,
    uid: &str,
    role: Role,
    place: &str,
    by: &ChangedBy,
    now: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: by.actor.clone(),
        agent: by.agent.clone(),
        operation: operation.to_string(),
        target: if place.is_empty() {
            format!("{uid} {role}")
        } else {
            format!("{uid} {role} {place}")
        },
        dossier: None,
        prefecture: (!place.is_empty()).then(|| place.to_string()),
        client: by.client.clone(),
        status: 200,
    }
}

async fn insert_audit(
    c: &mut guichet_kit::sql::Conn<'_>,
    e: &AuditEntry,
) -> Result<(), sqlx::Error> {
    c.execute(
        Stmt::new(
            "INSERT INTO audit_log (at, actor, agent, operation, target, dossier, prefecture, \
             client, status, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.at)
        .bind(e.actor.as_str())
        .bind(e.agent.clone())
        .bind(e.operation.as_str())
        .bind(e.target.as_str())
        .bind(e.dossier.clone())
        .bind(e.prefecture.clone())
        .bind(e.client.as_str())
        .bind(i32::from(e.status))
        .bind(guichet_kit::telemetry::current_trace_id()),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn department_codes() {
        for (code, ok) in [
            ("59", true),
            ("2A", true),
            ("2B", true),
            ("974", true),
            ("2C", false),
            ("5", false),
            ("", false),
            ("59 ", false),
            ("9740", false),
        ] {
            assert_eq!(is_department_code(code), ok, "{code:?}");
        }
    }

    #[test]
    fn where_a_role_is_held() {
        assert_eq!(grant_place(Role::CallCentreAgent, None).unwrap(), "");
        assert!(matches!(
            grant_place(Role::CallCentreAgent, Some("59")),
            Err(GrantError::NationalRole(_))
        ));
        assert!(matches!(
            grant_place(Role::Instructor, None),
            Err(GrantError::NeedsPrefecture(_))
        ));
        assert!(matches!(
            grant_place(Role::Instructor, Some("x")),
            Err(GrantError::BadPrefecture(_))
        ));
        assert_eq!(grant_place(Role::Supervisor, Some("2A")).unwrap(), "2A");
    }
}
