//! Who is asking. Every handler that acts for an agent takes an `Agent`;
//! this is the one place that decides who that is.
//!
//! Today agents name themselves with the `X-Agent-Id` header, which the
//! agents' front-end sets after sign-in; identity and access (OpenID
//! Connect, roles, prefectures) plug in here.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::extract::header_text;

pub const AGENT_HEADER: &str = "x-agent-id";

/// The agent a request acts for; a request without one is refused with 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        header_text(&parts.headers, AGENT_HEADER, "X-Agent-Id")?
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Agent(v.to_string()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Some("X-Agent-Id"),
                    "agents must say who they are",
                )
            })
    }
}
