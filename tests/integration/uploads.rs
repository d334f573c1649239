//! Documents uploaded through the gateway, as a person's browser or an
//! agent's software sends them: multipart, streamed to the document store
//! through the content checks and a real ClamAV (`common::clamd`, with the
//! EICAR test signature). What is refused is named and leaves nothing; what
//! is accepted gets a receipt each, and completeness is recomputed.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::notify::{SmsDouble, SmtpInbox, night_clock, notified_app};
use common::{App, Backend, TestEnv, eventually, example};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);
const BORN: &str = "1991-03-02";

/// A one-page PDF, as Guichet prints them.
fn pdf(text: &str) -> Vec<u8> {
    guichet_kit::pdf::letter_pdf(&guichet_kit::pdf::LetterText {
        addressee: vec!["Mme Amina Benali".into()],
        place_and_date: "Lille, le 2 mars 2027".into(),
        subject: text.into(),
        paragraphs: vec![text.into()],
        reference: "scan".into(),
    })
}

/// A small real PNG (an identity photo, say).
fn photo() -> Vec<u8> {
    let image = image::RgbImage::from_fn(35, 45, |x, y| image::Rgb([x as u8 * 7, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// A real PNG of `side` × `side` one-bit pixels: a few hundred kilobytes
/// that would decode to `side²` bytes and more.
pub(crate) fn huge_png(side: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    let row = vec![0u8; 1 + side.div_ceil(8) as usize];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..side {
        z.write_all(&row).expect("deflate");
    }
    chunk(&mut png, b"IDAT", &z.finish().expect("deflate"));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn pdf_with(object: &str) -> Vec<u8> {
    format!(
        "%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>\nendobj\n\
         2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n\
         3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n\
         4 0 obj\n{object}\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )
    .into_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file(bytes: Vec<u8>, name: &str, media_type: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(media_type)
        .expect("a media type")
}

/// A filing's JSON without its documents: they come as files.
fn filing_without_documents() -> String {
    let mut filing = example("renewal-employee.json");
    filing.as_object_mut().unwrap().remove("documents");
    filing.to_string()
}

fn filing_form(files: Vec<(&str, Part)>) -> Form {
    let mut form = Form::new().part(
        "filing",
        Part::text(filing_without_documents())
            .mime_str("application/json")
            .unwrap(),
    );
    for (kind, part) in files {
        form = form.part(kind.to_string(), part);
    }
    form
}

async fn file_with(app: &App, form: Form) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/dossiers", app.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn texts(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn kinds_of(receipts: &Value) -> Vec<String> {
    receipts
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect()
}

on_both_backends!(a_web_filing_with_three_documents_one_sent_later);
async fn a_web_filing_with_three_documents_one_sent_later(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(env.config(), &inbox, &sms, night_clock()).await;
    let (passport, picture) = (pdf("Passeport"), photo());

    let (status, receipt) = file_with(
        &app,
        filing_form(vec![
            (
                "passport",
                file(passport.clone(), "passeport.pdf", "application/pdf"),
            ),
            // The declared type is wrong; the content decides.
            ("photo", file(picture.clone(), "photo.jpg", "image/jpeg")),
        ]),
    )
    .await;
    assert_eq!(status, 201, "{receipt}");
    let reference = receipt["reference"].as_str().unwrap().to_string();
    let filed = receipt["documents"].as_array().unwrap();
    assert_eq!(filed.len(), 2, "{receipt}");
    assert_eq!(filed[0]["sha256"], sha256(&passport));
    assert_eq!(filed[0]["media_type"], "application/pdf");
    assert_eq!(filed[0]["size_bytes"], passport.len() as u64);
    assert_eq!(filed[1]["sha256"], sha256(&picture));
    assert_eq!(filed[1]["media_type"], "image/png");

    let status_path = format!("/api/v1/dossiers/{reference}/status?birth_date={BORN}");
    let before: Value = eventually(WAIT, "the dossier in instruction", || async {
        let r = app.get(&status_path).await;
        (r.status() == 200).then_some(r.json().await.ok()).flatten()
    })
    .await;
    assert_eq!(
        kinds_of(&before["documents"]),
        ["passport", "photo"],
        "{before}"
    );
    let missing_before = texts(&before["missing"]);
    assert!(
        missing_before.contains(&"proof_of_address".to_string()),
        "{before}"
    );

    // The third, later, by the person with the code sent to their phone.
    let asked = app
        .http
        .post(format!("{}/api/v1/dossiers/{reference}/code", app.base))
        .json(&serde_json::json!({ "birth_date": BORN }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    let code = crate::person_code::nth_code(&sms, &reference, 0).await;
    let bill = pdf("Facture d'électricité");
    let documents_path = format!("{}/api/v1/dossiers/{reference}/documents", app.base);
    let send_bill = |code: Option<&str>| {
        let mut request = app.http.post(&documents_path).multipart(Form::new().part(
            "proof_of_address",
            file(bill.clone(), "edf.pdf", "application/pdf"),
        ));
        if let Some(code) = code {
            request = request.header("X-Person-Code", code);
        }
        request.send()
    };
    assert_eq!(send_bill(None).await.unwrap().status(), 401);
    let sent = send_bill(Some(&code)).await.unwrap();
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.unwrap();
    let received = &sent["received"][0];
    assert_eq!(received["kind"], "proof_of_address", "{sent}");
    assert_eq!(received["sha256"], sha256(&bill));
    assert_eq!(received["size_bytes"], bill.len() as u64);
    assert_eq!(received["media_type"], "application/pdf");
    assert_eq!(received["channel"], "web");
    assert!(
        sent["documents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["file_received"] == true),
        "{sent}"
    );
    assert!(received["received_at"].is_string(), "{sent}");
    let missing_after = texts(&sent["missing"]);
    assert!(
        !missing_after.contains(&"proof_of_address".to_string()),
        "{sent}"
    );
    assert_eq!(missing_after.len(), missing_before.len() - 1, "{sent}");

    // Three receipts in the status answer, and the arrival in the history.
    let after: Value = app.get(&status_path).await.json().await.unwrap();
    assert_eq!(
        kinds_of(&after["documents"]),
        ["passport", "photo", "proof_of_address"],
        "{after}"
    );
    assert_eq!(texts(&after["missing"]), missing_after);
    let history: Value = app
        .http
        .get(format!("{}/api/v1/dossiers/{reference}", app.base))
        .header("X-Person-Code", &code)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        history.to_string().contains("proof_of_address received"),
        "{history}"
    );

    // Downloads: the person's own documents, as attachments.
    let download = |sha: String, code: Option<String>| {
        let mut request = app.http.get(format!(
            "{}/api/v1/dossiers/{reference}/documents/{sha}",
            app.base
        ));
        if let Some(code) = code {
            request = request.header("X-Person-Code", code);
        }
        request.send()
    };
    let got = download(sha256(&bill), Some(code.clone())).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/pdf");
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), bill.as_slice());
    assert_eq!(download(sha256(&bill), None).await.unwrap().status(), 401);
    let other = download(sha256(b"not of this dossier"), Some(code.clone()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // The instructor of the prefecture downloads it too.
    let by_agent = app
        .as_agent(
            reqwest::Method::GET,
            "agent-59",
            &format!(
                "/api/v1/dossiers/{reference}/documents/{}",
                sha256(&picture)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(by_agent.status(), 200);
    assert_eq!(by_agent.bytes().await.unwrap().as_ref(), picture.as_slice());

    // The receipt the person keeps, downloaded in English: it lists the
    // documents filed, and its signed code checks offline.
    let papers: Value = eventually(WAIT, "the receipt among the papers", || async {
        let r = app
            .http
            .get(format!("{}/api/v1/dossiers/{reference}/papers", app.base))
            .header("X-Person-Code", &code)
            .send()
            .await
            .ok()?;
        let list: Value = r.json().await.ok()?;
        list.as_array()?
            .iter()
            .any(|p| p["kind"] == "receipt")
            .then_some(list)
    })
    .await;
    let receipt_paper = papers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "receipt")
        .unwrap();
    let href = receipt_paper["href"].as_str().unwrap();
    let pdf_bytes = app
        .http
        .get(format!("{}{href}?language=en", app.base))
        .header("X-Person-Code", &code)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf_bytes.status(), 200);
    assert_eq!(pdf_bytes.headers()["content-type"], "application/pdf");
    let pdf_bytes = pdf_bytes.bytes().await.unwrap();
    let (verdict, status) =
        crate::documents::check_paper(&app, &env.data_dir, "receipt.pdf", &pdf_bytes).await;
    assert_eq!(status, 0, "{verdict}");
    let text = common::pdf_text(&pdf_bytes);
    assert!(text.contains("Documents received (2):"), "{text}");
    assert!(text.contains("passport"), "{text}");
    assert!(text.contains(&sha256(&passport)[..16]), "{text}");
    let without_code = app
        .http
        .get(format!("{}{href}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(without_code.status(), 401);

    // The store holds the three documents, under their digests, and nothing else.
    let mut stored: Vec<String> = common::files_under(&env.data_dir.join("documents"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    stored.sort();
    let mut expected = vec![sha256(&passport), sha256(&picture), sha256(&bill)];
    expected.sort();
    assert_eq!(stored, expected);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_campaign_is_refused_file_by_file_and_nothing_is_kept() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.documents.upload_max_file_mib = 2;
    let app = App::start(&config).await;
    let page = pdf("Passeport");
    let mut eicar_in_pdf = page.clone();
    // Inside a comment line: a valid PDF that carries the test virus.
    let at = eicar_in_pdf.len() - 6;
    let mut eicar_line = b"%".to_vec();
    eicar_line.extend_from_slice(&common::clamd::eicar());
    eicar_line.push(b'\n');
    eicar_in_pdf.splice(at..at, eicar_line);
    let mut too_large = page.clone();
    too_large.extend(std::iter::repeat_n(b'%', 3 * 1024 * 1024));

    // What is sent, the files, the status and the reason expected.
    type Case<'a> = (&'a str, Vec<(&'a str, Part)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "an executable renamed .pdf",
            vec![(
                "passport",
                file(
                    std::fs::read("/bin/true").unwrap(),
                    "passeport.pdf",
                    "application/pdf",
                ),
            )],
            422,
            "a Linux program",
        ),
        (
            "the EICAR file",
            vec![(
                "passport",
                file(common::clamd::eicar(), "eicar.pdf", "application/pdf"),
            )],
            422,
            "not a PDF, JPEG or PNG",
        ),
        (
            "the EICAR signature inside a PDF",
            vec![(
                "passport",
                file(eicar_in_pdf, "passeport.pdf", "application/pdf"),
            )],
            422,
            "the virus scanner found Eicar-Test-Signature",
        ),
        (
            "a 30,000 × 30,000 PNG",
            vec![("photo", file(huge_png(30_000), "photo.png", "image/png"))],
            422,
            "30000 × 30000 pixels",
        ),
        (
            "a PDF with JavaScript",
            vec![(
                "passport",
                file(
                    pdf_with("<< /S /JavaScript /JS (app.launchURL\\('x'\\)) >>"),
                    "p.pdf",
                    "application/pdf",
                ),
            )],
            422,
            "active content (JavaScript)",
        ),
        (
            "a ../../etc/passwd file name",
            vec![(
                "passport",
                file(page.clone(), "../../etc/passwd", "application/pdf"),
            )],
            422,
            "a plain name, without folders",
        ),
        (
            "a file over the limit",
            vec![(
                "passport",
                file(too_large, "passeport.pdf", "application/pdf"),
            )],
            413,
            "larger than the 2097152 bytes accepted",
        ),
        (
            "50 files at once",
            (0..50)
                .map(|_| ("photo", file(photo(), "photo.png", "image/png")))
                .collect(),
            413,
            "at most 10 files in one request",
        ),
        (
            "a part that is no document kind",
            vec![("selfie", file(photo(), "photo.png", "image/png"))],
            422,
            "\"selfie\" is not a document kind",
        ),
    ];
    for (what, files, status, reason) in cases {
        let (got, body) = file_with(&app, filing_form(files)).await;
        assert_eq!(got, status, "{what}: {body}");
        let problem = common::first_problem(&body);
        assert!(problem.contains(reason), "{what}: {body}");
        assert!(
            common::error_fields(&body)
                .iter()
                .any(|f| f.starts_with("files[")),
            "{what}: the file is named: {body}"
        );
    }
    // Nothing kept, not even a part of an upload.
    let kept = common::files_under(&env.data_dir.join("documents"));
    assert!(kept.is_empty(), "{kept:?}");
    let strays: Vec<_> = common::files_under(&env.data_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("passwd"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
    // No dossier was filed: the filing waits for its files.
    assert_eq!(
        app.metric("guichet_filings_accepted_total{channel=\"web\"}")
            .await,
        0.0
    );
    assert_eq!(
        app.metric("guichet_uploads_total{outcome=\"virus\"}").await,
        1.0
    );
    assert_eq!(
        app.metric("guichet_uploads_total{outcome=\"accepted\"}")
            .await,
        0.0
    );

    // A good file then goes through.
    let (got, body) = file_with(
        &app,
        filing_form(vec![(
            "passport",
            file(page.clone(), "passeport.pdf", "application/pdf"),
        )]),
    )
    .await;
    assert_eq!(got, 201, "{body}");
    assert_eq!(
        common::files_under(&env.data_dir.join("documents")).len(),
        1
    );
    assert_eq!(
        app.metric("guichet_uploads_total{outcome=\"accepted\"}")
            .await,
        1.0
    );
    app.stop().await;
    env.cleanup().await;
}
