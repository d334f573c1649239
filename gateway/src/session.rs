//! Agents' browser sign-in: the authorization code flow with PKCE against
//! the configured OpenID provider, and a server-side session.
//!
//! - `GET /auth/login` sends the browser to the provider (state, nonce and
//!   PKCE verifier kept server-side, by a hash of the state);
//! - `GET /auth/callback` checks what comes back (state, issuer, the code
//!   traded for tokens, the ID token's signature, audience and nonce) and
//!   opens a session: a random id in a `Secure; HttpOnly; SameSite=Lax`
//!   cookie, only its hash stored, with a CSRF token;
//! - `GET /auth/session` says who is signed in, with the CSRF token that
//!   every state-changing request made with the session must carry in
//!   `X-CSRF-Token` (checked in `caller`);
//! - `POST /auth/logout` closes it.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use guichet_identity::{Callback, LoginClient, PendingLogin, Secret};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::policy::Access;
use crate::state::AppState;

/// The session cookie. `__Host-`: only set over HTTPS-or-loopback, for this
/// host alone, path `/`.
pub const SESSION_COOKIE: &str = "__Host-guichet-session";
/// The same cookie, expired: what signing out sets.
pub const SESSION_COOKIE_CLEARED: &str =
    "__Host-guichet-session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0";
/// The header a state-changing request made with a session must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A sign-in not finished within this time is forgotten.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/session", get(session))
        .route("/auth/logout", post(logout))
}

/// A random secret for the browser (session id, CSRF token).
pub fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session id a request's cookies carry.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

async fn client(state: &AppState) -> Result<LoginClient, ApiError> {
    state.auth.login_client().await
}

fn store_error(e: &sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "the session store failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "sign-in is unavailable; try again shortly",
    )
}

/// `GET /auth/login`: to the provider.
pub async fn login(State(state): State<AppState>) -> Result<Response, ApiError> {
    let client = client(&state).await?;
    let (url, pending) = client.start();
    state
        .auth
        .directory()
        .save_pending_login(
            pending.state.expose(),
            pending.nonce.expose(),
            pending.code_verifier.expose(),
            state.clock.now(),
        )
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Redirect::to(url.as_str()).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn refused(problem: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Some("sign-in"), problem)
}

/// `GET /auth/callback`: back from the provider; opens the session.
pub async fn callback(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<CallbackQuery>,
) -> Result<Response, ApiError> {
    let state_param = q
        .state
        .clone()
        .ok_or_else(|| refused("the provider's answer has no state"))?;
    let directory = state.auth.directory();
    let pending = directory
        .take_pending_login(&state_param)
        .await
        .map_err(|e| store_error(&e))?
        .filter(|p| {
            state.clock.now() - p.created_at
                < chrono::Duration::from_std(LOGIN_TIMEOUT).unwrap_or_default()
        })
        .ok_or_else(|| refused("this sign-in is unknown, used or too old: sign in again"))?;
    let client = client(&state).await?;
    let pending = PendingLogin {
        state: Secret::new(state_param.clone()),
        nonce: Secret::new(pending.nonce),
        code_verifier: Secret::new(pending.code_verifier),
    };
    let answer = Callback {
        code: q.code.map(Secret::new),
        state: Some(state_param),
        iss: q.iss,
        error: q.error,
        error_description: q.error_description,
    };
    let signed_in = client.finish(&pending, &answer).await.map_err(|e| {
        tracing::warn!(error = %e, "a sign-in was refused");
        refused(e.to_string())
    })?;
    let id = random_secret();
    let csrf = random_secret();
    let now = state.clock.now();
    let hours = i64::from(state.auth.session_hours().max(1));
    directory
        .open_session(
            &id,
            &signed_in.identity.uid,
            &csrf,
            now,
            now + chrono::Duration::hours(hours),
        )
        .await
        .map_err(|e| store_error(&e))?;
    tracing::info!(uid = %signed_in.identity.uid, "an agent signed in");
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        hours * 3600
    );
    // To the workspace's door, which now shows what the roles open.
    let mut response = Redirect::to("/agents").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| refused("cannot set the session"))?,
    );
    Ok(response)
}

#[derive(Debug, Serialize)]
pub struct SessionJson {
    pub uid: String,
    /// Roles and where they are held.
    pub roles: Vec<String>,
    /// To send back in `X-CSRF-Token` with every state-changing request.
    pub csrf_token: String,
}

/// `GET /auth/session`: who is signed in.
pub async fn session(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
) -> Result<Json<SessionJson>, ApiError> {
    let id = session_id(&headers).ok_or_else(|| refused("not signed in"))?;
    let row = state
        .auth
        .directory()
        .session(&id, state.clock.now())
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| refused("the session has ended: sign in again"))?;
    let roles = match access.caller() {
        guichet_access::Caller::Agent(agent) => agent
            .grants
            .iter()
            .flat_map(|(role, places)| {
                if places.is_empty() {
                    vec![role.to_string()]
                } else {
                    places.iter().map(|p| format!("{role} {p}")).collect()
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Json(SessionJson {
        uid: row.uid,
        roles,
        csrf_token: row.csrf_token,
    }))
}

/// `POST /auth/logout`: the session ends here, whatever the cookie says.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = session_id(&headers) {
        state
            .auth
            .directory()
            .close_session(&id)
            .await
            .map_err(|e| store_error(&e))?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(SESSION_COOKIE_CLEARED),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-guichet-session=abc; b=2"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        let mut other = HeaderMap::new();
        other.insert(
            header::COOKIE,
            HeaderValue::from_static("guichet-session=abc"),
        );
        assert_eq!(session_id(&other), None);
    }
}
