//! A DEVELOPMENT OpenID issuer: never for production. It is what
//! `guichet up` signs agents in with when nothing is installed, and what
//! tests get tokens from. Any agent it lists signs in with one click, no
//! password, so it binds loopback only and says so on every page and in
//! its log.
//!
//! It speaks just enough OpenID Connect for the crate's own client side
//! ([`crate::ProviderMetadata::discover`], [`crate::Validator`],
//! [`crate::LoginClient`], [`crate::client_credentials`]) to work against
//! it unchanged: discovery, a JWKS (ES256 on P-256), the authorization code
//! with PKCE S256, and client credentials. Its tokens carry the claims
//! `infra/oidc` (oidc-provider) puts in its own.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use guichet_kit::clock::SharedClock;
use guichet_kit::shutdown::Shutdown;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AGENT_SCOPES;
use crate::login::same;

/// The gateway's browser sign-in: the one client that may use the
/// authorization code. Every other client is a machine client (client
/// credentials only), as in `infra/oidc`.
pub const GATEWAY_CLIENT: &str = "guichet-gateway";

/// The SIRET every development agent works at (ProConnect's `siret`).
const DEV_SIRET: &str = "11000001300019";

/// How long an authorization code waits for its exchange, in seconds.
const CODE_TTL_S: i64 = 60;

const BANNER: &str = "Development issuer: not for production. \
    Anyone who reaches this page signs in as any agent below, without a password.";

#[derive(Clone)]
pub struct DevAgent {
    pub uid: String,
    pub given_name: String,
    pub usual_name: String,
    pub email: String,
    /// Who the login is meant to be (shown on the sign-in page); the roles
    /// themselves are Guichet's.
    pub role_hint: String,
}

#[derive(Clone)]
pub struct DevClient {
    pub client_id: String,
    pub secret: String,
    pub kind_hint: String,
}

#[derive(Clone)]
pub struct DevConfig {
    /// The `aud` of access tokens: the API's.
    pub audience: String,
    pub agents: Vec<DevAgent>,
    pub clients: Vec<DevClient>,
    /// Where the sign-in may send the browser back (exact match).
    pub redirect_uris: Vec<String>,
    /// Lifetime of access and ID tokens.
    pub token_ttl: Duration,
    pub clock: SharedClock,
}

impl DevConfig {
    /// The agents and clients of `infra/oidc/server.mjs`: one agent per
    /// role, the machine clients, and the gateway's sign-in.
    pub fn standard(clock: SharedClock) -> DevConfig {
        let agents = [
            (
                "instructor-59",
                "Inès",
                "Lefebvre",
                "instructor of prefecture 59",
            ),
            (
                "instructor-75",
                "Paul",
                "Martin",
                "instructor of prefecture 75",
            ),
            ("desk-59", "Awa", "Diallo", "desk agent of prefecture 59"),
            ("ccc-1", "Karim", "Benali", "call-centre agent"),
            ("mailroom-1", "Sophie", "Durand", "mailroom operator"),
            (
                "supervisor-59",
                "Claire",
                "Moreau",
                "supervisor of prefecture 59",
            ),
            ("operator-1", "Luc", "Bernard", "operator / auditor"),
        ]
        .map(|(uid, given, usual, role)| DevAgent {
            uid: uid.to_string(),
            given_name: given.to_string(),
            usual_name: usual.to_string(),
            email: format!("{uid}@interieur.gouv.test"),
            role_hint: role.to_string(),
        });
        let clients = [
            (GATEWAY_CLIENT, "browser sign-in (the gateway)"),
            ("guichet-ccc-software", "call-centre software"),
            ("guichet-desk-software", "desk software"),
            ("guichet-scanner-1", "mailroom scanning station"),
        ]
        .map(|(id, kind)| DevClient {
            client_id: id.to_string(),
            secret: format!("{id}-dev-secret"),
            kind_hint: kind.to_string(),
        });
        DevConfig {
            audience: "guichet".to_string(),
            agents: agents.into(),
            clients: clients.into(),
            redirect_uris: vec!["http://127.0.0.1:8080/auth/callback".to_string()],
            token_ttl: Duration::from_secs(300),
            clock,
        }
    }
}

/// A signing key and its public half as a JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> SigningKey {
        // Drawn with our own `rand`, so no `rand_core` version has to match
        // p256's. Nearly every 32 bytes are a valid scalar; the rare others
        // (zero, or past the curve's order) are drawn again.
        let secret = loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
                break key;
            }
        };
        let der = secret
            .to_pkcs8_der()
            .expect("a P-256 key encodes as PKCS#8");
        // Uncompressed SEC1: 0x04, then x and y, 32 bytes each.
        let point = secret.public_key().to_encoded_point(false);
        let point = point.as_bytes();
        let kid = format!("dev-es256-{}", random(6));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        SigningKey {
            kid,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }
}

/// A code given out and not yet exchanged, with what it is bound to.
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    uid: String,
    expires_at: DateTime<Utc>,
}

struct Inner {
    issuer: String,
    config: DevConfig,
    /// Newest last: tokens are signed with it, all are published.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    codes: Mutex<HashMap<String, Grant>>,
}

/// The running issuer; clones share it.
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

impl DevIssuer {
    /// Binds `addr` (loopback only; port 0 picks one) and serves until
    /// `shutdown`.
    pub async fn start(
        addr: SocketAddr,
        config: DevConfig,
        shutdown: Shutdown,
    ) -> io::Result<DevIssuer> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the development issuer binds loopback only, not {addr}"),
            ));
        }
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let issuer = DevIssuer {
            inner: Arc::new(Inner {
                issuer: format!("http://{}", listener.local_addr()?),
                config,
                keys: Mutex::new(vec![Arc::new(SigningKey::generate())]),
                codes: Mutex::new(HashMap::new()),
            }),
        };
        tracing::warn!(
            issuer = %issuer.issuer(),
            agents = issuer.inner.config.agents.len(),
            "development openid issuer started: not for production, its agents sign in without a password"
        );
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize_page).post(authorize_choose))
            .route("/token", post(token))
            .with_state(issuer.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "development openid issuer stopped");
            }
        });
        Ok(issuer)
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// An access token for a human agent, as the sign-in would give.
    pub fn agent_token(&self, uid: &str) -> String {
        self.sign("at+jwt", &self.agent_claims(uid))
    }

    /// A client-credentials access token for machine client `client_id`.
    pub fn client_token(&self, client_id: &str) -> String {
        let mut claims = self.timed();
        claims["sub"] = json!(client_id);
        claims["client_id"] = json!(client_id);
        self.sign("at+jwt", &claims)
    }

    /// An agent's access token (the first agent's) with `claims` put over
    /// its own; a claim given as `null` is left out. For tests of refusals:
    /// `{"exp": 0}`, `{"aud": "other-api"}`, `{"sub": null}`.
    pub fn token_with(&self, claims: Value) -> String {
        let uid = self
            .inner
            .config
            .agents
            .first()
            .map_or("dev-agent", |a| a.uid.as_str());
        let mut token = self.agent_claims(uid);
        if let (Value::Object(base), Value::Object(over)) = (&mut token, claims) {
            for (name, value) in over {
                if value.is_null() {
                    base.remove(&name);
                } else {
                    base.insert(name, value);
                }
            }
        }
        self.sign("at+jwt", &token)
    }

    /// A new signing key, used from now on; the previous ones stay
    /// published, so tokens already given out still verify.
    pub fn rotate_keys(&self) {
        let key = SigningKey::generate();
        tracing::info!(kid = %key.kid, "development openid issuer rotated its signing key");
        lock(&self.inner.keys).push(Arc::new(key));
    }

    fn now(&self) -> i64 {
        self.inner.config.clock.now().timestamp()
    }

    /// What every access token has: issuer, audience, times, an id.
    fn timed(&self) -> Value {
        let now = self.now();
        let ttl = i64::try_from(self.inner.config.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        json!({
            "iss": self.inner.issuer, "aud": self.inner.config.audience,
            "iat": now, "nbf": now, "exp": now + ttl, "jti": random(16),
        })
    }

    fn agent_claims(&self, uid: &str) -> Value {
        let mut claims = self.timed();
        claims["sub"] = json!(sub_of(uid));
        claims["uid"] = json!(uid);
        claims["client_id"] = json!(GATEWAY_CLIENT);
        claims["scope"] = json!(AGENT_SCOPES);
        claims
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        let key = lock(&self.inner.keys)
            .last()
            .cloned()
            .expect("there is always a signing key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("a generated P-256 key signs")
    }

    /// A sign-in request's parameters, checked; the error names the field.
    fn sign_in_request(
        &self,
        q: &HashMap<String, String>,
    ) -> Result<Grant, (String, &'static str)> {
        let field = |name: &str| {
            q.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or((name.to_string(), "is missing"))
        };
        let refuse = |name: &str, problem| Err((name.to_string(), problem));
        if field("response_type")? != "code" {
            return refuse("response_type", "must be code");
        }
        let client_id = field("client_id")?;
        if client_id != GATEWAY_CLIENT || self.client(&client_id).is_none() {
            return refuse("client_id", "is not a sign-in client of this issuer");
        }
        let redirect_uri = field("redirect_uri")?;
        if !self
            .inner
            .config
            .redirect_uris
            .iter()
            .any(|r| same_redirect(r, &redirect_uri))
        {
            return refuse("redirect_uri", "is not registered at this issuer");
        }
        field("state")?;
        if field("code_challenge_method")? != "S256" {
            return refuse("code_challenge_method", "must be S256");
        }
        let challenge = field("code_challenge")?;
        if challenge.len() != 43 {
            return refuse("code_challenge", "is not an S256 challenge");
        }
        Ok(Grant {
            client_id,
            redirect_uri,
            challenge,
            nonce: field("nonce")?,
            uid: String::new(),
            expires_at: self.inner.config.clock.now() + chrono::Duration::seconds(CODE_TTL_S),
        })
    }

    fn client(&self, client_id: &str) -> Option<&DevClient> {
        self.inner
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
    }

    fn agent(&self, uid: &str) -> Option<&DevAgent> {
        self.inner.config.agents.iter().find(|a| a.uid == uid)
    }

    /// The token endpoint's work: the client authenticated, then its grant.
    fn grant(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        let (id, secret) = match headers.get(header::AUTHORIZATION) {
            Some(value) => basic_credentials(value.to_str().unwrap_or(""))
                .ok_or(oauth("invalid_client", "malformed basic credentials"))?,
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(id), Some(secret)) => (id.clone(), secret.clone()),
                _ => return Err(oauth("invalid_client", "no client credentials")),
            },
        };
        let client = self
            .client(&id)
            .filter(|c| same(&c.secret, &secret))
            .ok_or(oauth("invalid_client", "unknown client or wrong secret"))?;
        let is_gateway = client.client_id == GATEWAY_CLIENT;
        let param = |name: &'static str| {
            form.get(name)
                .ok_or_else(|| oauth("invalid_request", format!("{name} is missing")))
        };
        match param("grant_type")?.as_str() {
            "client_credentials" if !is_gateway => Ok(json!({
                "access_token": self.client_token(&client.client_id),
                "token_type": "Bearer",
                "expires_in": self.inner.config.token_ttl.as_secs(),
            })),
            "authorization_code" if is_gateway => {
                // Single use: taken out whatever happens next.
                let grant = lock(&self.inner.codes)
                    .remove(param("code")?)
                    .ok_or(oauth("invalid_grant", "unknown, used or expired code"))?;
                let verifier = param("code_verifier")?;
                let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                let agent = self.agent(&grant.uid);
                let bound = grant.expires_at > self.inner.config.clock.now()
                    && grant.client_id == client.client_id
                    && param("redirect_uri")? == &grant.redirect_uri
                    && same(&challenge, &grant.challenge);
                let (true, Some(agent)) = (bound, agent) else {
                    return Err(oauth("invalid_grant", "code not valid for this request"));
                };
                let mut id_token = self.timed();
                for (name, value) in [
                    ("aud", &client.client_id),
                    ("sub", &sub_of(&agent.uid)),
                    ("nonce", &grant.nonce),
                    ("uid", &agent.uid),
                    ("email", &agent.email),
                    ("given_name", &agent.given_name),
                    ("usual_name", &agent.usual_name),
                    ("siret", &DEV_SIRET.to_string()),
                ] {
                    id_token[name] = json!(value);
                }
                id_token["auth_time"] = id_token["iat"].clone();
                Ok(json!({
                    "access_token": self.agent_token(&agent.uid),
                    "id_token": self.sign("JWT", &id_token),
                    "token_type": "Bearer",
                    "expires_in": self.inner.config.token_ttl.as_secs(),
                    "scope": AGENT_SCOPES,
                }))
            }
            "client_credentials" | "authorization_code" => Err(oauth(
                "unauthorized_client",
                "this client may not use this grant",
            )),
            _ => Err(oauth(
                "unsupported_grant_type",
                "grant_type is not one this issuer knows",
            )),
        }
    }
}

/// ProConnect's `sub` is not the agent's `uid`; code must not mix them up.
fn sub_of(uid: &str) -> String {
    format!("sub-{uid}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a holder panicked; the map is still whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        form_urlencoded::parse(s.as_bytes())
            .next()
            .map_or_else(String::new, |(k, _)| k.into_owned())
    };
    Some((unescape(id), unescape(secret)))
}

/// An RFC 6749 §5.2 error answer: its code, and what was wrong.
struct OAuthError(&'static str, String);

fn oauth(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError(error, description.into())
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": self.0, "error_description": self.1}));
        if self.0 == "invalid_client" {
            let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"dev issuer\"")];
            return (StatusCode::UNAUTHORIZED, challenge, body).into_response();
        }
        (StatusCode::BAD_REQUEST, body).into_response()
    }
}

async fn discovery(State(dev): State<DevIssuer>) -> axum::Json<Value> {
    let issuer = dev.issuer();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(dev): State<DevIssuer>) -> axum::Json<Value> {
    let keys: Vec<Value> = lock(&dev.inner.keys)
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    axum::Json(json!({ "keys": keys }))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}: Guichet development issuer</title></head><body>\
         <p role=\"alert\"><strong>{BANNER}</strong></p><h1>{title}</h1>{body}</body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn refused((field, problem): (String, &str)) -> Response {
    let text = format!("<p><code>{}</code> {problem}.</p>", escape(&field));
    page(StatusCode::BAD_REQUEST, "Sign-in refused", &text)
}

/// The sign-in page: one button per agent, the request carried along in
/// hidden fields.
async fn authorize_page(
    State(dev): State<DevIssuer>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = dev.sign_in_request(&q) {
        return refused(e);
    }
    let mut form = String::from("<form method=\"post\" action=\"/authorize\">");
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        if let Some(value) = q.get(name) {
            form += &format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
    }
    form += "<ul>";
    for a in &dev.inner.config.agents {
        form += &format!(
            "<li><button type=\"submit\" name=\"uid\" value=\"{uid}\">{uid}</button> {} {}, {}</li>",
            escape(&a.given_name),
            escape(&a.usual_name),
            escape(&a.role_hint),
            uid = escape(&a.uid),
        );
    }
    form += "</ul></form>";
    page(StatusCode::OK, "Sign in as a development agent", &form)
}

/// An agent chosen: a code bound to the request, and back to the client.
async fn authorize_choose(State(dev): State<DevIssuer>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut grant = match dev.sign_in_request(&form) {
        Ok(grant) => grant,
        Err(e) => return refused(e),
    };
    let uid = form.get("uid").cloned().unwrap_or_default();
    if dev.agent(&uid).is_none() {
        return refused(("uid".to_string(), "is not a development agent"));
    }
    let Ok(mut back) = reqwest::Url::parse(&grant.redirect_uri) else {
        return refused(("redirect_uri".to_string(), "is not a URL"));
    };
    let code = random(32);
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", form.get("state").map_or("", String::as_str))
        .append_pair("iss", dev.issuer());
    tracing::info!(uid = %uid, "development openid issuer: agent chosen");
    grant.uid = uid;
    let now = dev.inner.config.clock.now();
    let mut codes = lock(&dev.inner.codes);
    codes.retain(|_, g| g.expires_at > now);
    codes.insert(code, grant);
    Redirect::to(back.as_str()).into_response()
}

async fn token(State(dev): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    match dev.grant(&headers, &form) {
        Ok(answer) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `given` is the registered redirect URI: the same, or, for a
/// loopback one, the same but for the port (RFC 8252, 7.3: a client on
/// loopback gets whatever port is free).
fn same_redirect(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (reqwest::Url::parse(registered), reqwest::Url::parse(given)) else {
        return false;
    };
    let loopback =
        |u: &reqwest::Url| matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    loopback(&r)
        && r.scheme() == g.scheme()
        && r.host_str() == g.host_str()
        && r.path() == g.path()
        && g.query().is_none()
        && g.fragment().is_none()
}
