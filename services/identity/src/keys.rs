//! The provider's signing keys (its JWKS), cached. Fetched again when a
//! token names a key not in the cache (the provider rotated) and when the
//! cache is older than its maximum age (a key withdrawn at the provider
//! stops being accepted), never more than once per `min_refresh_interval`:
//! a flood of tokens with made-up key ids costs the provider one request
//! per interval. One fetch at a time; the others wait for it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::time::Instant;

use crate::endpoint::{FetchError, get_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Keys older than this are fetched again before use.
    pub max_age: Duration,
    /// The provider is asked at most once per this interval.
    pub min_refresh_interval: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            max_age: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the provider's keys")]
    Fetch(#[from] FetchError),
    #[error("{uri} lists no RS256 or ES256 signing key")]
    NoUsableKey { uri: String },
    /// The last try failed moments ago; the next is not due yet.
    #[error("the provider's keys could not be fetched yet")]
    NotYetFetched,
}

/// A key able to check one algorithm's signatures.
#[derive(Clone)]
pub(crate) struct Key {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Key>,
    without_kid: Vec<Key>,
    fetched_at: Option<Instant>,
}

impl Keys {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| k.alg == alg).cloned(),
            // No `kid`: only when one key could have signed it.
            None => {
                let mut candidates = self
                    .by_kid
                    .values()
                    .chain(&self.without_kid)
                    .filter(|k| k.alg == alg);
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_kid.is_empty() && self.without_kid.is_empty()
    }
}

/// What `key_for` found.
pub(crate) enum Lookup {
    Found(Key),
    /// Not in the keys, even after asking the provider (or it was asked
    /// too recently to ask again).
    Unknown,
}

struct Inner {
    http: reqwest::Client,
    jwks_uri: String,
    policy: KeyPolicy,
    keys: RwLock<Arc<Keys>>,
    /// When the provider was last asked; held during a fetch, so there is
    /// one at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The cache; clones share it.
#[derive(Clone)]
pub struct KeyCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("jwks_uri", &self.inner.jwks_uri)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

impl KeyCache {
    /// An empty cache: the first token checked fetches the keys (or call
    /// [`KeyCache::refresh`] at start-up to fail early).
    pub fn new(http: reqwest::Client, jwks_uri: impl Into<String>, policy: KeyPolicy) -> Self {
        KeyCache {
            inner: Arc::new(Inner {
                http,
                jwks_uri: jwks_uri.into(),
                policy,
                keys: RwLock::new(Arc::new(Keys::default())),
                last_fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn current(&self) -> Arc<Keys> {
        // A poisoned lock only means a writer panicked between two whole
        // values: the value is still a whole key set.
        match self.inner.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn store(&self, keys: Keys) {
        let mut slot = match self.inner.keys.write() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(keys);
    }

    /// The key ids in the cache now (for logs and tests).
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.current().by_kid.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Asks the provider for its keys now, unless it was asked less than
    /// `min_refresh_interval` ago. `Ok(false)`: not asked, too soon.
    pub async fn refresh(&self) -> Result<bool, KeysError> {
        let mut last = self.inner.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.inner.policy.min_refresh_interval) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        let keys = self.fetch().await?;
        tracing::info!(jwks_uri = %self.inner.jwks_uri, keys = keys.by_kid.len() + keys.without_kid.len(), "signing keys fetched");
        self.store(keys);
        Ok(true)
    }

    async fn fetch(&self) -> Result<Keys, KeysError> {
        let uri = &self.inner.jwks_uri;
        let document: JwksDocument = get_json(&self.inner.http, uri).await?;
        let mut keys = Keys {
            fetched_at: Some(Instant::now()),
            ..Keys::default()
        };
        for value in document.keys {
            // Keys of other kinds (encryption, algorithms not accepted
            // here) are skipped, not an error: the set serves other clients too.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(key) = usable(&jwk) else { continue };
            match jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid, key);
                }
                None => keys.without_kid.push(key),
            }
        }
        if keys.is_empty() {
            // Keep the keys we had: a broken answer must not lock everyone out.
            return Err(KeysError::NoUsableKey { uri: uri.clone() });
        }
        Ok(keys)
    }

    /// The key for a token's `kid` and `alg`, fetching the keys again when
    /// they are stale or do not have it.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Lookup, KeysError> {
        let stale = self
            .current()
            .fetched_at
            .is_none_or(|t| t.elapsed() >= self.inner.policy.max_age);
        if stale && let Err(e) = self.refresh().await {
            // Stale keys still verify what the provider signed with them;
            // without any, nothing can be checked.
            if self.current().is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, "signing keys not refreshed; using the ones cached");
        }
        if self.current().is_empty() {
            return Err(KeysError::NotYetFetched);
        }
        if let Some(key) = self.current().find(kid, alg) {
            return Ok(Lookup::Found(key));
        }
        // A key id we have not seen: the provider may have rotated.
        self.refresh().await?;
        Ok(match self.current().find(kid, alg) {
            Some(key) => Lookup::Found(key),
            None => Lookup::Unknown,
        })
    }
}

/// The algorithm a JWK may verify, and its key: RSA for RS256, P-256 for
/// ES256, signing keys only.
fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let alg = match (&jwk.algorithm, &jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { alg, decoding })
}
