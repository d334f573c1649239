//! Agents, their roles, and the audit log (`/api/v1/admin/…`): supervisors
//! grant and revoke the roles of their prefectures; operators and
//! supervisors read the audit log. The national roles, supervisors and
//! operators are granted on the servers with `guichet agents grant`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use guichet_access::{Facts, Role};
use guichet_kit::clock::SharedClock;
use guichet_kit::shutdown::Shutdown;
use serde::{Deserialize, Serialize};

use crate::directory::{AuditQuery, AuditRow, ChangedBy, Directory, GrantError, GrantRow};
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::policy::Access;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/agents", get(list_agents))
        .route(
            "/api/v1/admin/agents/{uid}/grants/{role}/{prefecture}",
            put(grant).delete(revoke),
        )
        .route("/api/v1/admin/audit", get(audit_log))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsQuery {
    pub prefecture: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AgentJson {
    pub uid: String,
    pub grants: Vec<GrantJson>,
}

#[derive(Debug, Serialize)]
pub struct GrantJson {
    pub role: String,
    /// The department code; absent for a national role.
    pub prefecture: Option<String>,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

impl From<GrantRow> for GrantJson {
    fn from(r: GrantRow) -> Self {
        GrantJson {
            role: r.role,
            prefecture: (!r.prefecture.is_empty()).then_some(r.prefecture),
            granted_by: r.granted_by,
            granted_at: r.granted_at,
        }
    }
}

/// The prefectures the caller may see: `None` for everything (an
/// operator), else their own, each judged against the table.
fn visible_prefectures(
    access: &Access,
    asked: Option<&str>,
) -> Result<Option<Vec<String>>, ApiError> {
    if let Some(p) = asked {
        department(p)?;
        access.allow(&Facts::none().prefecture(p))?;
        return Ok(Some(vec![p.to_string()]));
    }
    if access.allow(&Facts::none()).is_ok() {
        return Ok(None);
    }
    let own = access.own_prefectures();
    for p in &own {
        access.allow(&Facts::none().prefecture(p))?;
    }
    if own.is_empty() {
        access.allow(&Facts::none())?;
    }
    Ok(Some(own))
}

fn department(code: &str) -> Result<(), ApiError> {
    if crate::directory::is_department_code(code) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("prefecture"),
            "must be a department code (59, 2A, 974)",
        ))
    }
}

fn db_unavailable(e: &sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "the gateway's store failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the directory is unavailable; try again shortly",
    )
}

/// `GET /api/v1/admin/agents`: who holds which role where.
pub async fn list_agents(
    State(state): State<AppState>,
    access: Access,
    QueryParams(q): QueryParams<AgentsQuery>,
) -> Result<Json<Vec<AgentJson>>, ApiError> {
    let places = visible_prefectures(&access, q.prefecture.as_deref())?;
    let grants = state
        .auth
        .directory()
        .grants(places.as_deref())
        .await
        .map_err(|e| db_unavailable(&e))?;
    Ok(Json(
        grants
            .into_iter()
            .map(|(uid, rows)| AgentJson {
                uid,
                grants: rows.into_iter().map(GrantJson::from).collect(),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize)]
pub struct GrantChange {
    pub uid: String,
    pub role: String,
    pub prefecture: String,
    /// False when the grant was already as asked.
    pub changed: bool,
}

async fn change(
    state: &AppState,
    access: &Access,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    (uid, role, prefecture): (String, String, String),
    granting: bool,
) -> Result<Json<GrantChange>, ApiError> {
    let parsed: Role = role.parse().map_err(|e: guichet_access::UnknownRole| {
        ApiError::new(StatusCode::BAD_REQUEST, Some("role"), e.to_string())
    })?;
    department(&prefecture)?;
    crate::directory::check_uid(&uid).map_err(grant_error)?;
    access.allow(&Facts::none().prefecture(&prefecture))?;
    if !parsed.grantable_by_supervisor() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some("role"),
            format!("{parsed} is granted on the servers, with `guichet agents grant`"),
        ));
    }
    let by = ChangedBy {
        actor: access.caller().actor(),
        agent: access.agent_uid().map(str::to_string),
        client: client.map_or_else(|| "unknown".to_string(), |c| c.0.0.ip().to_string()),
    };
    let directory = state.auth.directory();
    let now = state.clock.now();
    let changed = if granting {
        directory
            .grant(&uid, parsed, Some(&prefecture), &by, now)
            .await
    } else {
        directory
            .revoke(&uid, parsed, Some(&prefecture), &by, now)
            .await
    }
    .map_err(grant_error)?;
    Ok(Json(GrantChange {
        uid,
        role: parsed.to_string(),
        prefecture,
        changed,
    }))
}

fn grant_error(e: GrantError) -> ApiError {
    match e {
        GrantError::Db(e) => db_unavailable(&e),
        GrantError::BadUid(_) => ApiError::new(StatusCode::BAD_REQUEST, Some("uid"), e.to_string()),
        GrantError::BadPrefecture(_) | GrantError::NeedsPrefecture(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, Some("prefecture"), e.to_string())
        }
        GrantError::NationalRole(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, Some("role"), e.to_string())
        }
    }
}

/// `PUT /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}`.
pub async fn grant(
    State(state): State<AppState>,
    access: Access,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<GrantChange>, ApiError> {
    change(&state, &access, client, path, true).await
}

/// `DELETE /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}`.
pub async fn revoke(
    State(state): State<AppState>,
    access: Access,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<GrantChange>, ApiError> {
    change(&state, &access, client, path, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub agent: Option<String>,
    pub dossier: Option<String>,
    pub prefecture: Option<String>,
    /// RFC 3339: rows at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Rows older than this id: the next page.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

const AUDIT_PAGE: u32 = 100;
const AUDIT_PAGE_MAX: u32 = 1000;

/// `GET /api/v1/admin/audit`: newest first, a page at a time.
pub async fn audit_log(
    State(state): State<AppState>,
    access: Access,
    QueryParams(q): QueryParams<AuditParams>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let limit = q.limit.unwrap_or(AUDIT_PAGE);
    if limit == 0 || limit > AUDIT_PAGE_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("limit"),
            format!("must be between 1 and {AUDIT_PAGE_MAX}"),
        ));
    }
    if let Some(agent) = &q.agent {
        crate::directory::check_uid(agent).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("agent"),
                "is not an agent uid",
            )
        })?;
    }
    if let Some(dossier) = &q.dossier {
        guichet_dossier::Reference::parse(dossier).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("dossier"),
                "is not a dossier reference",
            )
        })?;
    }
    let prefectures = visible_prefectures(&access, q.prefecture.as_deref())?;
    let rows = state
        .auth
        .directory()
        .audit_log(&AuditQuery {
            agent: q.agent,
            dossier: q.dossier,
            prefectures,
            since: q.since,
            before_id: q.before,
            limit,
        })
        .await
        .map_err(|e| db_unavailable(&e))?;
    Ok(Json(rows))
}

/// Removes audit rows past retention, ended sessions and sign-ins never
/// finished, once an hour.
pub async fn purge_forever(
    directory: Directory,
    clock: SharedClock,
    retention_days: u32,
    shutdown: Shutdown,
) {
    loop {
        let before = clock.now() - chrono::Duration::days(i64::from(retention_days.max(1)));
        match directory.purge_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "audit rows past retention removed"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed, will retry"),
        }
        let now = clock.now();
        let stale_logins =
            now - chrono::Duration::from_std(crate::session::LOGIN_TIMEOUT).unwrap_or_default();
        if let Err(e) = directory.purge_sessions(now, stale_logins).await {
            tracing::warn!(error = %e, "removing ended sessions failed, will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
