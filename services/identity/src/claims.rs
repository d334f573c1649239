//! What a checked token says, parsed: a bearer access token's caller, and
//! the agent an ID token names (ProConnect's claims).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A checked access token (RFC 9068 shape). A client-credentials token has
/// `sub == client_id`; a token issued to a signed-in agent has the agent's
/// `sub` (and `uid` where the provider adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub client_id: Option<String>,
    pub uid: Option<String>,
    pub scope: Option<String>,
    pub jti: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl AccessClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }

    /// Issued to a machine client for itself (client credentials), not to
    /// an agent through one.
    pub fn is_client_token(&self) -> bool {
        self.client_id.as_deref() == Some(self.sub.as_str())
    }
}

/// The agent an ID token names. `uid` is the agent's id at their identity
/// provider; `sub` is the federation's, stable for one agent and client.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub sub: String,
    pub uid: String,
    pub email: String,
    pub given_name: String,
    pub usual_name: String,
    pub siret: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Names and e-mail stay out of logs.
impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("sub", &self.sub)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

/// The claims as the token has them, before the required ones are checked.
#[derive(Deserialize)]
pub(crate) struct RawAccess {
    pub sub: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(serde::de::IgnoredAny),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(crate) struct RawId {
    pub sub: String,
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub usual_name: Option<String>,
    #[serde(default)]
    pub siret: Option<String>,
}
