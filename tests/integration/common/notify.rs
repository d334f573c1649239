//! What the notifier talks to, for tests: a real SMTP server (Python's
//! aiosmtpd, from PyPI, which `.ci/run` installs) writing what it receives
//! to a maildir, and an SMS provider double speaking the same Twilio-style
//! HTTP the notifier's adapter speaks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{eventually, free_port};

/// An SMTP server on a port of its own, as a separate process.
pub struct SmtpInbox {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<tokio::process::Child>,
}

/// One message the server received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub raw: String,
}

impl Mail {
    /// The attachment called `file_name`, decoded.
    pub fn attachment(&self, file_name: &str) -> Option<Vec<u8>> {
        // A long name is sent as an RFC 2231 parameter (`filename*0=`).
        let at = self
            .raw
            .find(&format!("filename=\"{file_name}\""))
            .or_else(|| self.raw.find(&format!("filename*0=\"{file_name}\"")))?;
        let rest = &self.raw[at..];
        let body_start = rest.find("\n\n").or_else(|| rest.find("\r\n\r\n"))?;
        let body: String = rest[body_start..]
            .lines()
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty() && !l.starts_with("--"))
            .collect();
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    }

    /// The raw message with quoted-printable soft line breaks joined, so a
    /// long word (a follow-up code) reads whole.
    pub fn unfolded(&self) -> String {
        self.raw.replace("=\r\n", "").replace("=\n", "")
    }

    /// The word following `label` in the text, up to a space or a dot.
    pub fn word_after(&self, label: &str) -> Option<String> {
        let text = self.unfolded();
        let at = text.find(label)? + label.len();
        Some(
            text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '.')
                .collect(),
        )
    }
}

impl SmtpInbox {
    pub async fn start() -> Self {
        let mut inbox = SmtpInbox {
            port: free_port(),
            dir: std::env::temp_dir().join(format!("guichet-smtp-{}", uuid::Uuid::new_v4())),
            child: None,
        };
        inbox.spawn().await;
        inbox
    }

    async fn spawn(&mut self) {
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.dir)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (aiosmtpd: `pip install aiosmtpd`, as .ci/run does)");
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("just started");
        eventually(
            Duration::from_secs(20),
            "the SMTP server to listen",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        assert!(
            child.try_wait().expect("the SMTP server's state").is_none(),
            "the SMTP server exited: is aiosmtpd installed (pip install aiosmtpd)?"
        );
    }

    /// Where the notifier sends: plain SMTP, on this machine.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops the server; connections are refused until `restart`.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop the SMTP server");
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Mail> {
        let mut mails = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(raw) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                let to = raw
                    .lines()
                    .find_map(|l| l.strip_prefix("X-RcptTo: "))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                mails.push(Mail { to, raw });
            }
        }
        mails
    }
}

impl Drop for SmtpInbox {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const SMS_ACCOUNT: &str = "AC-test";
pub const SMS_TOKEN: &str = "sms-token-test";
/// The double refuses this number for good, as a provider refuses a number
/// that is not a mobile.
pub const NOT_A_MOBILE: &str = "+33140000000";
/// The double takes SMS for this number, then reports them undelivered (a
/// phone switched off past the message's validity).
pub const NEVER_DELIVERED: &str = "+33699999999";

/// One SMS the double took.
#[derive(Debug, Clone)]
pub struct Sms {
    pub sid: String,
    pub to: String,
    pub body: String,
}

#[derive(Clone, Default)]
struct Taken(Arc<Mutex<Vec<Sms>>>);

/// An SMS provider double on a port of its own.
pub struct SmsDouble {
    pub addr: SocketAddr,
    taken: Taken,
    task: tokio::task::JoinHandle<()>,
}

impl SmsDouble {
    pub async fn start() -> Self {
        let taken = Taken::default();
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(send))
            .route("/2010-04-01/Accounts/{account}/Messages/{sid}", get(report))
            .with_state(taken.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMS double");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SmsDouble { addr, taken, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Sms> {
        self.taken.0.lock().expect("not poisoned").clone()
    }
}

impl Drop for SmsDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn authorized(headers: &HeaderMap, account: &str) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SMS_ACCOUNT}:{SMS_TOKEN}"))
    );
    account == SMS_ACCOUNT
        && headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
}

async fn send(
    State(taken): State<Taken>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers, &account) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": 20003, "message": "Authenticate"})),
        );
    }
    let (Some(to), Some(body)) = (form.get("To"), form.get("Body")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 21602, "message": "A 'To' and a 'Body' are required."})),
        );
    };
    if to == NOT_A_MOBILE {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 21614, "message": "'To' number is not a valid mobile number"})),
        );
    }
    // GSM-7 in one segment, as the notifier promises.
    if body.chars().count() > 160 {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"code": 21617, "message": "The concatenated message body exceeds the 160 character limit"}),
            ),
        );
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    taken.0.lock().expect("not poisoned").push(Sms {
        sid: sid.clone(),
        to: to.clone(),
        body: body.clone(),
    });
    (
        StatusCode::CREATED,
        Json(json!({"sid": sid, "status": "queued", "to": to})),
    )
}

async fn report(
    State(taken): State<Taken>,
    Path((account, sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers, &account) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 20003})));
    }
    let sid = sid.trim_end_matches(".json");
    let to = taken
        .0
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|s| s.sid == sid)
        .map(|s| s.to.clone());
    if let Some(to) = to {
        let status = if to == NEVER_DELIVERED {
            "undelivered"
        } else {
            "delivered"
        };
        (StatusCode::OK, Json(json!({"sid": sid, "status": status})))
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"code": 20404})))
    }
}

/// The mesh on `config`, its notifier sending to `inbox` and `sms`, on
/// `clock`.
pub async fn notified_app(
    mut config: guichet::Settings,
    inbox: &SmtpInbox,
    sms: &SmsDouble,
    clock: Arc<super::ShiftedClock>,
) -> super::App {
    config.notifier.smtp_url = Some(inbox.url());
    config.notifier.sms_url = Some(sms.url());
    config.notifier.sms_account = SMS_ACCOUNT.into();
    config.notifier.sms_token = SMS_TOKEN.into();
    config.notifier.notify_retry_seconds = 1;
    config.sweep_interval_s = 1;
    super::App::builder(&config).clock(clock).start().await
}

/// A clock at the next 23:00 in Paris, when notices' SMS wait for morning.
pub fn night_clock() -> Arc<super::ShiftedClock> {
    use chrono::TimeZone;
    let clock = Arc::new(super::ShiftedClock::default());
    let now = chrono::Utc::now();
    let paris = now.with_timezone(&chrono_tz::Europe::Paris);
    let eleven = chrono_tz::Europe::Paris
        .from_local_datetime(&paris.date_naive().and_hms_opt(23, 0, 0).expect("23:00"))
        .earliest()
        .expect("23:00 exists");
    let at = if eleven > now {
        eleven
    } else {
        eleven + chrono::Duration::days(1)
    };
    clock.advance(at.with_timezone(&chrono::Utc) - now);
    clock
}

/// A clock in the daytime in Paris, when SMS may be sent: the system's, or
/// moved forward to the next noon when the tests run at night.
pub fn daytime_clock() -> Arc<super::ShiftedClock> {
    use chrono::{TimeZone, Timelike};
    let clock = Arc::new(super::ShiftedClock::default());
    let now = chrono::Utc::now();
    let paris = now.with_timezone(&chrono_tz::Europe::Paris);
    if !(8..20).contains(&paris.hour()) {
        let day = if paris.hour() >= 20 {
            paris.date_naive().succ_opt().expect("a next day")
        } else {
            paris.date_naive()
        };
        let noon = chrono_tz::Europe::Paris
            .from_local_datetime(&day.and_hms_opt(12, 0, 0).expect("noon"))
            .earliest()
            .expect("noon exists");
        clock.advance(noon.with_timezone(&chrono::Utc) - now);
    }
    clock
}
