//! Against the development issuer (`guichet_identity::dev`): the crate's
//! own client side (discovery, `Validator`, `LoginClient`,
//! `client_credentials`) works with it as with oidc-provider (`oidc.rs`),
//! and it refuses what a real provider refuses.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use guichet_identity::dev::{DevConfig, DevIssuer, GATEWAY_CLIENT};
use guichet_identity::{
    Callback, ExchangeError, KeyCache, KeyPolicy, LoginClient, LoginError, ProviderMetadata,
    Secret, TokenError, Validator, client_credentials,
};
use guichet_kit::clock::{Clock, SharedClock};
use guichet_kit::shutdown::Shutdown;

const API_AUDIENCE: &str = "guichet";
const GATEWAY_REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";

/// The system clock moved by `offset`: to judge a token later or earlier.
struct Shifted(chrono::Duration);

impl Clock for Shifted {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn clock(offset_s: i64) -> SharedClock {
    Arc::new(Shifted(chrono::Duration::seconds(offset_s)))
}

/// Cancels the shutdown signal when dropped: each test's issuer stops with it.
struct Stop(Shutdown);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// An issuer on a port of its own.
async fn start() -> (DevIssuer, Stop) {
    let shutdown = Shutdown::new();
    let addr = "127.0.0.1:0".parse().expect("an address");
    let dev = DevIssuer::start(addr, DevConfig::standard(clock(0)), shutdown.clone())
        .await
        .expect("the development issuer");
    (dev, Stop(shutdown))
}

async fn metadata(dev: &DevIssuer) -> ProviderMetadata {
    ProviderMetadata::discover(&reqwest::Client::new(), dev.issuer())
        .await
        .expect("the discovery document")
}

fn validator_at(metadata: &ProviderMetadata, offset_s: i64, policy: KeyPolicy) -> Validator {
    let keys = KeyCache::new(reqwest::Client::new(), metadata.jwks_uri.clone(), policy);
    Validator::new(metadata, keys, clock(offset_s), Duration::from_secs(30)).expect("a validator")
}

fn secret_of(client_id: &str) -> Secret {
    Secret::new(format!("{client_id}-dev-secret"))
}

async fn login_client(dev: &DevIssuer, redirect: &str) -> (LoginClient, Validator) {
    let metadata = metadata(dev).await;
    let validator = validator_at(&metadata, 0, KeyPolicy::default());
    let client = LoginClient::new(
        metadata,
        reqwest::Client::new(),
        GATEWAY_CLIENT,
        secret_of(GATEWAY_CLIENT),
        redirect,
        validator.clone(),
    )
    .expect("a login client");
    (client, validator)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The browser's side: opens the sign-in page, presses `uid`'s button and
/// returns where it is sent back.
async fn choose(start: &reqwest::Url, uid: &str) -> reqwest::Url {
    let http = no_redirects();
    let page = http.get(start.clone()).send().await.expect("the page");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("its text");
    assert!(
        page.contains("Development issuer: not for production"),
        "{page}"
    );
    assert!(
        page.contains(&format!("name=\"uid\" value=\"{uid}\"")),
        "{page}"
    );
    // What the form sends: its hidden fields, and the button pressed.
    let mut form: Vec<(String, String)> = page
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|field| {
            let (name, rest) = field.split_once('"').expect("a name");
            let value = rest.split('"').nth(1).expect("a value");
            (name.to_string(), value.to_string())
        })
        .collect();
    form.push(("uid".to_string(), uid.to_string()));
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's action");
    let chosen = http
        .post(start.join(action).expect("the action URL"))
        .form(&form)
        .send()
        .await
        .expect("the choice");
    assert_eq!(chosen.status(), 303);
    let location = chosen.headers()["location"].to_str().expect("a location");
    reqwest::Url::parse(location).expect("a URL")
}

fn callback_of(url: &reqwest::Url) -> Callback {
    let mut callback = Callback::default();
    for (k, v) in url.query_pairs() {
        match &*k {
            "code" => callback.code = Some(Secret::new(v.to_string())),
            "state" => callback.state = Some(v.to_string()),
            "iss" => callback.iss = Some(v.to_string()),
            "error" => callback.error = Some(v.to_string()),
            _ => {}
        }
    }
    callback
}

fn refused_with(outcome: &Result<guichet_identity::SignedIn, LoginError>, code: &str) -> bool {
    matches!(outcome, Err(LoginError::Exchange(ExchangeError::Refused { error, .. })) if error == code)
}

#[tokio::test]
async fn an_agent_signs_in_with_code_and_pkce() {
    let (dev, _stop) = start().await;
    let (client, validator) = login_client(&dev, GATEWAY_REDIRECT).await;
    let (url, pending) = client.start();
    let back = choose(&url, "instructor-59").await;
    assert!(back.as_str().starts_with(GATEWAY_REDIRECT), "{back}");
    let callback = callback_of(&back);
    assert_eq!(callback.iss.as_deref(), Some(dev.issuer()));

    let signed_in = client.finish(&pending, &callback).await.expect("signed in");
    let who = &signed_in.identity;
    assert_eq!(who.uid, "instructor-59");
    assert_eq!(who.email, "instructor-59@interieur.gouv.test");
    assert_eq!(
        (who.given_name.as_str(), who.usual_name.as_str()),
        ("Inès", "Lefebvre")
    );
    assert_eq!(who.siret.as_deref(), Some("11000001300019"));
    assert_ne!(who.sub, who.uid, "sub and uid are different claims");
    let access = validator
        .access_token(signed_in.access_token.expose(), API_AUDIENCE)
        .await
        .expect("the agent's access token");
    assert_eq!(access.uid.as_deref(), Some("instructor-59"));
    assert_eq!(access.sub, who.sub);
    assert!(!access.is_client_token());
    assert!(access.scopes().any(|s| s == "siret"));

    // A code serves once.
    let replay = client.finish(&pending, &callback).await;
    assert!(refused_with(&replay, "invalid_grant"), "{replay:?}");
    // The same claims without the browser.
    let direct = validator
        .access_token(&dev.agent_token("desk-59"), API_AUDIENCE)
        .await
        .expect("agent_token");
    assert_eq!(direct.uid.as_deref(), Some("desk-59"));
    assert_eq!(direct.client_id.as_deref(), Some(GATEWAY_CLIENT));
}

#[tokio::test]
async fn a_wrong_code_verifier_is_refused_and_spends_the_code() {
    let (dev, _stop) = start().await;
    let (client, _) = login_client(&dev, GATEWAY_REDIRECT).await;
    let (url, pending) = client.start();
    let callback = callback_of(&choose(&url, "ccc-1").await);
    let mut wrong = pending.clone();
    wrong.code_verifier = Secret::new("x".repeat(43));
    let refused = client.finish(&wrong, &callback).await;
    assert!(refused_with(&refused, "invalid_grant"), "{refused:?}");
    let after = client.finish(&pending, &callback).await;
    assert!(refused_with(&after, "invalid_grant"), "{after:?}");
}

#[tokio::test]
async fn a_redirect_uri_not_registered_is_refused() {
    let (dev, _stop) = start().await;
    let (elsewhere, _) = login_client(&dev, "http://127.0.0.1:9999/steal").await;
    let (url, _) = elsewhere.start();
    let http = no_redirects();
    let page = http.get(url.clone()).send().await.expect("an answer");
    assert_eq!(page.status(), 400);
    assert!(page.headers().get("location").is_none());
    assert!(page.text().await.expect("text").contains("redirect_uri"));
    // Nor by posting the choice straight away.
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("uid".into(), "instructor-59".into()));
    let posted = http
        .post(format!("{}/authorize", dev.issuer()))
        .form(&form)
        .send()
        .await
        .expect("an answer");
    assert_eq!(posted.status(), 400);
    assert!(posted.headers().get("location").is_none());

    // A code sent to the registered URI, exchanged naming another one.
    let (client, _) = login_client(&dev, GATEWAY_REDIRECT).await;
    let (url, pending) = client.start();
    let callback = callback_of(&choose(&url, "mailroom-1").await);
    let exchange = http
        .post(format!("{}/token", dev.issuer()))
        .basic_auth(GATEWAY_CLIENT, Some(secret_of(GATEWAY_CLIENT).expose()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_ref().expect("a code").expose()),
            ("redirect_uri", "http://127.0.0.1:9999/steal"),
            ("code_verifier", pending.code_verifier.expose()),
        ])
        .send()
        .await
        .expect("an answer");
    assert_eq!(exchange.status(), 400);
    let body: serde_json::Value = exchange.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_machine_client_gets_a_client_token() {
    let (dev, _stop) = start().await;
    let metadata = metadata(&dev).await;
    let validator = validator_at(&metadata, 0, KeyPolicy::default());
    let http = reqwest::Client::new();
    let id = "guichet-ccc-software";
    let token = client_credentials(&http, &metadata, id, &secret_of(id), None)
        .await
        .expect("a client-credentials token");
    let direct = dev.client_token(id);
    for token in [token.access_token.expose(), direct.as_str()] {
        let claims = validator
            .access_token(token, API_AUDIENCE)
            .await
            .expect("accepted");
        assert_eq!(claims.client_id.as_deref(), Some(id));
        assert!(claims.is_client_token());
        assert_eq!(claims.uid, None);
    }
    // client_secret_post works too.
    let posted = http
        .post(&metadata.token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "guichet-scanner-1"),
            ("client_secret", "guichet-scanner-1-dev-secret"),
        ])
        .send()
        .await
        .expect("an answer");
    assert_eq!(posted.status(), 200);

    // A wrong secret; the sign-in client asking for a token of its own.
    let wrong = client_credentials(&http, &metadata, id, &Secret::new("guess"), None).await;
    assert!(
        matches!(&wrong, Err(ExchangeError::Refused { status: 401, error, .. }) if error == "invalid_client"),
        "{wrong:?}"
    );
    let gateway = GATEWAY_CLIENT;
    let not_machine =
        client_credentials(&http, &metadata, gateway, &secret_of(gateway), None).await;
    assert!(
        matches!(&not_machine, Err(ExchangeError::Refused { status: 400, error, .. }) if error == "unauthorized_client"),
        "{not_machine:?}"
    );
}

#[tokio::test]
async fn expired_wrong_audience_and_foreign_tokens_are_refused() {
    let (dev, _stop) = start().await;
    let metadata = metadata(&dev).await;
    let validator = validator_at(&metadata, 0, KeyPolicy::default());
    let expired = dev.token_with(serde_json::json!({"exp": Utc::now().timestamp() - 3600}));
    let outcome = validator.access_token(&expired, API_AUDIENCE).await;
    assert!(matches!(outcome, Err(TokenError::Expired)), "{outcome:?}");
    // Tokens live 300 s: judged 400 s later, past the 30 s of skew.
    let later = validator_at(&metadata, 400, KeyPolicy::default());
    let outcome = later
        .access_token(&dev.agent_token("ccc-1"), API_AUDIENCE)
        .await;
    assert!(matches!(outcome, Err(TokenError::Expired)), "{outcome:?}");

    let other = dev.token_with(serde_json::json!({"aud": "other-api"}));
    let outcome = validator.access_token(&other, API_AUDIENCE).await;
    assert!(
        matches!(outcome, Err(TokenError::WrongAudience)),
        "{outcome:?}"
    );
    let outcome = validator
        .access_token(&dev.agent_token("ccc-1"), "other-api")
        .await;
    assert!(
        matches!(outcome, Err(TokenError::WrongAudience)),
        "{outcome:?}"
    );

    // Without a subject (the validator reads it before its own check of
    // required claims, so it says Malformed).
    let no_sub = dev.token_with(serde_json::json!({"sub": null}));
    let outcome = validator.access_token(&no_sub, API_AUDIENCE).await;
    assert!(
        matches!(
            outcome,
            Err(TokenError::Malformed | TokenError::MissingClaim(_))
        ),
        "{outcome:?}"
    );

    // Another development issuer: keys of its own.
    let (stranger, _stop_too) = start().await;
    let outcome = validator
        .access_token(&stranger.agent_token("ccc-1"), API_AUDIENCE)
        .await;
    assert!(
        matches!(outcome, Err(TokenError::UnknownKey)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_accepted_by_the_same_validator() {
    let (dev, _stop) = start().await;
    let metadata = metadata(&dev).await;
    let policy = KeyPolicy {
        max_age: Duration::from_secs(600),
        min_refresh_interval: Duration::from_millis(300),
    };
    let validator = validator_at(&metadata, 0, policy);
    let before = dev.client_token("guichet-desk-software");
    validator
        .access_token(&before, API_AUDIENCE)
        .await
        .expect("the first key");
    let first_keys = validator.keys().key_ids();

    dev.rotate_keys();
    let after = dev.client_token("guichet-desk-software");
    // At most one fetch per interval: accepted within a few.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while validator.access_token(&after, API_AUDIENCE).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys = validator.keys().key_ids();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        first_keys.iter().all(|k| keys.contains(k)),
        "the old key still published"
    );
    validator
        .access_token(&before, API_AUDIENCE)
        .await
        .expect("the old key still verifies");
}

#[tokio::test]
async fn it_publishes_what_clients_need_and_no_private_key() {
    let (dev, stop) = start().await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", dev.issuer()))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    assert_eq!(doc["issuer"], dev.issuer());
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    dev.rotate_keys();
    let jwks: serde_json::Value = http
        .get(doc["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    for key in keys {
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert!(key.get("d").is_none(), "no private part: {key}");
    }

    // Loopback only.
    let open = "0.0.0.0:0".parse().expect("an address");
    let refused = DevIssuer::start(open, DevConfig::standard(clock(0)), Shutdown::new()).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );

    // Stopped with the shutdown signal.
    drop(stop);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reqwest::get(format!("{}/jwks", dev.issuer())).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
