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

use axum::http::{HeaderMap, Method, StatusCode, header};
use guichet_access::{Caller, Machine, Station};
use guichet_identity as identity;
use guichet_identity::{KeyCache, KeyPolicy, MAX_CLOCK_SKEW, ProviderMetadata, Validator};
use guichet_kit::clock::SharedClock;

use crate::directory::{Directory, constant_time_eq};
use crate::error::ApiError;
use crate::settings::{AccessSettings, BadMachineClient, ClientRole};

/// The header call-centre and desk software name the acting agent in.
pub const ACTING_AGENT_HEADER: &str = "x-acting-agent";

/// How far apart the provider's clock and ours may be.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Authenticator {
    issuer: Option<String>,
    audience: String,
    client_id: String,
    client_secret: Option<identity::Secret>,
    redirect_uri: String,
    session_hours: u32,
    clients: HashMap<String, ClientRole>,
    directory: Directory,
    clock: SharedClock,
    http: reqwest::Client,
    /// Discovered on first use (and again after a failure), so the gateway
    /// starts while the provider is down and its routes answer 503 until
    /// it is back.
    validator: tokio::sync::OnceCell<(Validator, ProviderMetadata)>,
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
    /// `public_url`: where browsers reach the gateway (the sign-in comes
    /// back to `<public_url>/auth/callback`).
    pub fn new(
        settings: &AccessSettings,
        public_url: &str,
        directory: Directory,
        clock: SharedClock,
    ) -> Result<Arc<Authenticator>, BadMachineClient> {
        Ok(Arc::new(Authenticator {
            issuer: settings.oidc_issuer.clone(),
            audience: settings.oidc_audience.clone(),
            client_id: settings.oidc_client_id.clone(),
            client_secret: settings
                .oidc_client_secret
                .clone()
                .map(identity::Secret::new),
            redirect_uri: format!("{}/auth/callback", public_url.trim_end_matches('/')),
            session_hours: settings.session_hours,
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

    pub fn session_hours(&self) -> u32 {
        self.session_hours
    }

    /// The browser sign-in's client, for the configured provider.
    pub async fn login_client(&self) -> Result<identity::LoginClient, ApiError> {
        let Some(secret) = &self.client_secret else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                None,
                "browser sign-in is not configured here (GUICHET_OIDC_CLIENT_SECRET)",
            ));
        };
        let (validator, metadata) = self.provider().await?;
        identity::LoginClient::new(
            metadata.clone(),
            self.http.clone(),
            self.client_id.clone(),
            secret.clone(),
            self.redirect_uri.clone(),
            validator.clone(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot sign in with the provider");
            unavailable()
        })
    }

    async fn validator(&self) -> Result<&Validator, ApiError> {
        Ok(&self.provider().await?.0)
    }

    async fn provider(&self) -> Result<&(Validator, ProviderMetadata), ApiError> {
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
                let validator = Validator::new(
                    &metadata,
                    keys,
                    self.clock.clone(),
                    CLOCK_SKEW.min(MAX_CLOCK_SKEW),
                )
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot check tokens");
                    unavailable()
                })?;
                Ok((validator, metadata))
            })
            .await
    }

    /// Who sent `headers`, and the CSRF token of the browser session they
    /// came with (what the workspace's forms carry); a token that does not
    /// check is a 401, a provider that cannot be reached a 503. A browser
    /// session must send its CSRF token with every request that changes
    /// something.
    pub async fn caller(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(Caller, Option<String>), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return self.session_caller(method, headers).await;
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
            return Ok((self.machine(&claims.sub, headers).await?, None));
        }
        let uid = claims.uid.clone().unwrap_or_else(|| claims.sub.clone());
        Ok((Caller::Agent(self.agent(&uid).await?), None))
    }

    async fn session_caller(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(Caller, Option<String>), ApiError> {
        let Some(id) = crate::session::session_id(headers) else {
            return Ok((Caller::Anonymous, None));
        };
        let Some(session) = self
            .directory
            .session(&id, self.clock.now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read a session");
                unavailable()
            })?
        else {
            // Ended or unknown: as if there were none.
            return Ok((Caller::Anonymous, None));
        };
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = headers
                .get(crate::session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    Some("X-CSRF-Token"),
                    "a change made with a session must carry its CSRF token",
                ));
            }
        }
        let agent = self.agent(&session.uid).await?;
        Ok((Caller::Agent(agent), Some(session.csrf_token)))
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
