//! A value that must never be printed: client secrets, tokens, PKCE
//! verifiers. `Debug` shows that there is one, not what it is; there is no
//! `Display`, and reading it takes a call that says so.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, to send where it belongs (never to a log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-client-secret");
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Settings {
            client_secret: Secret,
        }
        let shown = format!("{:#?}", Settings { client_secret: s });
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
