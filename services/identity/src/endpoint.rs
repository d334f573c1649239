//! Talking to the provider's endpoints: documents fetched as JSON, and the
//! token endpoint (code exchange, client credentials).

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{FETCH_TIMEOUT, ProviderMetadata, Secret};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered something that is not the JSON expected")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

pub(crate) async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, FetchError> {
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|source| FetchError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    response.json().await.map_err(|source| FetchError::Body {
        url: url.to_string(),
        source,
    })
}

/// The token endpoint's answer (RFC 6749 §5.1; `id_token` for OpenID).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub id_token: Option<Secret>,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot reach the token endpoint")]
    Unreachable(#[source] reqwest::Error),
    /// The provider said no (RFC 6749 §5.2): `invalid_grant` for a code
    /// used twice or a wrong verifier, `invalid_client`, ...
    #[error("the token endpoint refused ({status}): {error}")]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("the token endpoint answered something that is not a token response")]
    Body(#[source] reqwest::Error),
    #[error("the token endpoint answered token type {0:?}, not Bearer")]
    NotBearer(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A `client_secret_basic` request to the token endpoint. RFC 6749 §2.3.1:
/// the id and secret are form-encoded before going into the header.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    metadata: &ProviderMetadata,
    client_id: &str,
    client_secret: &Secret,
    form: &[(&str, &str)],
) -> Result<TokenResponse, ExchangeError> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let response = http
        .post(&metadata.token_endpoint)
        .basic_auth(encode(client_id), Some(encode(client_secret.expose())))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(ExchangeError::Unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body: Option<ErrorBody> = response.json().await.ok();
        let (error, description) = match body {
            Some(b) => (b.error, b.error_description),
            None => ("(no error code)".to_string(), None),
        };
        return Err(ExchangeError::Refused {
            status: status.as_u16(),
            error,
            description,
        });
    }
    let token: TokenResponse = response.json().await.map_err(ExchangeError::Body)?;
    if !token.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ExchangeError::NotBearer(token.token_type));
    }
    Ok(token)
}

/// A machine client's access token (OAuth2 client credentials), for the
/// resource named (RFC 8707) or the provider's default one.
pub async fn client_credentials(
    http: &reqwest::Client,
    metadata: &ProviderMetadata,
    client_id: &str,
    client_secret: &Secret,
    resource: Option<&str>,
) -> Result<TokenResponse, ExchangeError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    token_request(http, metadata, client_id, client_secret, &form).await
}
