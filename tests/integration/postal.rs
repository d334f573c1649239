//! The postal channel end to end through the gateway: forms printed by
//! Guichet, scanned into page images the way a mailroom scanner delivers
//! them, uploaded as a stack with separator sheets, read, keyed, filed on
//! the postmark date, answered by letter; a forged code and a letter that is
//! not a filing go to keying with their reason and are routed, never lost.

use crate::common;

use std::time::Duration;

use chrono::{Days, NaiveDate};
use common::{App, Backend, eventually};
use guichet_intake_postal::corpus::{Distortion, distort};
use guichet_intake_postal::{render, scan};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// A stack is read in the background; OCR takes about a second a page.
const READING: Duration = Duration::from_secs(240);
const WAIT: Duration = Duration::from_secs(30);

/// A PDF as the scanner sees the printed sheet: a 200 dpi page image, fed a
/// little crooked, with some sensor noise.
async fn scanned(pdf: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let pages = scan::pdf_pages(pdf, 200)
        .await
        .expect("pdftoppm renders it");
    pages
        .into_iter()
        .enumerate()
        .map(|(i, png)| {
            let page = image::load_from_memory(&png).unwrap().into_luma8();
            let d = Distortion {
                rotation: ((seed + i as u64) % 7) as f64 * 0.6 - 1.8,
                skew: ((seed * 3 + i as u64) % 5) as f64 * 0.5 - 1.0,
                noise: 6.0,
                specks: 0.0005,
                seed: seed * 31 + i as u64,
            };
            scan::encode_png(&distort(&page, d)).unwrap()
        })
        .collect()
}

/// What a form is pre-filled with for Amina `family_name`, of Lille.
fn amina(family_name: &str) -> Value {
    json!({
        "family_name": family_name,
        "given_names": "Amina",
        "birth_date": "1990-05-14",
        "nationality": "SEN",
        "postal_code": "59000",
    })
}

/// What a mailroom operator keys for a renewal read from a pre-filled form.
fn keyed_fields() -> Value {
    json!({
        "motif": "employee",
        "address_line1": "3 rue de Paris",
        "city": "Lille",
        "title_kind": "temporary_card",
        "title_number": "FR59A7654321",
        "title_expires_on": "15/01/2027",
        "document_kinds": "passport",
    })
}

async fn form_pdf(app: &App, prefill: Value) -> Vec<u8> {
    let r = app
        .mailroom_post(
            "/api/v1/postal/forms",
            &json!({"procedure": "renewal", "prefill": prefill}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    r.bytes().await.unwrap().to_vec()
}

async fn separator_page(app: &App) -> Vec<u8> {
    let r = app.mailroom_get("/api/v1/postal/separators?count=1").await;
    assert_eq!(r.status(), 200);
    let pdf = r.bytes().await.unwrap();
    scanned(&pdf, 99).await.remove(0)
}

/// A page with text and no code: a letter, a copy of a document.
fn text_page_pdf(subject: &str, body: &str) -> Vec<u8> {
    render::letter_pdf(&render::LetterText {
        addressee: vec![
            "Préfecture du Nord".into(),
            "Bureau des étrangers".into(),
            "59000 LILLE".into(),
        ],
        place_and_date: "Lille, le 2 novembre 2026".into(),
        subject: subject.into(),
        paragraphs: vec![body.into()],
        reference: "-".into(),
    })
}

async fn upload(
    app: &App,
    station: &str,
    received: NaiveDate,
    postmarks: &[String],
    pages: &[Vec<u8>],
) -> Value {
    let mut form = Form::new()
        .text("station_id", station.to_string())
        .text("reception_date", received.to_string());
    for p in postmarks {
        form = form.text("postmark_date", p.clone());
    }
    for (i, png) in pages.iter().enumerate() {
        form = form.part(
            "page",
            Part::bytes(png.clone())
                .file_name(format!("scan-{i:03}.png"))
                .mime_str("image/png")
                .unwrap(),
        );
    }
    let r = app
        .http
        .post(format!("{}/api/v1/postal/batches", app.base))
        .header(
            "Authorization",
            crate::common::client_bearer("guichet-scanner-1"),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["pages"].as_array().unwrap().len(),
        pages.len(),
        "every page stored"
    );
    body
}

async fn read_batch(app: &App, id: &str) -> Value {
    eventually(READING, "the batch read", || async {
        let b: Value = app
            .mailroom_get(&format!("/api/v1/postal/batches/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (b["state"] == "read").then_some(b)
    })
    .await
}

fn field<'a>(envelope: &'a Value, key: &str) -> Option<&'a Value> {
    envelope["fields"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == key)
}

on_both_backends!(a_stack_of_twenty_envelopes_becomes_twenty_dossiers);
async fn a_stack_of_twenty_envelopes_becomes_twenty_dossiers(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let received = today.checked_sub_days(Days::new(1)).unwrap();

    // Twenty envelopes: a pre-filled form each, then 0 to 2 enclosures; a
    // separator sheet before each envelope. Every fifth has no legible
    // postmark and counts from the reception date.
    let separator = separator_page(&app).await;
    let enclosure = scanned(
        &text_page_pdf(
            "copie de passeport",
            "Copie certifiée conforme du passeport de la personne.",
        ),
        7,
    )
    .await
    .remove(0);
    let mut stack = Vec::new();
    let mut postmarks = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20u64 {
        let name = format!("Postier{i:02}");
        let pdf = form_pdf(&app, amina(&name)).await;
        let enclosures = (i % 3) as usize;
        stack.push(separator.clone());
        stack.extend(scanned(&pdf, i).await);
        stack.extend(std::iter::repeat_n(enclosure.clone(), enclosures));
        let postmark =
            (i % 5 != 4).then(|| received.checked_sub_days(Days::new(1 + i % 4)).unwrap());
        postmarks.push(postmark.map(|d| d.to_string()).unwrap_or_default());
        expected.push((name, 1 + enclosures, postmark.unwrap_or(received)));
    }
    let uploaded = upload(&app, "station-59-1", received, &postmarks, &stack).await;
    let batch_id = uploaded["batch_id"].as_str().unwrap().to_string();
    let batch = read_batch(&app, &batch_id).await;

    let envelopes = batch["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 20, "one envelope per separator");
    for (e, (name, pages, _)) in envelopes.iter().zip(&expected) {
        assert_eq!(e["page_count"], *pages, "pages of {name}");
        assert_eq!(e["state"], "keying");
        assert!(e["code_problem"].is_null(), "{e}");
        let read = field(e, "family_name").unwrap();
        assert_eq!(
            (&read["value"], &read["source"]),
            (&json!(name), &json!("code"))
        );
        assert_eq!(read["confidence"], 1.0);
    }
    assert_eq!(
        app.mailroom_get("/api/v1/postal/keying?limit=100")
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        20
    );

    // The operators complete what the pre-filled form left to the person.
    let mut references = Vec::new();
    for (e, (name, _, legal_date)) in envelopes.iter().zip(&expected) {
        let id = e["id"].as_str().unwrap();
        let r = app
            .mailroom_post(
                &format!("/api/v1/postal/envelopes/{id}/confirmation"),
                &json!({
                    "operator_id": "mailroom-3",
                    "fields": {
                        "motif": "employee",
                        "address_line1": "3 rue de Paris",
                        "city": "Lille",
                        "email": if name.ends_with('0') { "amina@example.org" } else { "" },
                        "title_kind": "temporary_card",
                        "title_number": "FR59A7654321",
                        "title_expires_on": "15/01/2027",
                        "document_kinds": "passport",
                    },
                }),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        let filed: Value = r.json().await.unwrap();
        assert_eq!(filed["state"], "filed");
        let reference = filed["reference"].as_str().unwrap().to_string();
        references.push((reference, *legal_date));
    }

    // Each is a postal dossier in instruction, filed on its postmark date.
    for (reference, legal_date) in &references {
        let dossier: Value = eventually(WAIT, "the postal dossier in instruction", || async {
            let r = app.dossier(reference).await;
            if r.status() == 200 {
                r.json().await.ok()
            } else {
                None
            }
        })
        .await;
        assert_eq!(dossier["channel"], "postal");
        assert_eq!(dossier["legal_filing_date"], legal_date.to_string());
    }

    // Nothing unaccounted for: every page is a separator or part of a dossier.
    let batch: Value = app
        .mailroom_get(&format!("/api/v1/postal/batches/{batch_id}"))
        .await
        .json()
        .await
        .unwrap();
    let pages = batch["pages"].as_array().unwrap();
    assert_eq!(pages.len(), stack.len());
    let separators = pages
        .iter()
        .filter(|p| p["outcome"] == "separator sheet")
        .count();
    let filed = pages
        .iter()
        .filter(|p| p["outcome"].as_str().unwrap().starts_with("dossier "))
        .count();
    assert_eq!((separators, filed), (20, stack.len() - 20), "{pages:#?}");

    // A receipt letter for each, and the later letters the notifier asks
    // for (these files lack documents).
    let (first, _) = &references[0];
    let letters: Vec<Value> = eventually(
        WAIT,
        "the receipt and the missing-documents letter",
        || async {
            let l: Vec<Value> = app
                .mailroom_get(&format!("/api/v1/postal/letters?reference={first}"))
                .await
                .json()
                .await
                .ok()?;
            (l.len() >= 2).then_some(l)
        },
    )
    .await;
    let kinds: Vec<&str> = letters
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"receipt") && kinds.contains(&"found_incomplete"),
        "{kinds:?}"
    );
    let pdf = app
        .mailroom_get(&format!(
            "/api/v1/postal/letters/{}",
            letters[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    // Downloaded, never rendered in the gateway's origin as something else.
    assert!(
        pdf.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;"),
        "{:?}",
        pdf.headers()
    );
    assert_eq!(pdf.headers()["x-content-type-options"], "nosniff");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
    // The mailroom's receipt is signed like the other channels' papers.
    let receipt = letters
        .iter()
        .find(|l| l["kind"] == "receipt")
        .expect("a receipt letter");
    let receipt_pdf = app
        .mailroom_get(&format!(
            "/api/v1/postal/letters/{}",
            receipt["id"].as_str().unwrap()
        ))
        .await
        .bytes()
        .await
        .unwrap();
    let (verdict, status) =
        crate::documents::check_paper(&app, &env.data_dir, "receipt.pdf", &receipt_pdf).await;
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("genuine"), 0),
        "{verdict}"
    );
    assert_eq!(verdict["kind"], "receipt", "{verdict}");
    // The notifier e-mails them too (the embedded default's .eml files).
    eventually(WAIT, "e-mails for the postal filers", || async {
        let mails = std::fs::read_dir(env.data_dir.join("mail")).ok()?.count();
        (mails >= 2).then_some(())
    })
    .await;
    let all: Vec<Value> = app
        .mailroom_get("/api/v1/postal/letters?limit=1000")
        .await
        .json()
        .await
        .unwrap();
    let receipts = all.iter().filter(|l| l["kind"] == "receipt").count();
    assert_eq!(receipts, 20);

    // Confirming again files nothing new.
    let again = app
        .mailroom_post(
            &format!(
                "/api/v1/postal/envelopes/{}/confirmation",
                envelopes[0]["id"].as_str().unwrap()
            ),
            &json!({"operator_id": "mailroom-3"}),
        )
        .await;
    assert_eq!(
        again.json::<Value>().await.unwrap()["reference"],
        json!(references[0].0)
    );
    common::stop(app, env).await;
}

on_both_backends!(a_forged_code_and_a_plain_letter_go_to_keying_with_their_reason);
async fn a_forged_code_and_a_plain_letter_go_to_keying_with_their_reason(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let received = guichet_dossier::calendar::paris_date(chrono::Utc::now());

    // A genuine pre-filled form's code, read, then altered: the name is
    // changed, the signature kept.
    let genuine = form_pdf(
        &app,
        json!({"family_name": "Martin", "birth_date": "1985-01-01", "nationality": "MAR"}),
    )
    .await;
    let page = scan::pdf_pages(&genuine, 200).await.unwrap().remove(0);
    let text = scan::find_code(&page).expect("the genuine code reads");
    let forged_text = text.replace("Martin", "Usurpateur");
    assert_ne!(forged_text, text);
    let mut printed = std::collections::BTreeMap::new();
    printed.insert("family_name".to_string(), "Usurpateur".to_string());
    let forged_pdf = render::form_pdf(&forged_text, "F-FORGED", &printed).unwrap();
    let forged = scanned(&forged_pdf, 3).await;

    // A complaint letter, no form at all.
    let complaint = scanned(
        &text_page_pdf(
            "réclamation",
            "Monsieur le Préfet, je vous écris pour signaler que mon rendez-vous a été annulé trois fois.",
        ),
        5,
    )
    .await;
    let separator = separator_page(&app).await;
    let stack: Vec<Vec<u8>> = [forged, vec![separator], complaint].concat();
    let uploaded = upload(&app, "station-59-2", received, &[], &stack).await;
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    let envelopes = batch["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 2);

    let forged = &envelopes[0];
    assert_eq!(forged["state"], "keying");
    let problem = forged["code_problem"].as_str().unwrap();
    assert!(problem.contains("forged"), "{problem}");
    // Nothing from the forged code is taken as certain.
    assert!(
        forged["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["source"] != "code"),
        "{forged}"
    );
    assert_eq!(batch["pages"][0]["code"], json!(problem));

    let letter = &envelopes[1];
    assert!(
        letter["code_problem"]
            .as_str()
            .unwrap()
            .contains("no Guichet form")
    );
    let ocr = letter["ocr_text"].as_str().unwrap();
    assert!(
        ocr.contains("Monsieur") && ocr.contains("rendez-vous"),
        "OCR read: {ocr}"
    );

    // Both are routed with a reason; the trace says where each page went.
    for (e, reason, to) in [
        (forged, "forged form code", "fraud unit"),
        (
            letter,
            "complaint, not a filing",
            "prefecture's mediation desk",
        ),
    ] {
        let id = e["id"].as_str().unwrap();
        let r = app
            .mailroom_post(
                &format!("/api/v1/postal/envelopes/{id}/routing"),
                &json!({"operator_id": "mailroom-1", "reason": reason, "destination": to}),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        let again = app
            .mailroom_post(
                &format!("/api/v1/postal/envelopes/{id}/confirmation"),
                &json!({"operator_id": "mailroom-1"}),
            )
            .await;
        assert_eq!(again.status(), 409, "a routed envelope is not filed");
    }
    let batch: Value = app
        .mailroom_get(&format!(
            "/api/v1/postal/batches/{}",
            uploaded["batch_id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = batch["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "routed to fraud unit: forged form code",
            "separator sheet",
            "routed to prefecture's mediation desk: complaint, not a filing",
        ]
    );
    assert_eq!(
        app.mailroom_get("/api/v1/postal/keying")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_the_field_at_fault() {
    let (env, app) = common::mesh_on(Backend::Embedded).await;
    let send = |form: Form| {
        app.http
            .post(format!("{}/api/v1/postal/batches", app.base))
            .header(
                "Authorization",
                crate::common::client_bearer("guichet-scanner-1"),
            )
            .multipart(form)
            .send()
    };
    let not_a_png = || {
        Part::bytes(b"not a png".to_vec())
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap()
    };
    let r = send(
        Form::new()
            .text("reception_date", "2026-13-40")
            .text("postmark_date", "tomorrow")
            .part("page", not_a_png()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["station_id", "reception_date", "postmark_dates[0]"],
        "{body}"
    );

    let r = send(
        Form::new()
            .text("station_id", "s1")
            .text("reception_date", "2026-11-02")
            .part("page", not_a_png()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "files[0]", "{body}");
    assert!(
        common::first_problem(&body).contains("not a readable PNG"),
        "{body}"
    );

    // A PDF straight from a scanner's software is split into its pages.
    let pdf = app
        .mailroom_get("/api/v1/postal/separators?count=3")
        .await
        .bytes()
        .await
        .unwrap();
    let part = Part::bytes(pdf.to_vec())
        .file_name("pile.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let r = send(
        Form::new()
            .text("station_id", "s1")
            .text("reception_date", "2026-11-02")
            .part("scan", part),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["pages"].as_array().unwrap().len(), 3);

    let r = app
        .mailroom_post(
            "/api/v1/postal/forms",
            &json!({"prefill": {"shoe_size": "42"}}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["field"],
        "prefill.shoe_size"
    );
    common::stop(app, env).await;
}

/// A TIFF of `pages` pages of `side` × `side` grey pixels, as small as a
/// few megabytes: every page points at the same PackBits strip of zeros.
pub(crate) fn huge_tiff(pages: usize, side: u32) -> Vec<u8> {
    let row: Vec<u8> = (0..side.div_ceil(128))
        .flat_map(|_| [0x81u8, 0x00])
        .collect();
    let strip: Vec<u8> = (0..side).flat_map(|_| row.iter().copied()).collect();
    let mut tiff = b"II*\0".to_vec();
    let first_ifd = 8 + strip.len() as u32;
    tiff.extend_from_slice(&first_ifd.to_le_bytes());
    tiff.extend_from_slice(&strip);
    const ENTRIES: u16 = 9;
    let ifd_len = 2 + 12 * u32::from(ENTRIES) + 4;
    for page in 0..pages {
        let at = first_ifd + ifd_len * page as u32;
        let next = if page + 1 == pages { 0 } else { at + ifd_len };
        tiff.extend_from_slice(&ENTRIES.to_le_bytes());
        let mut entry = |tag: u16, kind: u16, value: u32| {
            tiff.extend_from_slice(&tag.to_le_bytes());
            tiff.extend_from_slice(&kind.to_le_bytes());
            tiff.extend_from_slice(&1u32.to_le_bytes());
            tiff.extend_from_slice(&value.to_le_bytes());
        };
        let (short, long) = (3, 4);
        entry(256, long, side); // width
        entry(257, long, side); // height
        entry(258, short, 8); // bits per sample
        entry(259, short, 32773); // PackBits
        entry(262, short, 1); // black is zero
        entry(273, long, 8); // the strip's offset
        entry(277, short, 1); // samples per pixel
        entry(278, long, side); // rows per strip
        entry(279, long, strip.len() as u32);
        tiff.extend_from_slice(&next.to_le_bytes());
    }
    tiff
}

/// The mailroom's upload campaign: what would exhaust the postal service's
/// memory or hold the other stations back is refused before any page is
/// decoded, with the reason; another station's batch is then read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_that_would_exhaust_the_mailroom_are_refused_before_decoding() {
    let (env, app) = common::mesh_on(Backend::Servers).await;
    let send = |station: &str, files: Vec<Part>| {
        let mut form = Form::new().text("station_id", station.to_string()).text(
            "reception_date",
            guichet_dossier::calendar::paris_date(chrono::Utc::now()).to_string(),
        );
        for f in files {
            form = form.part("page", f);
        }
        app.http
            .post(format!("{}/api/v1/postal/batches", app.base))
            .header(
                "Authorization",
                crate::common::client_bearer("guichet-scanner-1"),
            )
            .multipart(form)
            .send()
    };
    let part = |bytes: Vec<u8>, name: &str, media_type: &str| {
        Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str(media_type)
            .unwrap()
    };
    let tiff = huge_tiff(8, 16_000);
    assert!(tiff.len() < 5_000_000, "{} bytes", tiff.len());
    let tiny = common::tiny_png();
    let cases: Vec<(&str, Vec<Part>, &str, &str)> = vec![
        (
            "8 pages of 16,000 × 16,000",
            vec![part(tiff, "pile.tif", "image/tiff")],
            "files[0]",
            "page 1 is 16000 × 16000 pixels",
        ),
        (
            "a 30,000 × 30,000 PNG page",
            vec![part(crate::uploads::huge_png(30_000), "p.png", "image/png")],
            "files[0]",
            "30000 × 30000 pixels",
        ),
        (
            "3,000 tiny pages in one request",
            (0..3000)
                .map(|i| part(tiny.clone(), &format!("p{i}.png"), "image/png"))
                .collect(),
            "files",
            "a batch holds at most 500 pages",
        ),
    ];
    for (what, files, field, reason) in cases {
        let r = send("station-59-1", files).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
        assert!(
            common::first_problem(&body).contains(reason),
            "{what}: {body}"
        );
    }
    // Nothing was kept of them.
    assert!(
        common::files_under(&env.data_dir.join("documents")).is_empty(),
        "no page stored"
    );

    // Another station's one-envelope batch goes through and is read.
    let page = scanned(
        &text_page_pdf("courrier", "Madame, Monsieur, je vous écris."),
        2,
    )
    .await;
    let uploaded = upload(
        &app,
        "station-59-2",
        guichet_dossier::calendar::paris_date(chrono::Utc::now()),
        &[],
        &page,
    )
    .await;
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    assert_eq!(batch["envelopes"].as_array().unwrap().len(), 1, "{batch}");
    common::stop(app, env).await;
}

/// A letter's text as printed: its PDF through `pdftotext` (poppler-utils),
/// words joined by single spaces so a wrapped sentence reads whole.
async fn letter_text(app: &App, id: &str) -> String {
    let pdf = app
        .mailroom_get(&format!("/api/v1/postal/letters/{id}"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    tokio::task::spawn_blocking(move || common::pdf_text(&pdf))
        .await
        .unwrap()
}

/// The letters of `reference` once `kind` is among them.
async fn letter_of(app: &App, reference: &str, kind: &str) -> Value {
    eventually(
        WAIT,
        &format!("the {kind} letter of {reference}"),
        || async {
            let letters: Vec<Value> = app
                .mailroom_get(&format!("/api/v1/postal/letters?reference={reference}"))
                .await
                .json()
                .await
                .ok()?;
            letters.into_iter().find(|l| l["kind"] == kind)
        },
    )
    .await
}

fn history(envelope: &Value) -> Vec<(String, String)> {
    envelope["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["operator_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

on_both_backends!(
    a_doubtful_postmark_waits_for_a_second_operator_and_the_letters_print_their_dates
);
async fn a_doubtful_postmark_waits_for_a_second_operator_and_the_letters_print_their_dates(
    backend: Backend,
) {
    let (env, app) = common::mesh_on(backend).await;
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap();

    // Two envelopes received today: one stamped 2001-01-02 (decades before
    // it arrived), one stamped tomorrow (after it arrived). The station
    // keys both as read: neither is refused at upload.
    let separator = separator_page(&app).await;
    let mut stack = Vec::new();
    for (i, name) in ["Ancien", "Futur"].iter().enumerate() {
        let pdf = form_pdf(&app, amina(name)).await;
        stack.push(separator.clone());
        stack.extend(scanned(&pdf, 40 + i as u64).await);
    }
    let postmarks = ["2001-01-02".to_string(), tomorrow.to_string()];
    let uploaded = upload(&app, "station-59-4", today, &postmarks, &stack).await;
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    let envelopes = batch["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 2);
    let doubt = |e: &Value| e["postmark_doubt"].as_str().unwrap_or_default().to_string();
    assert!(
        doubt(&envelopes[0]).contains("days before the reception date (more than 60)"),
        "{}",
        envelopes[0]
    );
    assert!(
        doubt(&envelopes[1]).contains("after the reception date"),
        "{}",
        envelopes[1]
    );
    let fields = keyed_fields();
    let confirm = |id: &str, body: Value| {
        let path = format!("/api/v1/postal/envelopes/{id}/confirmation");
        let app = &app;
        async move { app.mailroom_post(&path, &body).await }
    };

    let mut references = Vec::new();
    for (e, legal_date) in envelopes.iter().zip([
        NaiveDate::from_ymd_opt(2001, 1, 2).unwrap(),
        // A stamp after the reception date counts as the reception date.
        today,
    ]) {
        let id = e["id"].as_str().unwrap();
        // The first operator's confirmation holds it: nothing filed yet.
        let r = confirm(id, json!({"operator_id": "mailroom-ana", "fields": fields})).await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        let held: Value = r.json().await.unwrap();
        assert_eq!(held["state"], "postmark_check", "{held}");
        assert!(held["reference"].is_null());
        assert_eq!(
            history(&held),
            [("postmark_held".to_string(), "mailroom-ana".to_string())]
        );
        assert_eq!(
            held["history"][0]["postmark_date"],
            json!(e["postmark_date"])
        );
        // It waits in the keying list, for another operator.
        let keying: Vec<Value> = app
            .mailroom_get("/api/v1/postal/keying?limit=100")
            .await
            .json()
            .await
            .unwrap();
        assert!(
            keying
                .iter()
                .any(|k| k["id"] == id && k["state"] == "postmark_check")
        );

        // The same operator cannot vouch for it twice.
        let r = confirm(
            id,
            json!({"operator_id": "mailroom-ana", "postmark_reason": "I am sure"}),
        )
        .await;
        assert_eq!(r.status(), 409);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "operator_id", "{body}");

        // Another operator must say why it stands.
        let r = confirm(id, json!({"operator_id": "mailroom-ben"})).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "postmark_reason", "{body}");

        let reason = "the stamp reads so under the lamp; envelope kept";
        let r = confirm(
            id,
            json!({"operator_id": "mailroom-ben", "postmark_reason": reason}),
        )
        .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        let filed: Value = r.json().await.unwrap();
        assert_eq!(filed["state"], "filed");
        let reference = filed["reference"].as_str().unwrap().to_string();
        // Both operators and the reason, in the envelope's history.
        let envelope: Value = app
            .mailroom_get(&format!("/api/v1/postal/envelopes/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            history(&envelope),
            [
                ("postmark_held".to_string(), "mailroom-ana".to_string()),
                ("postmark_confirmed".to_string(), "mailroom-ben".to_string()),
                ("filed".to_string(), "mailroom-ben".to_string()),
            ]
        );
        assert_eq!(envelope["history"][1]["reason"], reason);
        assert_eq!(envelope["history"][2]["reference"], json!(reference));

        let dossier: Value = eventually(WAIT, "the postal dossier in instruction", || async {
            let r = app.dossier(&reference).await;
            if r.status() == 200 {
                r.json().await.ok()
            } else {
                None
            }
        })
        .await;
        assert_eq!(dossier["legal_filing_date"], legal_date.to_string());
        references.push(reference);
    }

    // The receipts say which date counts and why.
    let receipt = letter_of(&app, &references[0], "receipt").await;
    let text = letter_text(&app, receipt["id"].as_str().unwrap()).await;
    // A letter is served by the letters route only, never as a page.
    let as_page = app
        .mailroom_get(&format!(
            "/api/v1/postal/pages/{}",
            receipt["sha256"].as_str().unwrap()
        ))
        .await;
    assert_eq!(as_page.status(), 404);
    assert!(
        text.contains("Elle compte à la date du 02/01/2001, date du cachet de la poste."),
        "{text}"
    );
    let text = letter_text(
        &app,
        letter_of(&app, &references[1], "receipt").await["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    let received = today.format("%d/%m/%Y");
    assert!(
        text.contains(&format!(
            "Elle compte à la date du {received}, date de réception de votre courrier."
        )),
        "{text}"
    );

    // Found incomplete on arrival: the letter lists what is missing and
    // promises no date it does not have.
    let text = letter_text(
        &app,
        letter_of(&app, &references[0], "found_incomplete").await["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    assert!(
        text.contains("Pour instruire votre demande, il manque :"),
        "{text}"
    );
    assert!(text.contains("dès que possible"), "{text}");
    assert!(!text.contains("avant le"), "{text}");

    // An agent asks for a document by a date: the letter prints that date.
    let deadline = today.checked_add_days(Days::new(30)).unwrap();
    let r = app
        .agent_post(
            "agent-59",
            &format!("/api/v1/agent/dossiers/{}/takeover", references[0]),
            json!({"reason": "asking for a document"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = app
        .http
        .post(format!(
            "{}/api/v1/agent/dossiers/{}/document-requests",
            app.base, references[0]
        ))
        .header("Authorization", crate::common::bearer("agent-59"))
        .json(&json!({"kinds": ["photo"], "deadline": deadline.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let text = letter_text(
        &app,
        letter_of(&app, &references[0], "documents_requested").await["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    assert!(
        text.contains(&format!(
            "il manque : photographie d'identité. Envoyez-les par courrier au plus tard le {}",
            deadline.format("%d/%m/%Y")
        )),
        "{text}"
    );
    common::stop(app, env).await;
}

/// An envelope that answers a request for documents is not a new filing:
/// the operator attaches its pages to the dossier, each page a document with
/// its receipt, and what is missing is recomputed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_of_documents_is_attached_to_its_dossier() {
    let (env, app) = common::mesh_on(Backend::Servers).await;
    let mut filing = crate::common::example("renewal-employee.json");
    filing["documents"]
        .as_array_mut()
        .unwrap()
        .retain(|d| d["kind"] != "current_title");
    let reference = app.file_accepted(&filing).await;
    let status_path = format!("/api/v1/dossiers/{reference}/status?birth_date=1991-03-02");
    let before: Value = eventually(WAIT, "the dossier in instruction", || async {
        let r = app.get(&status_path).await;
        (r.status() == 200).then_some(r.json().await.ok()).flatten()
    })
    .await;
    assert_eq!(before["missing"], json!(["current_title"]), "{before}");

    let copy = scanned(
        &text_page_pdf(
            "copie du titre de séjour",
            &format!("Suite à votre demande, veuillez trouver la copie de mon titre. Dossier {reference}."),
        ),
        11,
    )
    .await;
    let received = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let uploaded = upload(&app, "station-59-1", received, &[], &copy).await;
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    let envelope = &batch["envelopes"][0];
    assert_eq!(envelope["state"], "keying", "{envelope}");
    let id = envelope["id"].as_str().unwrap().to_string();
    let page = envelope["pages"][0].as_str().unwrap().to_string();
    let path = format!("/api/v1/postal/envelopes/{id}/attachment");

    // A page of another envelope, or a kind that is none, is named.
    let wrong = app
        .mailroom_post(
            &path,
            &json!({"reference": reference, "pages": [{"sha256": "ab".repeat(32), "kind": "current_title"}]}),
        )
        .await;
    assert_eq!(wrong.status(), 400);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(common::error_fields(&body), ["pages[0].sha256"], "{body}");

    let attached = app
        .mailroom_post(
            &path,
            &json!({"reference": reference, "pages": [{"sha256": page, "kind": "current_title"}]}),
        )
        .await;
    assert_eq!(attached.status(), 200, "{:?}", attached.text().await);
    let attached: Value = attached.json().await.unwrap();
    assert_eq!(attached["state"], "attached", "{attached}");
    assert_eq!(attached["reference"], json!(reference));

    let after: Value = app.get(&status_path).await.json().await.unwrap();
    assert_eq!(after["missing"], json!([]), "{after}");
    let receipt = after["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "current_title")
        .unwrap_or_else(|| panic!("a receipt for the title: {after}"))
        .clone();
    assert_eq!(receipt["sha256"], json!(page));
    assert_eq!(receipt["channel"], "postal");
    assert_eq!(receipt["media_type"], "image/png");
    // The scanned page is kept; the JSON filing's documents were declared
    // by their digest, and the answer says their files never came.
    assert_eq!(receipt["file_received"], true, "{after}");
    let passport = after["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "passport")
        .unwrap();
    assert_eq!(passport["file_received"], false, "{after}");
    assert!(receipt["size_bytes"].as_u64().unwrap() > 0);

    // Once is enough.
    let again = app
        .mailroom_post(
            &path,
            &json!({"reference": reference, "pages": [{"sha256": page, "kind": "current_title"}]}),
        )
        .await;
    assert_eq!(again.status(), 409);
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    assert_eq!(
        batch["pages"][0]["outcome"],
        json!(format!("documents of dossier {reference}")),
        "{batch}"
    );
    common::stop(app, env).await;
}

/// The receipt letter is a paper filer's only proof of filing. When it
/// cannot be written as the envelope is confirmed (its table held past the
/// statement bound), the dossier stands, the operator is told to confirm
/// again, and confirming again writes it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_letter_not_written_at_confirmation_is_written_when_confirmed_again() {
    let env = common::TestEnv::on(Backend::Servers).await;
    let mut config = env.config();
    config.db_statement_timeout_ms = 3_000;
    let app = App::start(&config).await;
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let mut stack = vec![separator_page(&app).await];
    stack.extend(scanned(&form_pdf(&app, amina("Lettre")).await, 70).await);
    let uploaded = upload(&app, "station-59-7", today, &[today.to_string()], &stack).await;
    let batch = read_batch(&app, uploaded["batch_id"].as_str().unwrap()).await;
    let id = batch["envelopes"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/postal/envelopes/{id}/confirmation");
    let fields = keyed_fields();

    let held = crate::faults::TableLock::take(&env, "intake_postal.postal_letters").await;
    let r = app
        .mailroom_post(
            &path,
            &json!({"operator_id": "mailroom-ana", "fields": fields}),
        )
        .await;
    assert_eq!(r.status(), 503);
    let told = r.text().await.unwrap();
    assert!(told.contains("confirm the envelope again"), "{told}");
    held.release().await;

    // The dossier stands, with no receipt letter yet.
    let filed: Value = app
        .mailroom_get_json(&format!("/api/v1/postal/envelopes/{id}"))
        .await;
    assert_eq!(filed["state"], "filed", "{filed}");
    let reference = filed["reference"].as_str().unwrap().to_string();
    let receipts = |letters: Vec<Value>| letters.iter().filter(|l| l["kind"] == "receipt").count();
    let letters: Vec<Value> = app
        .mailroom_get_json(&format!("/api/v1/postal/letters?reference={reference}"))
        .await;
    assert_eq!(receipts(letters), 0);

    // Confirming again answers the same dossier and writes the letter.
    for _ in 0..2 {
        let r = app
            .mailroom_post(&path, &json!({"operator_id": "mailroom-ana"}))
            .await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let again: Value = r.json().await.unwrap();
        assert_eq!(again["reference"], json!(reference));
    }
    let letters: Vec<Value> = app
        .mailroom_get_json(&format!("/api/v1/postal/letters?reference={reference}"))
        .await;
    assert_eq!(receipts(letters), 1, "one receipt letter, once");
    common::stop(app, env).await;
}

/// The letters the notifier asks for are made a batch at a time: a request
/// delivered twice in a batch (a republished event) is one letter, and
/// each other request has its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_requested_twice_in_a_batch_is_listed_once() {
    use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
    use guichet_proto::v1 as pb;
    use prost::Message as _;
    let (env, app) = common::mesh_on(Backend::Servers).await;
    let mut rng = rand::rng();
    let reference = |rng: &mut rand::rngs::ThreadRng| {
        guichet_dossier::Reference::generate(guichet_dossier::Channel::Web, 2026, rng)
            .as_str()
            .to_string()
    };
    let (first, second) = (reference(&mut rng), reference(&mut rng));
    let request = |reference: &str| {
        OutgoingMessage::traced(
            EVENTS_EXCHANGE,
            "letter.decided_favourable.75".into(),
            pb::LetterRequest {
                key: format!("decision:{reference}|paper"),
                reference: reference.to_string(),
                kind: "decided_favourable".into(),
                addressee: vec![
                    "Amina BENALI".into(),
                    "12 rue Solférino".into(),
                    "59000 Lille".into(),
                ],
                subject: "décision".into(),
                paragraphs: vec!["Votre titre de séjour vous sera délivré.".into()],
                language: "fr".into(),
                seal: String::new(),
            }
            .encode_to_vec(),
        )
    };
    // The first request twice, each its own message, then the second.
    let messages = [request(&first), request(&first), request(&second)];
    for r in app.mesh.bus.publish(&messages).await {
        r.unwrap();
    }
    // Delivered in order: once the second's letter is there, both copies of
    // the first have been handled.
    letter_of(&app, &second, "decided_favourable").await;
    let letters: Vec<Value> = app
        .mailroom_get(&format!("/api/v1/postal/letters?reference={first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["kind"], "decided_favourable");
    assert!(
        letter_text(&app, letters[0]["id"].as_str().unwrap())
            .await
            .contains("Votre titre de séjour vous sera délivré.")
    );
    common::stop(app, env).await;
}
