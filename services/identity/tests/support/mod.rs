//! A real OpenID provider for the tests: `infra/oidc/server.mjs`
//! (oidc-provider from the npm registry), one per test on a port of its
//! own. No node, or no `npm ci` in infra/oidc: the test fails, saying so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use guichet_identity::{
    KeyCache, KeyPolicy, ProviderMetadata, Secret, TokenResponse, Validator, client_credentials,
};
use guichet_kit::clock::{Clock, SharedClock};

pub const API_AUDIENCE: &str = "guichet";
pub const OTHER_RESOURCE: &str = "urn:example:other-api";
pub const GATEWAY_CLIENT: &str = "guichet-gateway";
pub const GATEWAY_REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";
pub const DEV_PASSWORD: &str = "guichet-dev";

pub fn secret_of(client_id: &str) -> Secret {
    Secret::new(format!("{client_id}-dev-secret"))
}

pub struct Provider {
    child: Child,
    pub issuer: String,
}

/// `infra/oidc`, from this crate's tests or the root package's.
fn oidc_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("infra/oidc");
    if root.is_dir() {
        root
    } else {
        here.join("../../infra/oidc")
    }
}

impl Provider {
    pub fn start() -> Provider {
        Provider::start_for(GATEWAY_REDIRECT)
    }

    /// With the signing keys of `keys_file` (written there if it does not
    /// exist yet), so two issuers can share keys.
    pub fn start_with_keys(keys_file: Option<&Path>) -> Provider {
        Provider::launch(keys_file, GATEWAY_REDIRECT)
    }

    /// With the gateway's sign-in coming back to `redirect` (a gateway
    /// listening elsewhere than the development default).
    pub fn start_for(redirect: &str) -> Provider {
        Provider::launch(None, redirect)
    }

    fn launch(keys_file: Option<&Path>, redirect: &str) -> Provider {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID provider is not installed: run `npm ci` in {} (node and npm needed)",
            dir.display()
        );
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_GATEWAY_REDIRECT_URIS", redirect)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(file) = keys_file {
            command.env("OIDC_KEYS_FILE", file);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (is it installed?): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // The provider's warnings are kept out of the test output, and
        // shown if it does not start.
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if !line.trim().is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let errors = err_rx
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                panic!("the test OpenID provider did not start:\n{errors}");
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("its ready line");
        let issuer = ready["issuer"].as_str().expect("an issuer").to_string();
        Provider { child, issuer }
    }

    pub async fn metadata(&self) -> ProviderMetadata {
        ProviderMetadata::discover(&reqwest::Client::new(), &self.issuer)
            .await
            .expect("the discovery document")
    }

    /// New signing keys at the provider; `retire`: the old ones withdrawn.
    pub async fn rotate_keys(&self, retire: bool) -> Vec<String> {
        let url = format!(
            "{}/admin/rotate-keys{}",
            self.issuer,
            if retire { "?retire=1" } else { "" }
        );
        let answer: serde_json::Value = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("the rotation endpoint")
            .json()
            .await
            .expect("its answer");
        answer["signing"]
            .as_array()
            .expect("the new key ids")
            .iter()
            .map(|k| k.as_str().expect("a key id").to_string())
            .collect()
    }

    /// A machine client's access token (`resource`: another API's).
    pub async fn client_token(&self, client_id: &str, resource: Option<&str>) -> TokenResponse {
        client_credentials(
            &reqwest::Client::new(),
            &self.metadata().await,
            client_id,
            &secret_of(client_id),
            resource,
        )
        .await
        .expect("a client-credentials token")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The system clock, moved by `offset`: to judge a token later or earlier.
pub struct Shifted(pub chrono::Duration);

impl Clock for Shifted {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

pub fn clock(offset: chrono::Duration) -> SharedClock {
    std::sync::Arc::new(Shifted(offset))
}

pub fn validator_with(
    metadata: &ProviderMetadata,
    clock: SharedClock,
    policy: KeyPolicy,
) -> Validator {
    let keys = KeyCache::new(reqwest::Client::new(), metadata.jwks_uri.clone(), policy);
    Validator::new(metadata, keys, clock, Duration::from_secs(30)).expect("a validator")
}

pub fn validator(metadata: &ProviderMetadata) -> Validator {
    validator_with(
        metadata,
        clock(chrono::Duration::zero()),
        KeyPolicy::default(),
    )
}

/// Cookies by name, as a browser keeps them for one site (paths ignored:
/// the provider's cookies are all its own).
#[derive(Default)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = text
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970");
            if value.is_empty() || expired {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_string(), value.to_string());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The browser's side of a sign-in: follows the provider's redirects and
/// fills its login form, up to the redirect back to Guichet.
pub async fn sign_in(start: &reqwest::Url, login: &str, password: &str) -> reqwest::Url {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let mut jar = Jar::default();
    let mut url = start.clone();
    for _ in 0..10 {
        let is_form = url.path().starts_with("/interaction/") && !url.path().ends_with("/login");
        let response = if is_form {
            let form = http
                .get(url.clone())
                .header("cookie", jar.header())
                .send()
                .await
                .expect("the login page");
            jar.take(&form);
            assert_eq!(form.status(), 200);
            let page = form.text().await.expect("the page");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("the form's action");
            url = url.join(action).expect("the action URL");
            http.post(url.clone())
                .header("cookie", jar.header())
                .form(&[("login", login), ("password", password)])
                .send()
                .await
                .expect("the login")
        } else {
            http.get(url.clone())
                .header("cookie", jar.header())
                .send()
                .await
                .expect("a step of the sign-in")
        };
        jar.take(&response);
        assert!(
            response.status().is_redirection(),
            "{url}: {}",
            response.status()
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("a redirect");
        url = url.join(location).expect("the redirect URL");
        // Back at a gateway's callback (the development default, or the
        // one a test registered).
        if url.path() == "/auth/callback" {
            return url;
        }
    }
    panic!("the sign-in never came back to Guichet");
}
