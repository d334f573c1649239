//! A person sees their own file's personal details with a code sent to the
//! contact on that file: through the gateway, the notifier, a real SMTP
//! server (aiosmtpd) and the SMS provider double, at night (a code is not
//! held back until morning like the notices' SMS).

use crate::common;

use std::time::Duration;

use common::notify::{SmsDouble, SmtpInbox, night_clock, notified_app};
use common::{App, Backend, TestEnv, count, eventually, example};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const BORN: &str = "1991-03-02";

async fn ask_code(app: &App, reference: &str, birth_date: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/api/v1/dossiers/{reference}/code", app.base))
        .json(&json!({ "birth_date": birth_date }))
        .send()
        .await
        .unwrap()
}

async fn with_code(app: &App, path: &str, code: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.base))
        .header("X-Person-Code", code)
        .send()
        .await
        .unwrap()
}

/// The code in the `n`th SMS sent about `reference` (0 first).
pub(crate) async fn nth_code(sms: &SmsDouble, reference: &str, n: usize) -> String {
    let body = eventually(WAIT, "the code's SMS", || async {
        sms.messages()
            .into_iter()
            .filter(|s| s.to == "+33612345678" && s.body.contains(reference))
            .filter(|s| s.body.contains("code"))
            .nth(n)
            .map(|s| s.body)
    })
    .await;
    let code: String = body
        .rsplit(": ")
        .next()
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6, "{body}");
    code
}

on_both_backends!(a_person_sees_their_file_with_the_code_sent_to_their_contact);
async fn a_person_sees_their_file_with_the_code_sent_to_their_contact(backend: Backend) {
    let env = TestEnv::on(backend).await;
    // Room to show the code's own limit before the address's.
    let mut config = env.config();
    config.status_tries = 100;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(config, &inbox, &sms, night_clock()).await;
    let reference = app.file_accepted(&example("renewal-employee.json")).await;
    let status_path = format!("/api/v1/dossiers/{reference}/status?birth_date={BORN}");
    let status: Value = eventually(WAIT, "the dossier in instruction", || async {
        let r = app.get(&status_path).await;
        if r.status() == 200 {
            r.json().await.ok()
        } else {
            None
        }
    })
    .await;
    // The birth date alone: where it stands, not whom it names.
    assert!(status.get("holder").is_none(), "{status}");
    assert!(status.get("linked").is_none(), "{status}");
    assert!(!status.to_string().contains("Benali"), "{status}");
    let dossier_path = format!("/api/v1/dossiers/{reference}");
    assert_eq!(app.get(&dossier_path).await.status(), 401);

    // A wrong birth date sends nothing.
    let r = ask_code(&app, &reference, "1991-03-03").await;
    assert_eq!(r.status(), 404, "{:?}", r.text().await);
    let r = ask_code(&app, &reference, BORN).await;
    assert_eq!(r.status(), 202);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(
        sent["sent_to"],
        json!([
            {"medium": "email", "to": "s•••@example.org"},
            {"medium": "sms", "to": "•••••••••78"},
        ]),
        "{sent}"
    );
    assert_eq!(sent["valid_minutes"], 15);
    let code = nth_code(&sms, &reference, 0).await;
    let mail = eventually(WAIT, "the code's e-mail", || async {
        inbox
            .messages()
            .into_iter()
            .find(|m| m.to == "samira.benali@example.org" && m.raw.contains(&code))
    })
    .await;
    assert!(mail.raw.contains(reference.as_str()), "{}", mail.raw);

    // With the code: the whole file and whom it names.
    let r = with_code(&app, &dossier_path, &code).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let dossier: Value = r.json().await.unwrap();
    assert_eq!(dossier["reference"], reference.as_str(), "{dossier}");
    let r = with_code(&app, &status_path, &code).await;
    assert_eq!(r.status(), 200);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["holder"]["family_name"], "Benali", "{status}");
    assert_eq!(status["holder"]["foreigner_number"], "7503123456");

    // A wrong code is refused and names nobody.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let r = with_code(&app, &dossier_path, wrong).await;
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("Benali"));

    // A new code replaces the last.
    assert_eq!(ask_code(&app, &reference, BORN).await.status(), 202);
    let second = nth_code(&sms, &reference, 1).await;
    if second != code {
        assert_eq!(with_code(&app, &dossier_path, &code).await.status(), 401);
    }
    assert_eq!(with_code(&app, &dossier_path, &second).await.status(), 200);
    // Three codes per file in 15 minutes, then a wait.
    assert_eq!(ask_code(&app, &reference, BORN).await.status(), 202);
    let third = nth_code(&sms, &reference, 2).await;
    let r = ask_code(&app, &reference, BORN).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    // Five wrong codes end the code, even for whoever then has it right.
    let wrong = if third == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_eq!(with_code(&app, &dossier_path, wrong).await.status(), 401);
    }
    assert_eq!(with_code(&app, &dossier_path, &third).await.status(), 401);

    // The notifier recorded each send (six: three codes, two media each),
    // never the code.
    let db = env.db("notifier").await;
    let sends = count(
        &db,
        &format!(
            "SELECT count(*) FROM notices WHERE subject_ref = '{reference}' \
             AND kind = 'access_code' AND state = 'sent'"
        ),
    )
    .await;
    assert_eq!(sends, 6);
    for c in [&code, &second, &third] {
        let kept = count(
            &db,
            &format!(
                "SELECT count(*) FROM notices WHERE notice_key LIKE '%{c}%' \
                 OR recipient LIKE '%{c}%' OR failure LIKE '%{c}%'"
            ),
        )
        .await;
        assert_eq!(kept, 0, "the code {c} is kept by the notifier");
    }
    db.close().await;
    let db = env.db("gateway").await;
    let kept = count(
        &db,
        &format!("SELECT count(*) FROM person_codes WHERE code_hash = '{third}'"),
    )
    .await;
    assert_eq!(kept, 0, "the gateway keeps a hash, not the code");
    db.close().await;
    common::stop(app, env).await;
}
