//! Who is asking: the one place that turns what a request carries into a
//! [`Caller`] of the policy table.
//!
//! - No `Authorization` header: anonymous (a person proves what they may
//!   see in the request itself: a birth date, a secret link).
//! - `Authorization: Bearer <access token>`: checked against the configured
//!   OpenID provider (signature by its JWKS, issuer, audience, expiry).
//!   - an agent's token names them by `uid`; their roles and prefectures
//!     are Guichet's own, read from the directory on every request (a
//!     revocation applies at once);
//!   - a client-credentials token is a machine client: call-centre or
//!     desk software names the human agent acting in `X-Acting-Agent`
//!     (their rights apply too); a scanning station may only upload.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use guichet_access::{Caller, Machine, Station};
use guichet_identity::{KeyCache, KeyPolicy, MAX_CLOCK_SKEW, ProviderMetadata, Validator};
use guichet_kit::clock::SharedClock;

use crate::directory::Directory;
use crate::error::ApiError;
use crate::settings::{AccessSettings, BadMachineClient, ClientRole};

/// The header call-centre and desk software name the acting agent in.
pub const ACTING_AGENT_HEADER: &str = "x-acting-agent";

/// How far apart the provider's clock and ours may be.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Authenticator {
    issuer: Option<String>,
    audience: String,
    clients: HashMap<String, ClientRole>,
    directory: Directory,
    clock: SharedClock,
    http: reqwest::Client,
    /// Discovered on first use (and again after a failure), so the gateway
    /// starts while the provider is down and its routes answer 503 until
    /// it is back.
    validator: tokio::sync::OnceCell<Validator>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        settings: &AccessSettings,
        directory: Directory,
        clock: SharedClock,
    ) -> Result<Arc<Authenticator>, BadMachineClient> {
        Ok(Arc::new(Authenticator {
            issuer: settings.oidc_issuer.clone(),
            audience: settings.oidc_audience.clone(),
            clients: settings.clients()?,
            directory,
            clock,
            http: reqwest::Client::builder()
                .timeout(guichet_identity::FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            validator: tokio::sync::OnceCell::new(),
        }))
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    async fn validator(&self) -> Result<&Validator, ApiError> {
        let Some(issuer) = &self.issuer else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("Authorization"),
                "no identity provider is configured here: nobody can sign in",
            ));
        };
        self.validator
            .get_or_try_init(|| async {
                let metadata = ProviderMetadata::discover(&self.http, issuer)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, %issuer, "cannot read the identity provider's discovery document");
                        unavailable()
                    })?;
                let keys = KeyCache::new(
                    self.http.clone(),
                    metadata.jwks_uri.clone(),
                    KeyPolicy::default(),
                );
                Validator::new(
                    &metadata,
                    keys,
                    self.clock.clone(),
                    CLOCK_SKEW.min(MAX_CLOCK_SKEW),
                )
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot check tokens");
                    unavailable()
                })
            })
            .await
    }

    /// Who sent `headers`; a token that does not check is a 401, a
    /// provider that cannot be reached a 503.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Some("Authorization"),
                    "must be `Bearer <access token>`",
                )
            })?;
        let validator = self.validator().await?;
        let claims = validator
            .access_token(token, &self.audience)
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    tracing::warn!(error = %e, "cannot check a token");
                    unavailable()
                } else {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        Some("Authorization"),
                        e.to_string(),
                    )
                }
            })?;
        if claims.is_client_token() {
            return self.machine(&claims.sub, headers).await;
        }
        let uid = claims.uid.clone().unwrap_or_else(|| claims.sub.clone());
        Ok(Caller::Agent(self.agent(&uid).await?))
    }

    async fn agent(&self, uid: &str) -> Result<guichet_access::Agent, ApiError> {
        self.directory.agent(uid).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read an agent's roles");
            unavailable()
        })
    }

    async fn machine(&self, client_id: &str, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let acting = crate::extract::header_text(headers, ACTING_AGENT_HEADER, "X-Acting-Agent")?
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        match self.clients.get(client_id) {
            Some(ClientRole::ScanningStation) => Ok(Caller::Station(Station {
                client_id: client_id.to_string(),
            })),
            Some(ClientRole::Software(kind)) => {
                let acting = match acting {
                    Some(uid) => Some(self.agent(&uid).await?),
                    None => None,
                };
                Ok(Caller::Machine(Machine {
                    client_id: client_id.to_string(),
                    kind: *kind,
                    acting,
                }))
            }
            None => {
                tracing::warn!(client_id, "a client token from a client not configured");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    Some("Authorization"),
                    "this client is not one Guichet knows (GUICHET_MACHINE_CLIENTS)",
                ))
            }
        }
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "sign-in cannot be checked right now; try again shortly",
    )
}
