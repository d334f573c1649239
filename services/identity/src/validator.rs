//! Checking a token: the key and signature, then issuer and audience (by
//! `jsonwebtoken`), then the times against the injected clock with a
//! bounded skew. Errors say what was wrong, never what the token held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use guichet_kit::clock::SharedClock;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::claims::{Audience, RawAccess, RawId};
use crate::keys::Lookup;
use crate::{AccessClaims, AgentIdentity, KeyCache, KeysError, ProviderMetadata};

/// The algorithms accepted: what ProConnect and common providers sign
/// with. No `none`, no HMAC (a public key must never serve as a secret).
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// The largest clock skew a validator accepts: beyond it, an expired token
/// would live on for too long.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("a clock skew of {0:?} is more than the {MAX_CLOCK_SKEW:?} allowed")]
    SkewTooLarge(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with {0}, which is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the ID token's nonce is not this sign-in's")]
    NonceMismatch,
    /// The keys could not be read: the token could not be checked (503,
    /// not 401).
    #[error("the issuer's keys cannot be read")]
    KeysUnavailable(#[source] KeysError),
}

impl TokenError {
    /// Whether the token was not judged at all (the provider unreachable):
    /// a 503 / `UNAVAILABLE`, where every other error is a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::KeysUnavailable(_))
    }
}

/// Times every token carries, checked here against the injected clock.
#[derive(Deserialize)]
struct Timed<T> {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(flatten)]
    claims: T,
}

/// Checks tokens of one issuer. Clones share the key cache.
#[derive(Clone)]
pub struct Validator {
    issuer: String,
    keys: KeyCache,
    clock: SharedClock,
    skew: Duration,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

impl Validator {
    pub fn new(
        metadata: &ProviderMetadata,
        keys: KeyCache,
        clock: SharedClock,
        skew: Duration,
    ) -> Result<Validator, ValidatorError> {
        if skew > MAX_CLOCK_SKEW {
            return Err(ValidatorError::SkewTooLarge(skew));
        }
        // One crypto backend is compiled in; saying so explicitly keeps
        // jsonwebtoken from guessing should another crate enable a second.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        Ok(Validator {
            issuer: metadata.issuer.clone(),
            keys,
            clock,
            skew,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// A bearer access token for the API whose audience is `audience`.
    pub async fn access_token(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<AccessClaims, TokenError> {
        let (raw, expires_at): (RawAccess, _) = self.verify(token, audience, false).await?;
        Ok(AccessClaims {
            sub: raw.sub,
            client_id: raw.client_id,
            uid: raw.uid,
            scope: raw.scope,
            jti: raw.jti,
            expires_at,
        })
    }

    /// An ID token from the sign-in that sent `nonce`, for `client_id`
    /// (OpenID Connect Core 3.1.3.7), with ProConnect's claims.
    pub async fn id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<AgentIdentity, TokenError> {
        let (raw, expires_at): (RawId, _) = self.verify(token, client_id, true).await?;
        // Several audiences: the token must say it was issued to us.
        if let Audience::Many(all) = &raw.aud
            && all.len() > 1
            && raw.azp.as_deref() != Some(client_id)
        {
            return Err(TokenError::WrongAudience);
        }
        if !raw
            .nonce
            .as_deref()
            .is_some_and(|n| crate::login::same(n, nonce))
        {
            return Err(TokenError::NonceMismatch);
        }
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| TokenError::MissingClaim(name.to_string()))
        };
        Ok(AgentIdentity {
            uid: required(raw.uid, "uid")?,
            email: required(raw.email, "email")?,
            given_name: required(raw.given_name, "given_name")?,
            usual_name: required(raw.usual_name, "usual_name")?,
            siret: raw.siret,
            sub: raw.sub,
            expires_at,
        })
    }

    async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        needs_iat: bool,
    ) -> Result<(T, DateTime<Utc>), TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "{:?}",
                header.alg
            )));
        }
        let key = match self.keys.key_for(header.kid.as_deref(), header.alg).await {
            Ok(Lookup::Found(key)) => key,
            Ok(Lookup::Unknown) => return Err(TokenError::UnknownKey),
            Err(e) => return Err(TokenError::KeysUnavailable(e)),
        };
        let mut validation = Validation::new(key.alg);
        // Times are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        let data =
            decode::<Timed<T>>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => {
                    TokenError::UnsupportedAlgorithm(format!("{:?}", header.alg))
                }
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                _ => TokenError::Malformed,
            })?;
        let Timed {
            exp,
            nbf,
            iat,
            claims,
        } = data.claims;
        let exp = exp.ok_or_else(|| TokenError::MissingClaim("exp".to_string()))?;
        if needs_iat && iat.is_none() {
            return Err(TokenError::MissingClaim("iat".to_string()));
        }
        let now = self.clock.now().timestamp() as f64;
        let skew = self.skew.as_secs_f64();
        if now > exp + skew {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| now + skew < nbf) || iat.is_some_and(|iat| iat > now + skew) {
            return Err(TokenError::NotYetValid);
        }
        let expires_at = DateTime::from_timestamp(exp as i64, 0).ok_or(TokenError::Malformed)?;
        Ok((claims, expires_at))
    }
}
