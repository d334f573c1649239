//! SMS, behind a small provider interface. One real adapter speaks the
//! widely used Twilio-style REST API (`POST .../Accounts/{account}/Messages.json`
//! with basic auth, then `GET .../Messages/{id}.json` for the delivery
//! report), which many providers and gateways also offer; the embedded
//! default writes each SMS to a file in the data folder.

use std::path::PathBuf;

use serde::Deserialize;

/// Why an SMS was not handed over, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("the provider refused the message for good: {0}")]
    Permanent(String),
    #[error("the provider cannot take it now: {0}")]
    Transient(String),
}

impl SmsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SmsError::Permanent(_))
    }
}

/// What the provider says became of a message handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Still on its way.
    Pending,
    Delivered,
    /// It will not arrive (switched-off phone past its validity, unknown number).
    Undelivered,
}

/// An SMS provider.
#[derive(Clone)]
pub enum SmsProvider {
    Http(HttpSms),
    Folder(PathBuf),
}

impl SmsProvider {
    /// Hands `text` to the provider for `to` (E.164); the provider's id of
    /// the message, to ask later whether it arrived.
    pub async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SmsError> {
        match self {
            SmsProvider::Http(h) => h.send(to, text).await.map(Some),
            SmsProvider::Folder(dir) => {
                let id = uuid::Uuid::now_v7();
                let path = dir.join(format!("{id}.txt"));
                tokio::fs::create_dir_all(dir)
                    .await
                    .and(tokio::fs::write(&path, format!("To: {to}\n\n{text}\n")).await)
                    .map_err(|e| SmsError::Transient(format!("{}: {e}", path.display())))?;
                Ok(None)
            }
        }
    }

    /// Whether the message `id` reached the phone.
    pub async fn report(&self, id: &str) -> Result<Report, SmsError> {
        match self {
            SmsProvider::Http(h) => h.report(id).await,
            SmsProvider::Folder(_) => Ok(Report::Delivered),
        }
    }
}

/// The Twilio-style REST API.
#[derive(Clone)]
pub struct HttpSms {
    client: reqwest::Client,
    base: String,
    account: String,
    token: String,
    sender: String,
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
    status: String,
}

#[derive(Deserialize)]
struct ErrorResource {
    code: Option<i64>,
}

impl HttpSms {
    pub fn new(
        base: &str,
        account: &str,
        token: &str,
        sender: &str,
    ) -> Result<Self, reqwest::Error> {
        Ok(HttpSms {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            account: account.to_string(),
            token: token.to_string(),
            sender: sender.to_string(),
        })
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages",
            self.base, self.account
        )
    }

    async fn send(&self, to: &str, text: &str) -> Result<String, SmsError> {
        let response = self
            .client
            .post(format!("{}.json", self.messages_url()))
            .basic_auth(&self.account, Some(&self.token))
            .form(&[("To", to), ("From", self.sender.as_str()), ("Body", text)])
            .send()
            .await
            .map_err(|e| SmsError::Transient(transport(&e)))?;
        let status = response.status();
        if status.is_success() {
            let m: MessageResource = response
                .json()
                .await
                .map_err(|e| SmsError::Transient(format!("unreadable answer: {e}")))?;
            return Ok(m.sid);
        }
        // The provider's code, not its message, which may quote the number.
        let code = response
            .json::<ErrorResource>()
            .await
            .ok()
            .and_then(|e| e.code)
            .map(|c| format!(", code {c}"))
            .unwrap_or_default();
        let why = format!("HTTP {}{code}", status.as_u16());
        // 4xx other than throttling and authentication: this message will
        // never be taken (a number that is not a mobile, a body refused).
        // Credentials and throttling are fixed by waiting or by an operator.
        if status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 408 | 429) {
            Err(SmsError::Permanent(why))
        } else {
            Err(SmsError::Transient(why))
        }
    }

    async fn report(&self, id: &str) -> Result<Report, SmsError> {
        let response = self
            .client
            .get(format!("{}/{id}.json", self.messages_url()))
            .basic_auth(&self.account, Some(&self.token))
            .send()
            .await
            .map_err(|e| SmsError::Transient(transport(&e)))?;
        if !response.status().is_success() {
            return Err(SmsError::Transient(format!("HTTP {}", response.status())));
        }
        let m: MessageResource = response
            .json()
            .await
            .map_err(|e| SmsError::Transient(format!("unreadable answer: {e}")))?;
        Ok(match m.status.as_str() {
            "delivered" => Report::Delivered,
            "undelivered" | "failed" => Report::Undelivered,
            _ => Report::Pending,
        })
    }
}

/// A transport failure, without the URL (it may carry the account).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the provider did not answer in time".into()
    } else if e.is_connect() {
        "the provider cannot be reached".into()
    } else {
        "the exchange with the provider failed".into()
    }
}
