//! Persons' documents carry a signed 2D code that anyone checks offline:
//! the attestation e-mailed to a person, checked by `guichet verify` (the
//! binary, as an employer would run it) with only the keys the gateway
//! publishes; the same paper rendered to an image by `pdftoppm`; a copy
//! whose printed validity was changed; a key rotation.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Days;
use common::notify::{SmsDouble, SmtpInbox, daytime_clock, notified_app};
use common::{App, Backend, TestEnv, eventually, example};
use guichet_kit::Clock as _;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// `guichet verify FILE --keys KEYS --json`: its verdict and exit status.
fn verify(file: &Path, keys: &Path) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("verify")
        .arg(file)
        .arg("--keys")
        .arg(keys)
        .arg("--json")
        .output()
        .expect("guichet verify runs");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (verdict, out.status.code().unwrap_or(-1))
}

/// `guichet verify` on the paper `bytes`, with the keys `app` publishes
/// now: both written under `data_dir/papers`.
pub async fn check_paper(app: &App, data_dir: &Path, name: &str, bytes: &[u8]) -> (Value, i32) {
    let dir = data_dir.join("papers");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let keys = published_keys(app, &dir, &format!("{name}.jwks.json")).await;
    verify(&file, &keys)
}

/// The first page of `pdf` as a 150 dpi PNG, as a scanner or a printer
/// driver would make it.
fn to_png(pdf: &Path) -> PathBuf {
    let prefix = pdf.with_extension("");
    let status = Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(pdf)
        .arg(&prefix)
        .status()
        .expect("pdftoppm (poppler-utils) runs");
    assert!(status.success());
    prefix.with_extension("png")
}

async fn published_keys(app: &App, dir: &Path, name: &str) -> PathBuf {
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
    let path = dir.join(name);
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    path
}

fn field<'a>(verdict: &'a Value, name: &str) -> Option<&'a str> {
    verdict["fields"]
        .as_array()?
        .iter()
        .find(|f| f[0] == name)
        .and_then(|f| f[1].as_str())
}

on_both_backends!(an_attestation_checks_offline_and_an_altered_copy_is_named);
async fn an_attestation_checks_offline_and_an_altered_copy_is_named(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let clock = daytime_clock();
    let app = notified_app(env.config(), &inbox, &sms, clock.clone()).await;
    let dir = env.data_dir.join("papers");
    std::fs::create_dir_all(&dir).unwrap();

    // A renewal ten days from expiry: its attestation is issued at once.
    let mut body = example("renewal-employee.json");
    let today = guichet_dossier::calendar::paris_date(clock.now());
    body["current_title"]["expires_on"] = json!((today + Days::new(10)).to_string());
    let reference = app.file_accepted(&body).await;
    let file_name = format!("attestation-{reference}.pdf");
    let mail = eventually(WAIT, "the attestation e-mail", || async {
        inbox
            .messages()
            .into_iter()
            .find(|m| m.raw.contains(&file_name))
    })
    .await;
    let pdf = dir.join(&file_name);
    std::fs::write(&pdf, mail.attachment(&file_name).expect("attached")).unwrap();
    let keys = published_keys(&app, &dir, "jwks.json").await;
    let published = std::fs::read_to_string(&keys).unwrap();
    assert!(!published.contains("\"d\""), "no private key is published");

    // The PDF: genuine, and what it signed is what it prints.
    let (verdict, status) = verify(&pdf, &keys);
    assert_eq!(status, 0, "{verdict}");
    assert_eq!(verdict["verdict"], "genuine", "{verdict}");
    assert_eq!(verdict["kind"], "attestation");
    assert_eq!(field(&verdict, "reference"), Some(reference.as_str()));
    assert_eq!(field(&verdict, "holder"), Some("Samira BENALI"));
    let until = field(&verdict, "valid_until")
        .expect("a validity")
        .to_string();

    // Read by a reader that has already gone (`| head -0`): the verdict's
    // exit status, not a panic on the closed pipe.
    let mut gone = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("verify")
        .arg(&pdf)
        .arg("--keys")
        .arg(&keys)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("guichet verify runs");
    drop(gone.stdout.take());
    let out = gone.wait_with_output().expect("guichet verify ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The same paper as an image: its code read back from the pixels.
    let png = to_png(&pdf);
    let (verdict, status) = verify(&png, &keys);
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("genuine"), 0),
        "{verdict}"
    );

    // A forger prints a later end of validity beside the genuine code.
    let code = guichet_intake_postal::scan::find_code(&std::fs::read(&png).unwrap())
        .expect("the code on the image");
    let later = until.replace(
        &until[6..],
        &(until[6..].parse::<u32>().unwrap() + 1).to_string(),
    );
    let text = common::pdf_text(&std::fs::read(&pdf).unwrap());
    let forged_pdf = guichet_kit::pdf::sealed_letter_pdf(
        &guichet_kit::pdf::LetterText {
            addressee: vec!["Samira BENALI".into()],
            place_and_date: String::new(),
            subject: "attestation de prolongation d'instruction".into(),
            paragraphs: vec![text.replace(&until, &later)],
            reference: reference.clone(),
        },
        Some(&code),
    );
    let forged = dir.join("forged.pdf");
    std::fs::write(&forged, forged_pdf).unwrap();
    let forged_png = to_png(&forged);
    for file in [&forged, &forged_png] {
        let (verdict, status) = verify(file, &keys);
        assert_eq!(status, 1, "{verdict}");
        assert_eq!(verdict["verdict"], "altered", "{verdict}");
        assert_eq!(
            verdict["fields"],
            json!([["valid_until", until]]),
            "the field named, with what was signed: {verdict}"
        );
    }
    // The code itself changed: its signature no longer checks.
    let changed = code.replace(&until, &later);
    assert_ne!(changed, code);
    let (verdict, status) = {
        let doctored = guichet_kit::pdf::sealed_letter_pdf(
            &guichet_kit::pdf::LetterText {
                addressee: vec![],
                place_and_date: String::new(),
                subject: String::new(),
                paragraphs: vec![text.replace(&until, &later)],
                reference: reference.clone(),
            },
            Some(&changed),
        );
        let path = dir.join("doctored.pdf");
        std::fs::write(&path, doctored).unwrap();
        verify(&path, &keys)
    };
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("refused"), 1),
        "{verdict}"
    );

    // Keys rotate: the old paper still checks against the new published
    // set, which holds both keys; a set without the signing key refuses it.
    let rotated = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["keys", "rotate"])
        .env("GUICHET_DATA_DIR", &env.data_dir)
        .output()
        .expect("guichet keys rotate runs");
    assert!(rotated.status.success(), "{rotated:?}");
    let after = published_keys(&app, &dir, "jwks-after.json").await;
    let set: Value = serde_json::from_str(&std::fs::read_to_string(&after).unwrap()).unwrap();
    assert_eq!(set["keys"].as_array().map(Vec::len), Some(2), "{set}");
    let (verdict, status) = verify(&pdf, &after);
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("genuine"), 0),
        "{verdict}"
    );
    let only_new = dir.join("jwks-new-only.json");
    std::fs::write(
        &only_new,
        json!({"keys": [set["keys"][0].clone()]}).to_string(),
    )
    .unwrap();
    let (verdict, status) = verify(&pdf, &only_new);
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("refused"), 1),
        "{verdict}"
    );
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("not among the published keys"),
        "{verdict}"
    );
    common::stop(app, env).await;
}
