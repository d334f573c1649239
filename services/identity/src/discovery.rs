//! The issuer's discovery document (OpenID Connect Discovery 1.0): where
//! its endpoints and keys are. Its `issuer` must be the one configured, or
//! tokens could be checked against another provider's keys.

use serde::Deserialize;

use crate::endpoint::{FetchError, get_json};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: the provider names itself in the authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the issuer {0:?} is not an http(s) URL")]
    BadIssuer(String),
    #[error("cannot read the discovery document")]
    Fetch(#[from] FetchError),
    #[error("the discovery document names the issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("{field} {url:?} is not an https URL (http only for an http issuer, in development)")]
    InsecureEndpoint { field: &'static str, url: String },
    #[error("the provider does not offer PKCE with S256")]
    NoPkce,
}

impl ProviderMetadata {
    /// Fetches `{issuer}/.well-known/openid-configuration` and checks it.
    pub async fn discover(
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<ProviderMetadata, DiscoveryError> {
        let base = reqwest::Url::parse(issuer)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| DiscoveryError::BadIssuer(issuer.to_string()))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            base.as_str().trim_end_matches('/')
        );
        let document: ProviderMetadata = get_json(http, &url).await?;
        document.checked(issuer)
    }

    /// The document, if it is the configured issuer's and usable.
    pub fn checked(self, expected_issuer: &str) -> Result<ProviderMetadata, DiscoveryError> {
        if self.issuer != expected_issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: expected_issuer.to_string(),
                found: self.issuer,
            });
        }
        // A development issuer on http may have http endpoints; a real one
        // never sends tokens or codes in clear.
        let http_allowed = self.issuer.starts_with("http://");
        let mut endpoints = vec![
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
            ("jwks_uri", &self.jwks_uri),
        ];
        if let Some(u) = &self.userinfo_endpoint {
            endpoints.push(("userinfo_endpoint", u));
        }
        if let Some(u) = &self.end_session_endpoint {
            endpoints.push(("end_session_endpoint", u));
        }
        for (field, url) in endpoints {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| u.scheme() == "https" || (http_allowed && u.scheme() == "http"));
            if !ok {
                return Err(DiscoveryError::InsecureEndpoint {
                    field,
                    url: url.clone(),
                });
            }
        }
        // Listed methods without S256: the sign-in could not use PKCE.
        if !self.code_challenge_methods_supported.is_empty()
            && !self
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(DiscoveryError::NoPkce);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(issuer: &str, endpoints: &str) -> ProviderMetadata {
        ProviderMetadata {
            issuer: issuer.to_string(),
            authorization_endpoint: format!("{endpoints}/authorize"),
            token_endpoint: format!("{endpoints}/token"),
            jwks_uri: format!("{endpoints}/jwks"),
            userinfo_endpoint: None,
            end_session_endpoint: None,
            code_challenge_methods_supported: vec!["S256".into()],
            authorization_response_iss_parameter_supported: true,
        }
    }

    #[test]
    fn the_document_must_be_the_configured_issuers() {
        let d = document("https://idp.example", "https://idp.example");
        assert!(d.clone().checked("https://idp.example").is_ok());
        let e = d
            .checked("https://other.example")
            .expect_err("another issuer");
        assert!(matches!(e, DiscoveryError::IssuerMismatch { .. }), "{e}");
    }

    #[test]
    fn endpoints_are_https_unless_the_issuer_itself_is_http() {
        let d = document("https://idp.example", "http://idp.example");
        let e = d.checked("https://idp.example").expect_err("clear text");
        assert!(
            matches!(
                e,
                DiscoveryError::InsecureEndpoint {
                    field: "authorization_endpoint",
                    ..
                }
            ),
            "{e}"
        );
        let dev = document("http://127.0.0.1:9000", "http://127.0.0.1:9000");
        assert!(dev.checked("http://127.0.0.1:9000").is_ok());
    }

    #[test]
    fn pkce_s256_is_required_when_methods_are_listed() {
        let mut d = document("https://idp.example", "https://idp.example");
        d.code_challenge_methods_supported = vec!["plain".into()];
        assert!(matches!(
            d.checked("https://idp.example"),
            Err(DiscoveryError::NoPkce)
        ));
    }
}
