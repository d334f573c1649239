//! Signed 2D codes on the documents Guichet gives people (receipts,
//! attestations), in the spirit of the State's 2D-Doc: the document's data,
//! signed with Ed25519, printed as a QR code. Anyone holding the published
//! public keys (`/.well-known/jwks.json`) checks a paper offline with
//! `guichet verify`: the code's signature, then that the printed document
//! says what the code says.
//!
//! The code's text is `GCH1|<key id>|<kind>|<name>=<value>|…|<signature>`,
//! the signature (base64url) over everything before its last `|`. `%`, `|`
//! and `=` inside names and values are percent-escaped.
//!
//! Keys rotate: a document names its key id, the key set keeps the public
//! half of every earlier key (so old papers still check) and the private
//! half of the current one only.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The format's name and version, first in every code.
pub const FORMAT: &str = "GCH1";

/// What a document's code says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kid: String,
    /// `receipt`, `attestation`, …
    pub kind: String,
    /// In the order signed; each value as the document prints it.
    pub fields: Vec<(String, String)>,
}

impl Sealed {
    /// The text the signature covers.
    fn signed_text(&self) -> String {
        let mut text = format!("{FORMAT}|{}|{}", escape(&self.kid), escape(&self.kind));
        for (name, value) in &self.fields {
            text.push('|');
            text.push_str(&escape(name));
            text.push('=');
            text.push_str(&escape(value));
        }
        text
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('|', "%7C")
        .replace('=', "%3D")
}

fn unescape(s: &str) -> String {
    s.replace("%7C", "|")
        .replace("%3D", "=")
        .replace("%25", "%")
}

/// Why a code does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a Guichet document code (it does not start with {FORMAT})")]
    NotACode,
    #[error("the code is damaged: {0}")]
    Malformed(&'static str),
    #[error("signed with key {0}, which is not among the published keys")]
    UnknownKey(String),
    #[error(
        "the signature does not match the code's data: the code was altered or forged (signed with key {kid})"
    )]
    BadSignature { kid: String },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the signing keys at {0}")]
    File(std::path::PathBuf, #[source] std::io::Error),
    #[error("the signing keys at {0} are not a key set: {1}")]
    Format(std::path::PathBuf, String),
    #[error("not a JWKS of Ed25519 keys: {0}")]
    Jwks(String),
    #[error("no private key to sign with in this key set (only published keys)")]
    CannotSign,
}

/// One key as kept on disk: an OKP JWK (RFC 8037), the private half (`d`)
/// only for the key that signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    kid: String,
    x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyFile {
    current: Option<String>,
    keys: Vec<Jwk>,
}

struct Key {
    kid: String,
    verifying: VerifyingKey,
    signing: Option<SigningKey>,
}

/// The keys a service signs with (the current one) or checks with (all).
pub struct KeySet {
    current: Option<String>,
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("current", &self.current)
            .field(
                "kids",
                &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64<const N: usize>(s: &str) -> Option<[u8; N]> {
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

fn new_key(now: chrono::DateTime<chrono::Utc>) -> Jwk {
    let seed: [u8; 32] = rand::random();
    let signing = SigningKey::from_bytes(&seed);
    Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        kid: format!("{}-{:04x}", now.format("%Y%m%d"), rand::random::<u16>()),
        x: b64(signing.verifying_key().as_bytes()),
        d: Some(b64(&seed)),
    }
}

/// The key file's bytes; an empty file written in place of keys would
/// leave nothing to sign or check with, so a failure is an error.
fn to_json(path: &Path, file: &KeyFile) -> Result<Vec<u8>, KeyError> {
    serde_json::to_vec_pretty(file).map_err(|e| KeyError::Format(path.to_path_buf(), e.to_string()))
}

impl KeySet {
    fn from_jwks_keys(current: Option<String>, jwks: Vec<Jwk>) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        for k in jwks {
            if k.kty != "OKP" || k.crv != "Ed25519" {
                continue;
            }
            let x: [u8; 32] = unb64(&k.x).ok_or(format!("key {}: x is not 32 bytes", k.kid))?;
            let verifying =
                VerifyingKey::from_bytes(&x).map_err(|_| format!("key {}: not a point", k.kid))?;
            let signing = match &k.d {
                Some(d) => {
                    let seed: [u8; 32] =
                        unb64(d).ok_or(format!("key {}: d is not 32 bytes", k.kid))?;
                    let s = SigningKey::from_bytes(&seed);
                    if s.verifying_key() != verifying {
                        return Err(format!("key {}: d and x do not match", k.kid));
                    }
                    Some(s)
                }
                None => None,
            };
            keys.push(Key {
                kid: k.kid,
                verifying,
                signing,
            });
        }
        Ok(KeySet { current, keys })
    }

    /// The key set at `path`; a new one with a single key when there is
    /// none yet (made once, whichever service of the process comes first).
    pub fn load_or_create(
        path: &Path,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<KeySet, KeyError> {
        let fail = |e| KeyError::File(path.to_path_buf(), e);
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            let key = new_key(now);
            let file = KeyFile {
                current: Some(key.kid.clone()),
                keys: vec![key],
            };
            let json = to_json(path, &file)?;
            match crate::links::write_new_private(path, &json) {
                Ok(()) => {
                    tracing::warn!(path = %path.display(), "made a new key set for signing persons' documents")
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Self::load(path)
    }

    pub fn load(path: &Path) -> Result<KeySet, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError::File(path.to_path_buf(), e))?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| KeyError::Format(path.to_path_buf(), e.to_string()))?;
        Self::from_jwks_keys(file.current, file.keys)
            .map_err(|e| KeyError::Format(path.to_path_buf(), e))
    }

    /// A new key signs from now on; the earlier ones stay published (their
    /// private halves are dropped). The new key's id.
    pub fn rotate(path: &Path, now: chrono::DateTime<chrono::Utc>) -> Result<String, KeyError> {
        let fail = |e| KeyError::File(path.to_path_buf(), e);
        let bytes = std::fs::read(path).map_err(fail)?;
        let mut file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| KeyError::Format(path.to_path_buf(), e.to_string()))?;
        for k in &mut file.keys {
            k.d = None;
        }
        let key = new_key(now);
        let kid = key.kid.clone();
        file.current = Some(kid.clone());
        file.keys.insert(0, key);
        let json = to_json(path, &file)?;
        // Written aside and renamed: a reader sees the old set or the new.
        let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
        std::fs::write(&tmp, json).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)?;
        Ok(kid)
    }

    /// Published keys only (a JWKS document), for checking.
    pub fn from_jwks(json: &str) -> Result<KeySet, KeyError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        let jwks: Jwks = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let mut keys = jwks.keys;
        for k in &mut keys {
            k.d = None;
        }
        let set = Self::from_jwks_keys(None, keys).map_err(KeyError::Jwks)?;
        if set.keys.is_empty() {
            return Err(KeyError::Jwks("it holds no Ed25519 key".into()));
        }
        Ok(set)
    }

    /// The public keys, as `/.well-known/jwks.json` publishes them.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "kid": k.kid,
                    "x": b64(k.verifying.as_bytes()),
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The code of a document of `kind` saying `fields`, signed with the
    /// current key.
    pub fn seal(&self, kind: &str, fields: Vec<(String, String)>) -> Result<String, KeyError> {
        let key = self
            .current
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))
            .and_then(|k| k.signing.as_ref().map(|s| (k.kid.clone(), s)))
            .ok_or(KeyError::CannotSign)?;
        let sealed = Sealed {
            kid: key.0,
            kind: kind.to_string(),
            fields,
        };
        let text = sealed.signed_text();
        let signature = key.1.sign(text.as_bytes());
        Ok(format!("{text}|{}", b64(&signature.to_bytes())))
    }

    /// What the code `text` says, if one of these keys signed it.
    pub fn open(&self, text: &str) -> Result<Sealed, OpenError> {
        let text = text.trim();
        if !text.starts_with(&format!("{FORMAT}|")) {
            return Err(OpenError::NotACode);
        }
        let (signed, signature) = text
            .rsplit_once('|')
            .ok_or(OpenError::Malformed("no signature"))?;
        let mut parts = signed.split('|').skip(1);
        let kid = unescape(parts.next().ok_or(OpenError::Malformed("no key id"))?);
        let kind = unescape(parts.next().ok_or(OpenError::Malformed("no kind"))?);
        let mut fields = Vec::new();
        for part in parts {
            let (name, value) = part
                .split_once('=')
                .ok_or(OpenError::Malformed("a field without '='"))?;
            fields.push((unescape(name), unescape(value)));
        }
        let signature: [u8; 64] =
            unb64(signature).ok_or(OpenError::Malformed("the signature is not 64 bytes"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| OpenError::UnknownKey(kid.clone()))?;
        key.verifying
            .verify(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| OpenError::BadSignature { kid: kid.clone() })?;
        Ok(Sealed { kid, kind, fields })
    }
}

/// How the printed text was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// From the PDF's own text: every value must be there exactly.
    Exact,
    /// By OCR from an image: figures (dates) must be there exactly, words
    /// and codes up to one misread character in four.
    Ocr,
}

/// Each field whose value the printed text does not show, compared without
/// case, accents, spaces or punctuation (a scan read back by OCR keeps the
/// words, not always their spacing), with the shapes Tesseract confuses
/// taken as one (`o`, `q` and `0`, `i`, `l`, `j`, `]` and `1`, …). Read by
/// OCR, a changed digit of a date is still seen; a misread letter of a
/// name or a code is not taken for a forgery.
pub fn not_printed<'a>(sealed: &'a Sealed, printed: &str, reading: Reading) -> Vec<&'a str> {
    let printed = fold(printed);
    sealed
        .fields
        .iter()
        .filter(|(_, value)| {
            let value = fold(value);
            let figures = value.chars().all(|c| c.is_ascii_digit());
            match reading {
                Reading::Exact => !printed.contains(&value),
                Reading::Ocr if figures => !printed.contains(&value),
                Reading::Ocr => fewest_edits(&value, &printed) > value.chars().count().div_ceil(4),
            }
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The fewest edits (insertions, deletions, substitutions) that make
/// `needle` appear somewhere in `text` (Sellers' approximate matching).
fn fewest_edits(needle: &str, text: &str) -> usize {
    let needle: Vec<char> = needle.chars().collect();
    // Cost of matching needle[..i] ending at the current text position.
    let mut column: Vec<usize> = (0..=needle.len()).collect();
    let mut best = needle.len();
    for t in text.chars() {
        let mut diagonal = column[0];
        column[0] = 0;
        for i in 1..=needle.len() {
            let substitution = diagonal + usize::from(needle[i - 1] != t);
            diagonal = column[i];
            column[i] = substitution.min(column[i] + 1).min(column[i - 1] + 1);
        }
        best = best.min(column[needle.len()]);
    }
    best
}

fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ö' | 'ó' => 'o',
            'ù' | 'û' | 'ü' | 'ú' => 'u',
            'ç' => 'c',
            other => other,
        })
        // The strokes OCR takes for one another, as one.
        .map(|c| match c {
            'i' | 'l' | 'j' | '|' | ']' | '[' => '1',
            'o' | 'q' | 'd' => '0',
            'a' => '4',
            'b' => '8',
            's' => '5',
            'z' => '2',
            'g' => '6',
            other => other,
        })
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .replace("vv", "w")
        .replace("rn", "m")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .expect("a time")
            .with_timezone(&chrono::Utc)
    }

    fn fields() -> Vec<(String, String)> {
        vec![
            ("reference".into(), "W26-AAAA-BBBB-C".into()),
            ("holder".into(), "Zoé O'Brien | BENALI = x%".into()),
            ("valid_until".into(), "28/02/2027".into()),
        ]
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("guichet-seal-{name}-{:x}", rand::random::<u64>()))
    }

    #[test]
    fn a_code_checks_with_the_published_keys_and_says_what_was_signed() {
        let path = temp("a").join("keys.json");
        let keys = KeySet::load_or_create(&path, now()).expect("keys");
        let code = keys.seal("attestation", fields()).expect("sealed");
        let published = KeySet::from_jwks(&keys.jwks().to_string()).expect("a JWKS");
        assert!(
            published.seal("attestation", fields()).is_err(),
            "public keys cannot sign"
        );
        let sealed = published.open(&code).expect("it checks");
        assert_eq!(sealed.kind, "attestation");
        assert_eq!(sealed.fields, fields());
        assert!(!keys.jwks().to_string().contains("\"d\""));
        let _ = std::fs::remove_dir_all(path.parent().expect("a folder"));
    }

    #[test]
    fn an_altered_or_foreign_code_is_refused_with_the_reason() {
        let path = temp("b").join("keys.json");
        let keys = KeySet::load_or_create(&path, now()).expect("keys");
        let code = keys.seal("attestation", fields()).expect("sealed");
        let table = [
            (code.replace("28/02/2027", "28/02/2028"), "BadSignature"),
            (code.replacen("GCH1", "GCH2", 1), "NotACode"),
            ("hello".to_string(), "NotACode"),
            (
                code.rsplit_once('|').expect("a signature").0.to_string() + "|abc",
                "Malformed",
            ),
        ];
        for (text, expected) in table {
            let e = keys.open(&text).expect_err("refused");
            assert!(format!("{e:?}").starts_with(expected), "{text}: {e:?}");
        }
        // Another key set's code: its key is unknown here.
        let other = KeySet::load_or_create(&temp("c").join("keys.json"), now()).expect("keys");
        let foreign = other.seal("attestation", fields()).expect("sealed");
        assert!(matches!(keys.open(&foreign), Err(OpenError::UnknownKey(_))));
        let _ = std::fs::remove_dir_all(path.parent().expect("a folder"));
    }

    #[test]
    fn after_a_rotation_old_codes_still_check_and_new_ones_use_the_new_key() {
        let path = temp("d").join("keys.json");
        let before = KeySet::load_or_create(&path, now()).expect("keys");
        let old = before.seal("receipt", fields()).expect("sealed");
        let kid = KeySet::rotate(&path, now()).expect("rotated");
        let after = KeySet::load(&path).expect("keys");
        let new = after.seal("receipt", fields()).expect("sealed");
        assert_eq!(after.open(&new).expect("checks").kid, kid);
        assert_ne!(after.open(&old).expect("still checks").kid, kid);
        assert_eq!(after.jwks()["keys"].as_array().map(Vec::len), Some(2));
        // Only the current key's private half is kept.
        let file = std::fs::read_to_string(&path).expect("the file");
        assert_eq!(file.matches("\"d\"").count(), 1, "{file}");
        let _ = std::fs::remove_dir_all(path.parent().expect("a folder"));
    }

    #[test]
    fn the_printed_text_must_show_every_signed_value() {
        let sealed = Sealed {
            kid: "k".into(),
            kind: "attestation".into(),
            fields: vec![
                ("holder".into(), "Zoé BENALI".into()),
                ("valid_until".into(), "28/02/2027".into()),
            ],
        };
        let code = Sealed {
            kid: "k".into(),
            kind: "attestation".into(),
            fields: vec![("verification_code".into(), "9EVVTPTY".into())],
        };
        assert!(not_printed(&code, "Code de vérification : 9EWTPTY.", Reading::Exact).is_empty());
        // By OCR, a misread letter of a code is tolerated, a changed figure
        // of a date never.
        assert!(not_printed(&code, "Code de vérification : 9E]VVTP TY.", Reading::Ocr).is_empty());
        assert_eq!(
            not_printed(&code, "Code : 9XXXTPTY.", Reading::Ocr),
            vec!["verification_code"]
        );
        assert_eq!(
            not_printed(&sealed, "Zoe 8ENALI jusqu'au 28/02/2028", Reading::Ocr),
            vec!["valid_until"]
        );
        let table = [
            ("Zoe Benali ... valable jusqu'au 28/02/2027", vec![]),
            ("ZOÉ  BENALI jusqu'au 28 / 02 / 2027", vec![]),
            ("Zoé BENALI jusqu'au 28/02/2028", vec!["valid_until"]),
            (
                "Zoé DUPONT jusqu'au 28/02/2028",
                vec!["holder", "valid_until"],
            ),
        ];
        for (printed, expected) in table {
            assert_eq!(
                not_printed(&sealed, printed, Reading::Exact),
                expected,
                "{printed}"
            );
        }
    }
}
