//! A person's own links: the secret that lets whoever booked an
//! appointment (or opened a report) see, move or cancel it, where the id
//! alone must not. It is an HMAC of the resource's kind and id under the
//! gateway's key, so nothing is stored and every gateway instance sharing
//! the key checks it. It travels in the `X-Link-Secret` header, never in a
//! URL a log would keep.

use std::path::Path;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const LINK_SECRET_HEADER: &str = "x-link-secret";

/// The key; never printed.
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    #[error("GUICHET_LINK_KEY must be at least 32 characters")]
    TooShort,
    #[error("cannot read or create the link key at {0}")]
    File(std::path::PathBuf, #[source] std::io::Error),
}

impl LinkKey {
    /// The configured key, or (embedded default) one made once and kept in
    /// the data folder. Several gateways must be given the same key.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<LinkKey, LinkKeyError> {
        if let Some(k) = configured {
            if k.len() < 32 {
                return Err(LinkKeyError::TooShort);
            }
            return Ok(LinkKey(k.as_bytes().to_vec()));
        }
        let path = data_dir.join("gateway-link.key");
        let fail = |e| LinkKeyError::File(path.clone(), e);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => Ok(LinkKey(bytes)),
            _ => {
                std::fs::create_dir_all(data_dir).map_err(fail)?;
                let key: [u8; 32] = rand::random();
                write_private(&path, &key).map_err(fail)?;
                Ok(LinkKey(key.to_vec()))
            }
        }
    }

    fn mac(&self, kind: &str, id: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(id.as_bytes());
        mac
    }

    /// The secret for the `kind` (`appointment`, `report`) with this id.
    pub fn secret(&self, kind: &str, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(kind, id).finalize().into_bytes())
    }

    /// Whether the request carries this resource's secret (compared in
    /// constant time).
    pub fn proven(&self, headers: &HeaderMap, kind: &str, id: &str) -> bool {
        let Some(given) = headers
            .get(LINK_SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim()).ok())
        else {
            return false;
        };
        self.mac(kind, id).verify_slice(&given).is_ok()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_proves_its_own_resource_only() {
        let key = LinkKey(vec![7; 32]);
        let secret = key.secret("appointment", "a1");
        let mut headers = HeaderMap::new();
        headers.insert(LINK_SECRET_HEADER, secret.parse().unwrap());
        assert!(key.proven(&headers, "appointment", "a1"));
        assert!(!key.proven(&headers, "appointment", "a2"));
        assert!(!key.proven(&headers, "report", "a1"));
        assert!(!LinkKey(vec![8; 32]).proven(&headers, "appointment", "a1"));
        assert!(!key.proven(&HeaderMap::new(), "appointment", "a1"));
    }
}
