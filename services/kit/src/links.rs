//! A person's own links: the secret that lets whoever booked an
//! appointment (or opened a report) see, move or cancel it, where the id
//! alone must not. It is an HMAC of the resource's kind and id under
//! Guichet's link key (`GUICHET_LINK_KEY`), cut to 128 bits (22 characters
//! a person can copy from a letter), so nothing is stored: every gateway
//! instance checks it, and the notifier sends it to the person, given the
//! same key. It travels in the `X-Link-Secret` header, never in a URL a log
//! would keep.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

pub const LINK_SECRET_HEADER: &str = "x-link-secret";

/// 128 bits of the HMAC: out of reach of guessing, short enough to copy.
const SECRET_BYTES: usize = 16;

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
    /// the data folder, where every service of `guichet up` finds the same
    /// one. Several gateways and the notifier must be given the same key.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<LinkKey, LinkKeyError> {
        if let Some(k) = configured {
            if k.len() < 32 {
                return Err(LinkKeyError::TooShort);
            }
            return Ok(LinkKey(k.as_bytes().to_vec()));
        }
        let path = data_dir.join("gateway-link.key");
        let fail = |e| LinkKeyError::File(path.clone(), e);
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() >= 32
        {
            return Ok(LinkKey(bytes));
        }
        std::fs::create_dir_all(data_dir).map_err(fail)?;
        let key: [u8; 32] = rand::random();
        match write_new_private(&path, &key) {
            Ok(()) => Ok(LinkKey(key.to_vec())),
            // Another service of the same process made it first: theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path).map_err(fail)?;
                if bytes.len() >= 32 {
                    Ok(LinkKey(bytes))
                } else {
                    Err(fail(std::io::Error::other("the key file is too short")))
                }
            }
            Err(e) => Err(fail(e)),
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
        let full = self.mac(kind, id).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&full[..SECRET_BYTES])
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
        given.len() == SECRET_BYTES && self.mac(kind, id).verify_truncated_left(&given).is_ok()
    }
}

/// Writes `bytes` to a file that must not exist yet, readable by its owner
/// only; written whole to a temporary file first, so a reader never sees a
/// part of it.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // Its own name: services of one process race here too.
    let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    // A hard link fails if the name exists: the first writer wins.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
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
        assert_eq!(secret.len(), 22);
        // A shorter piece of the right secret proves nothing.
        let mut short = HeaderMap::new();
        short.insert(LINK_SECRET_HEADER, secret[..11].parse().unwrap());
        assert!(!key.proven(&short, "appointment", "a1"));
    }

    #[test]
    fn services_sharing_a_data_folder_share_one_key() {
        let dir = std::env::temp_dir().join(format!("guichet-link-key-{}", uuid_like()));
        let keys: Vec<LinkKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| LinkKey::load(None, &dir).expect("a key")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("joined"))
                .collect()
        });
        for k in &keys {
            assert_eq!(k.secret("report", "r1"), keys[0].secret("report", "r1"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn uuid_like() -> String {
        format!("{:x}", rand::random::<u64>())
    }
}
