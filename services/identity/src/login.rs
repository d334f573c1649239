//! The browser sign-in's building blocks (authorization code flow with
//! PKCE, RFC 7636, S256): [`LoginClient::start`] gives the URL to send the
//! browser to and what the server keeps until it comes back (in the
//! server-side session, never in the browser); [`LoginClient::finish`]
//! checks the callback, trades the code for tokens and checks the ID token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::endpoint::token_request;
use crate::{
    AgentIdentity, DiscoveryError, ExchangeError, ProviderMetadata, Secret, TokenError, Validator,
};

/// ProConnect's scopes for what Guichet needs to know of an agent.
pub const AGENT_SCOPES: &str = "openid uid email given_name usual_name siret";

/// What the server keeps between sending the browser to the provider and
/// its return. Single use: drop it once [`LoginClient::finish`] ran.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// Sent as `state`, compared on return (CSRF on the callback).
    pub state: Secret,
    /// Sent as `nonce`, found again in the ID token (no replayed token).
    pub nonce: Secret,
    /// The PKCE verifier; only its S256 hash went out.
    pub code_verifier: Secret,
}

/// The callback's query string (`?code=..&state=..&iss=..`, or `?error=..`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    #[serde(default)]
    pub code: Option<Secret>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[derive(Debug)]
pub struct SignedIn {
    pub identity: AgentIdentity,
    pub access_token: Secret,
    pub id_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the provider refused the sign-in: {error}")]
    Provider {
        error: String,
        description: Option<String>,
    },
    #[error("the callback has no {0}")]
    MissingParameter(&'static str),
    #[error("the callback's state is not this sign-in's")]
    StateMismatch,
    #[error("the callback comes from another issuer")]
    IssuerMismatch,
    #[error("cannot trade the code for tokens")]
    Exchange(#[from] ExchangeError),
    #[error("the token endpoint sent no ID token")]
    NoIdToken,
    #[error("the ID token is not valid")]
    IdToken(#[from] TokenError),
}

/// The gateway as an OpenID client of one provider.
#[derive(Debug, Clone)]
pub struct LoginClient {
    metadata: ProviderMetadata,
    authorization_endpoint: reqwest::Url,
    http: reqwest::Client,
    client_id: String,
    client_secret: Secret,
    redirect_uri: String,
    scope: String,
    validator: Validator,
}

impl LoginClient {
    /// `validator` checks the ID tokens; it must be for the same issuer.
    pub fn new(
        metadata: ProviderMetadata,
        http: reqwest::Client,
        client_id: impl Into<String>,
        client_secret: Secret,
        redirect_uri: impl Into<String>,
        validator: Validator,
    ) -> Result<LoginClient, DiscoveryError> {
        let metadata = metadata.checked(validator.issuer())?;
        let authorization_endpoint = reqwest::Url::parse(&metadata.authorization_endpoint)
            .map_err(|_| DiscoveryError::InsecureEndpoint {
                field: "authorization_endpoint",
                url: metadata.authorization_endpoint.clone(),
            })?;
        Ok(LoginClient {
            metadata,
            authorization_endpoint,
            http,
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            scope: AGENT_SCOPES.to_string(),
            validator,
        })
    }

    /// Scopes other than ProConnect's agent scopes.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The URL to send the browser to, and what to keep until it returns.
    pub fn start(&self) -> (reqwest::Url, PendingLogin) {
        let pending = PendingLogin {
            state: Secret::new(random_token()),
            nonce: Secret::new(random_token()),
            code_verifier: Secret::new(random_token()),
        };
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", pending.state.expose())
            .append_pair("nonce", pending.nonce.expose())
            .append_pair("code_challenge", &challenge(&pending.code_verifier))
            .append_pair("code_challenge_method", "S256");
        (url, pending)
    }

    /// Checks the callback against `pending`, trades the code for tokens
    /// and checks the ID token.
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        callback: &Callback,
    ) -> Result<SignedIn, LoginError> {
        let state = callback
            .state
            .as_deref()
            .ok_or(LoginError::MissingParameter("state"))?;
        if !same(state, pending.state.expose()) {
            return Err(LoginError::StateMismatch);
        }
        if let Some(error) = &callback.error {
            return Err(LoginError::Provider {
                error: error.clone(),
                description: callback.error_description.clone(),
            });
        }
        // RFC 9207: a provider that names itself must be this one (no
        // mix-up with another provider's code).
        match &callback.iss {
            Some(iss) if iss != &self.metadata.issuer => return Err(LoginError::IssuerMismatch),
            None if self.metadata.authorization_response_iss_parameter_supported => {
                return Err(LoginError::MissingParameter("iss"));
            }
            _ => {}
        }
        let code = callback
            .code
            .as_ref()
            .ok_or(LoginError::MissingParameter("code"))?;
        let tokens = token_request(
            &self.http,
            &self.metadata,
            &self.client_id,
            &self.client_secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.expose()),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", pending.code_verifier.expose()),
            ],
        )
        .await?;
        let id_token = tokens.id_token.ok_or(LoginError::NoIdToken)?;
        let identity = self
            .validator
            .id_token(id_token.expose(), &self.client_id, pending.nonce.expose())
            .await?;
        Ok(SignedIn {
            identity,
            access_token: tokens.access_token,
            id_token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
        })
    }
}

/// 256 random bits, URL-safe: state, nonce and PKCE verifier alike (a
/// verifier of 43 characters, as RFC 7636 asks at least).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a verifier.
fn challenge(verifier: &Secret) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

/// Equal, in a time that does not tell how much of `a` matched.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_s256() {
        // RFC 7636, appendix B.
        let verifier = Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_are_fresh_and_long_enough() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }
}
