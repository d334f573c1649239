//! An idempotency key stands for one request: the same key again with the
//! same request answers what the first one got; with a different request it
//! is a conflict (HTTP 409), never a silent replay of the first answer. To
//! tell them apart, each keyed request keeps a fingerprint of what it asked.

use sha2::{Digest, Sha256};

/// The SHA-256 (hex) of `parts`, each one length-prefixed so that moving a
/// byte from one part to the next changes the fingerprint.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// Whether a request may replay what was stored under its key: the stored
/// fingerprint is absent for rows kept from before fingerprints, which are
/// taken as matching.
pub fn same_request(stored: Option<&str>, asked: &str) -> bool {
    stored.is_none_or(|s| s == asked)
}

/// The key was used before for another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this idempotency key was already used for a different request")]
pub struct KeyReused;

/// What an earlier request under the same key means for this one, from
/// what it left (`(id, fingerprint)`): `None` when there was none, the id of
/// what it made when it asked the same (to answer again), `KeyReused` when
/// it asked something else.
pub fn earlier(
    found: Option<(String, Option<String>)>,
    asked: &str,
) -> Result<Option<String>, KeyReused> {
    match found {
        None => Ok(None),
        Some((id, stored)) if same_request(stored.as_deref(), asked) => Ok(Some(id)),
        Some(_) => Err(KeyReused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_apart() {
        let f = |parts: &[&str]| fingerprint(parts.iter().map(|p| p.as_bytes()));
        assert_eq!(f(&["59", "Benali"]), f(&["59", "Benali"]));
        assert_ne!(f(&["59", "Benali"]), f(&["59", "Benalli"]));
        assert_ne!(f(&["5", "9Benali"]), f(&["59", "Benali"]));
        assert_ne!(f(&["59", ""]), f(&["59"]));
        assert_eq!(f(&[]).len(), 64);
    }

    #[test]
    fn rows_from_before_fingerprints_replay() {
        for (stored, asked, same) in [
            (None, "a", true),
            (Some("a"), "a", true),
            (Some("a"), "b", false),
        ] {
            assert_eq!(same_request(stored, asked), same, "{stored:?} {asked}");
        }
    }

    #[test]
    fn an_earlier_request_is_answered_again_or_refused() {
        let found = |f: Option<&str>| Some(("a1".to_string(), f.map(str::to_string)));
        assert_eq!(earlier(None, "x"), Ok(None));
        assert_eq!(earlier(found(Some("x")), "x"), Ok(Some("a1".into())));
        assert_eq!(earlier(found(None), "x"), Ok(Some("a1".into())));
        assert_eq!(earlier(found(Some("y")), "x"), Err(KeyReused));
    }
}
