//! OpenID Connect for Guichet's agents and machine clients.
//!
//! - [`ProviderMetadata::discover`]: the issuer's discovery document, its
//!   `issuer` checked against the one configured.
//! - [`Validator`]: access and ID tokens checked against the issuer's JWKS
//!   (signature RS256/ES256, issuer, audience, expiry and not-before with a
//!   bounded clock skew, time from the injected clock). The keys are cached
//!   and fetched again on an unknown `kid` (at most once per interval, so a
//!   flood of forged tokens cannot hammer the provider) and when they are
//!   older than their maximum age, so a key rotated at the provider is
//!   accepted without a restart.
//! - [`LoginClient`]: the browser sign-in's building blocks, authorization
//!   code with PKCE (S256), state and nonce, and the code-for-token
//!   exchange. [`client_credentials`] is the machine clients' side.
//! - [`Secret`]: client secrets and tokens, which never print.
//! - [`dev::DevIssuer`]: a DEVELOPMENT OpenID issuer, never for production,
//!   for `guichet up` with nothing installed and for tests. It serves
//!   discovery, a JWKS (ES256), the code flow with PKCE and client
//!   credentials on loopback only; its sign-in page lists the development
//!   agents of `infra/oidc` as buttons, no password. Tests also take tokens
//!   from it directly ([`dev::DevIssuer::agent_token`],
//!   [`dev::DevIssuer::token_with`]) and rotate its key.
#![forbid(unsafe_code)]

mod claims;
pub mod dev;
mod discovery;
mod endpoint;
mod keys;
mod login;
mod secret;
mod validator;

pub use claims::{AccessClaims, AgentIdentity};
pub use discovery::{DiscoveryError, ProviderMetadata};
pub use endpoint::{ExchangeError, FetchError, TokenResponse, client_credentials};
pub use keys::{KeyCache, KeyPolicy, KeysError};
pub use login::{AGENT_SCOPES, Callback, LoginClient, LoginError, PendingLogin, SignedIn};
pub use secret::Secret;
pub use validator::{MAX_CLOCK_SKEW, TokenError, Validator, ValidatorError};

/// How long one request to the provider may take.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
