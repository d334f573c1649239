//! Against a real OpenID provider (oidc-provider, `infra/oidc`): tokens
//! accepted and refused as they should be, a rotated key picked up by the
//! same validator, and the browser sign-in (code + PKCE) driven through the
//! provider's own pages.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use guichet_identity::{
    Callback, ExchangeError, KeyCache, KeyPolicy, LoginClient, LoginError, PendingLogin,
    ProviderMetadata, Secret, TokenError, Validator,
};
use support::{
    API_AUDIENCE, DEV_PASSWORD, GATEWAY_CLIENT, GATEWAY_REDIRECT, Jar, OTHER_RESOURCE, Provider,
    clock, secret_of, sign_in, validator, validator_with,
};

#[tokio::test]
async fn a_machine_clients_token_is_accepted() {
    let provider = Provider::start();
    let metadata = provider.metadata().await;
    let token = provider.client_token("guichet-ccc-software", None).await;
    let claims = validator(&metadata)
        .access_token(token.access_token.expose(), API_AUDIENCE)
        .await
        .expect("a valid token");
    assert_eq!(claims.client_id.as_deref(), Some("guichet-ccc-software"));
    assert!(claims.is_client_token());
    assert!(claims.expires_at > chrono::Utc::now());
}

#[tokio::test]
async fn an_expired_token_is_refused_past_the_allowed_skew_only() {
    let provider = Provider::start();
    let metadata = provider.metadata().await;
    let token = provider.client_token("guichet-desk-software", None).await;
    let token = token.access_token.expose();
    let at = |offset| {
        validator_with(
            &metadata,
            clock(chrono::Duration::seconds(offset)),
            KeyPolicy::default(),
        )
    };
    // The provider's tokens live 300 s; the validator allows 30 s of skew.
    let within_skew = at(300 + 20).access_token(token, API_AUDIENCE).await;
    assert!(within_skew.is_ok(), "{within_skew:?}");
    let expired = at(300 + 60).access_token(token, API_AUDIENCE).await;
    assert!(matches!(expired, Err(TokenError::Expired)), "{expired:?}");
    // Issued, by our clock, well in the future: not valid yet.
    let early = at(-120).access_token(token, API_AUDIENCE).await;
    assert!(matches!(early, Err(TokenError::NotYetValid)), "{early:?}");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let dir = std::env::temp_dir().join(format!("guichet-oidc-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let keys = dir.join("keys.json");
    let ours = Provider::start_with_keys(Some(&keys));
    // The same keys, another issuer: only the `iss` check stands between.
    let twin = Provider::start_with_keys(Some(&keys));
    // Keys of its own, too.
    let stranger = Provider::start();
    let validator = validator(&ours.metadata().await);
    for (from, expected) in [(&twin, "WrongIssuer"), (&stranger, "UnknownKey")] {
        let token = from.client_token("guichet-ccc-software", None).await;
        let refused = validator
            .access_token(token.access_token.expose(), API_AUDIENCE)
            .await
            .expect_err("another issuer's token");
        assert_eq!(format!("{refused:?}"), expected);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let provider = Provider::start();
    let metadata = provider.metadata().await;
    let validator = validator(&metadata);
    let other = provider
        .client_token("guichet-ccc-software", Some(OTHER_RESOURCE))
        .await;
    let refused = validator
        .access_token(other.access_token.expose(), API_AUDIENCE)
        .await;
    assert!(
        matches!(refused, Err(TokenError::WrongAudience)),
        "{refused:?}"
    );
    // Ours, checked as if for another API.
    let ours = provider.client_token("guichet-ccc-software", None).await;
    let refused = validator
        .access_token(ours.access_token.expose(), "other-api")
        .await;
    assert!(
        matches!(refused, Err(TokenError::WrongAudience)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_key_rotated_at_the_provider_is_accepted_by_the_same_validator() {
    let provider = Provider::start();
    let metadata = provider.metadata().await;
    let policy = KeyPolicy {
        max_age: Duration::from_secs(600),
        min_refresh_interval: Duration::from_millis(300),
    };
    let validator = validator_with(&metadata, clock(chrono::Duration::zero()), policy);
    let before = provider.client_token("guichet-desk-software", None).await;
    validator
        .access_token(before.access_token.expose(), API_AUDIENCE)
        .await
        .expect("a token signed with the first key");

    let new_kids = provider.rotate_keys(false).await;
    let after = provider.client_token("guichet-desk-software", None).await;
    let kid = jsonwebtoken_kid(after.access_token.expose());
    assert!(new_kids.contains(&kid), "signed with the new key");
    assert!(!validator.keys().key_ids().contains(&kid));
    // At most one fetch per interval: the first try may come too soon
    // after the last fetch; it is accepted within a few intervals.
    eventually(|| async {
        validator
            .access_token(after.access_token.expose(), API_AUDIENCE)
            .await
            .is_ok()
    })
    .await;
    // The previous key is still published: its tokens still verify.
    validator
        .access_token(before.access_token.expose(), API_AUDIENCE)
        .await
        .expect("the old key, still published");

    // Withdrawn at the provider: refused once the keys are fetched again.
    provider.rotate_keys(true).await;
    let newest = provider.client_token("guichet-desk-software", None).await;
    eventually(|| async {
        validator
            .access_token(newest.access_token.expose(), API_AUDIENCE)
            .await
            .is_ok()
    })
    .await;
    let withdrawn = validator
        .access_token(before.access_token.expose(), API_AUDIENCE)
        .await;
    assert!(
        matches!(withdrawn, Err(TokenError::UnknownKey)),
        "{withdrawn:?}"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_asks_for_the_keys_once_per_interval() {
    let provider = Provider::start();
    let metadata = provider.metadata().await;
    let jwks: serde_json::Value = reqwest::get(&metadata.jwks_uri)
        .await
        .expect("the keys")
        .json()
        .await
        .expect("JSON");
    // The provider's keys, served by a counter.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::Json(jwks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let keys = KeyCache::new(
        reqwest::Client::new(),
        format!("http://{addr}/jwks"),
        KeyPolicy {
            max_age: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(60),
        },
    );
    let validator = Validator::new(
        &metadata,
        keys,
        clock(chrono::Duration::zero()),
        Duration::from_secs(30),
    )
    .expect("a validator");
    let genuine = provider.client_token("guichet-ccc-software", None).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let validator = validator.clone();
            let forged = forged_with_kid(genuine.access_token.expose(), &format!("made-up-{i}"));
            tokio::spawn(async move { validator.access_token(&forged, API_AUDIENCE).await })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.expect("the task");
        assert!(
            matches!(outcome, Err(TokenError::UnknownKey)),
            "{outcome:?}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch for 200 forgeries"
    );
    validator
        .access_token(genuine.access_token.expose(), API_AUDIENCE)
        .await
        .expect("the genuine token still passes");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
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

async fn login_client(provider: &Provider) -> (LoginClient, Validator, ProviderMetadata) {
    let metadata = provider.metadata().await;
    let validator = validator(&metadata);
    let client = LoginClient::new(
        metadata.clone(),
        reqwest::Client::new(),
        GATEWAY_CLIENT,
        secret_of(GATEWAY_CLIENT),
        GATEWAY_REDIRECT,
        validator.clone(),
    )
    .expect("a login client");
    (client, validator, metadata)
}

#[tokio::test]
async fn an_agent_signs_in_with_code_and_pkce() {
    let provider = Provider::start();
    let (client, validator, _) = login_client(&provider).await;
    let (url, pending) = client.start();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(param("code_challenge_method"), Some("S256"));
    assert_eq!(param("state"), Some(pending.state.expose()));
    assert!(
        !url.as_str().contains(pending.code_verifier.expose()),
        "only the challenge leaves"
    );

    let back = sign_in(&url, "instructor-59", DEV_PASSWORD).await;
    let callback = callback_of(&back);
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
    assert!(
        !format!("{who:?}").contains("Lefebvre"),
        "no names in Debug"
    );
    // The access token from the same sign-in opens the API.
    let access = validator
        .access_token(signed_in.access_token.expose(), API_AUDIENCE)
        .await
        .expect("the agent's access token");
    assert_eq!(access.uid.as_deref(), Some("instructor-59"));
    assert!(!access.is_client_token());

    // A code serves once.
    let replay = client.finish(&pending, &callback).await;
    assert!(
        matches!(&replay, Err(LoginError::Exchange(ExchangeError::Refused { error, .. })) if error == "invalid_grant"),
        "{replay:?}"
    );
}

#[tokio::test]
async fn a_sign_in_is_refused_without_its_verifier_state_or_nonce() {
    let provider = Provider::start();
    let (client, _, _) = login_client(&provider).await;
    let other = |pending: &PendingLogin, which: &str| {
        let mut p = pending.clone();
        let fake = Secret::new("x".repeat(43));
        match which {
            "verifier" => p.code_verifier = fake,
            "state" => p.state = fake,
            _ => p.nonce = fake,
        }
        p
    };

    // Someone else's verifier: the provider will not give the tokens.
    let (url, pending) = client.start();
    let callback = callback_of(&sign_in(&url, "desk-59", DEV_PASSWORD).await);
    let refused = client.finish(&other(&pending, "verifier"), &callback).await;
    assert!(
        matches!(&refused, Err(LoginError::Exchange(ExchangeError::Refused { error, .. })) if error == "invalid_grant"),
        "{refused:?}"
    );

    // A callback for another sign-in: refused before the code is used.
    let (url, pending) = client.start();
    let callback = callback_of(&sign_in(&url, "desk-59", DEV_PASSWORD).await);
    let refused = client.finish(&other(&pending, "state"), &callback).await;
    assert!(
        matches!(refused, Err(LoginError::StateMismatch)),
        "{refused:?}"
    );
    // That code is still good for its own sign-in, but not with another nonce.
    let refused = client.finish(&other(&pending, "nonce"), &callback).await;
    assert!(
        matches!(refused, Err(LoginError::IdToken(TokenError::NonceMismatch))),
        "{refused:?}"
    );

    // A callback that claims another issuer.
    let (_, pending) = client.start();
    let forged = Callback {
        code: Some(Secret::new("whatever")),
        state: Some(pending.state.expose().to_string()),
        iss: Some("https://evil.example".into()),
        ..Callback::default()
    };
    let refused = client.finish(&pending, &forged).await;
    assert!(
        matches!(refused, Err(LoginError::IssuerMismatch)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_gets_no_code() {
    let provider = Provider::start();
    let (client, _, _) = login_client(&provider).await;
    let (url, _) = client.start();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let mut jar = Jar::default();
    let first = http.get(url.clone()).send().await.expect("the provider");
    jar.take(&first);
    let location = first
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("to the login page");
    let login = url
        .join(&format!("{location}/login"))
        .expect("the login URL");
    let refused = http
        .post(login)
        .header("cookie", jar.header())
        .form(&[("login", "instructor-59"), ("password", "guess")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("location").is_none());
}

/// Polls `check` until it holds, for at most five seconds.
async fn eventually<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not so within five seconds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn header_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let head = token.split('.').next().expect("a header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON header")
}

fn jsonwebtoken_kid(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("a kid").to_string()
}

/// The same token with another `kid` in its header (its signature no
/// longer matches, but the key is looked up first).
fn forged_with_kid(token: &str, kid: &str) -> String {
    let mut header = header_of(token);
    header["kid"] = serde_json::Value::String(kid.to_string());
    let rest = token.split_once('.').expect("a JWT").1;
    format!(
        "{}.{rest}",
        b64(&serde_json::to_vec(&header).expect("JSON"))
    )
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

#[tokio::test]
async fn with_the_provider_unreachable_a_token_is_unjudged_not_refused() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let metadata = ProviderMetadata {
        issuer: issuer.clone(),
        authorization_endpoint: format!("{issuer}/auth"),
        token_endpoint: format!("{issuer}/token"),
        jwks_uri: format!("{issuer}/jwks"),
        userinfo_endpoint: None,
        end_session_endpoint: None,
        code_challenge_methods_supported: vec!["S256".into()],
        authorization_response_iss_parameter_supported: true,
    };
    let validator = validator(&metadata);
    let token = format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"ES256","kid":"k1"}"#),
        b64(br#"{"sub":"x"}"#)
    );
    for attempt in 0..3 {
        let outcome = validator.access_token(&token, API_AUDIENCE).await;
        assert!(
            outcome.as_ref().is_err_and(TokenError::is_unavailable),
            "attempt {attempt}: {outcome:?}"
        );
    }
}
