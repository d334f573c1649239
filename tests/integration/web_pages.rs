//! The persons' pages, against a whole Guichet on PostgreSQL and RabbitMQ:
//! first as plain HTTP (what every page answers and carries, forms without
//! their token refused, a filing without JavaScript), then in Debian's
//! Chromium driven by Playwright with axe-core (`tests/browser/run.mjs`):
//! every page in both languages with no violation, the whole filing path
//! with the mouse in French and English and with the keyboard alone, and
//! each filing found in instruction with its documents.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{App, Backend, TestEnv, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The pages a person can open without anything in hand, both languages.
const PAGES: &[&str] = &[
    "/",
    "/deposer",
    "/mon-dossier",
    "/rendez-vous",
    "/bloque",
    "/verifier",
    "/donnees",
    "/en/",
    "/en/deposer",
    "/en/mon-dossier",
    "/en/rendez-vous",
    "/en/bloque",
    "/en/verifier",
    "/en/donnees",
];

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The CSRF cookie and token a page gives its visitor.
async fn token(http: &reqwest::Client, base: &str, path: &str) -> (String, String) {
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("guichet_csrf="))
        .expect("a CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let token = html[at..].split('"').next().unwrap().to_string();
    assert_eq!(cookie, format!("guichet_csrf={token}"));
    (cookie, token)
}

#[tokio::test]
async fn every_page_answers_styled_with_its_headers_in_both_languages() {
    let env = TestEnv::new().await;
    let app = App::start(&env.config()).await;
    let http = no_redirects();
    for path in PAGES {
        let r = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = r.text().await.unwrap();
        let lang = if path.starts_with("/en") { "en" } else { "fr" };
        assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{path}");
        assert!(!html.contains("<script"), "{path} runs no script");
        assert!(!html.contains(" style=\""), "{path} has no inline style");
        // Every form that posts carries its token.
        assert_eq!(
            html.matches("method=\"post\"").count(),
            html.matches("name=\"csrf\"").count(),
            "{path}"
        );
        let sheet = html
            .split("rel=\"stylesheet\" href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a stylesheet")
            .to_string();
        let css = http
            .get(format!("{}{sheet}", app.base))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), 200, "{sheet}");
        assert_eq!(css.headers()["content-encoding"], "gzip", "{sheet}");
        assert!(
            css.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
    // The fonts the stylesheet names are served.
    let font = http
        .get(format!(
            "{}/dsfr/{}/fonts/Marianne-Regular.woff2",
            app.base,
            guichet_gateway::web::assets::DSFR_VERSION
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(font.status(), 200);
    assert_eq!(font.headers()["content-type"], "font/woff2");
    // The paper form, blank, to print and post.
    for path in ["/formulaire", "/en/formulaire"] {
        let r = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/pdf");
        assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
    }
    // No page for what does not exist.
    let r = http
        .get(format!("{}/deposer/nope/etape/demarche", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_form_without_its_token_or_from_another_site_changes_nothing() {
    let env = TestEnv::new().await;
    let app = App::start(&env.config()).await;
    let http = no_redirects();
    // No token, a wrong token, a token without its cookie: refused, no draft.
    let (cookie, token) = token(&http, &app.base, "/deposer").await;
    for (cookie, body) in [
        (Some(cookie.as_str()), String::new()),
        (
            Some(cookie.as_str()),
            "csrf=wrong-token-of-twenty-chars".to_string(),
        ),
        (None, format!("csrf={token}")),
    ] {
        let mut r = http
            .post(format!("{}/deposer", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403, "{cookie:?} {body}");
        assert!(r.text().await.unwrap().contains("<h1>"), "a page, in words");
    }
    // A browser marking the form as another site's: refused before the page.
    let r = http
        .post(format!("{}/deposer", app.base))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // With both: a draft, and its first step.
    let r = http
        .post(format!("{}/deposer", app.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("/deposer/") && to.ends_with("/etape/demarche"),
        "{to}"
    );
    app.stop().await;
    env.cleanup().await;
}

/// The case as an instructor of 59 reads it, once instruction has it.
async fn case_in_instruction(app: &App, reference: &str) -> Value {
    eventually(WAIT, "the dossier in instruction", || async {
        let r = app
            .agent_get(
                "instructor-59",
                &format!("/api/v1/agent/dossiers/{reference}"),
            )
            .await;
        if r.status() == 200 {
            r.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await
}

/// Posts a form as a browser without JavaScript would.
async fn post_form(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    http.post(format!("{base}{path}"))
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_filing_made_with_forms_alone_reaches_instruction_with_its_documents() {
    let env = TestEnv::new().await;
    let app = App::start(&env.config()).await;
    let http = no_redirects();
    let (cookie, csrf) = token(&http, &app.base, "/en/deposer").await;
    let r = post_form(&http, &app.base, &cookie, "/en/deposer", &[("csrf", &csrf)]).await;
    let first = r.headers()["location"].to_str().unwrap().to_string();
    assert!(first.starts_with("/en/deposer/"), "{first}");
    let draft = first.split('/').nth(3).unwrap().to_string();
    let step = |s: &str| format!("/en/deposer/{draft}/etape/{s}");
    let steps: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "demarche",
            vec![("procedure", "first_application"), ("motif", "student")],
        ),
        (
            "identite",
            vec![
                ("applicant.family_name", "Nguyen"),
                ("applicant.given_names", "Thi Lan"),
                ("applicant.birth_date", "17/05/2001"),
                ("applicant.nationality", "VNM"),
            ],
        ),
        (
            "contact",
            vec![
                ("contact.email", "lan.nguyen@example.org"),
                ("contact.address.line1", "1 rue de Béthune"),
                ("contact.address.postal_code", "59000"),
                ("contact.address.city", "Lille"),
                ("contact.answer_channel", "email"),
            ],
        ),
        ("titre", vec![]),
    ];
    for (name, fields) in &steps {
        // A birth date in the future is refused on its step, in words.
        if *name == "identite" {
            let mut wrong = fields.clone();
            wrong[2] = ("applicant.birth_date", "01/01/2999");
            wrong.push(("csrf", &csrf));
            let r = post_form(&http, &app.base, &cookie, &step(name), &wrong).await;
            assert_eq!(r.status(), 422);
            let html = r.text().await.unwrap();
            assert!(html.contains("id=\"applicant-birth_date-error\""), "{html}");
            assert!(
                html.contains("href=\"#applicant-birth_date\""),
                "the summary links to it"
            );
        }
        let mut fields = fields.clone();
        fields.push(("csrf", &csrf));
        let r = post_form(&http, &app.base, &cookie, &step(name), &fields).await;
        assert_eq!(r.status(), 303, "{name}: {}", r.text().await.unwrap());
    }
    // Saved: the code written down, typed back in small letters, resumes it.
    let typed = draft.to_lowercase().replace('-', " ");
    let r = post_form(
        &http,
        &app.base,
        &cookie,
        "/en/deposer/reprendre",
        &[("csrf", &csrf), ("code", &typed)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/en/deposer/{draft}/etape/recapitulatif")
    );
    let r = post_form(
        &http,
        &app.base,
        &cookie,
        "/en/deposer/reprendre",
        &[("csrf", &csrf), ("code", "0000-0000-0000-0000")],
    )
    .await;
    assert_eq!(r.status(), 404);
    // The documents step names what a first application as a student needs.
    let html = http
        .get(format!("{}{}", app.base, step("documents")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in [
        "passport",
        "photo",
        "proof_of_address",
        "birth_certificate",
        "enrolment_certificate",
        "proof_of_resources",
    ] {
        assert!(
            html.contains(&format!("name=\"{kind}\"")),
            "{kind} asked for"
        );
    }
    let photo = common::tiny_png();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "passport",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        )
        .part(
            "photo",
            reqwest::multipart::Part::bytes(photo.clone())
                .file_name("photo.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let r = http
        .post(format!("{}/en/deposer/{draft}/documents", app.base))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let r = post_form(
        &http,
        &app.base,
        &cookie,
        &format!("/en/deposer/{draft}/envoi"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    let receipt = http
        .get(format!("{}/en/deposer/{draft}/recepisse", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "<strong class=\"guichet-code\">";
    let at = receipt.find(marker).expect("a reference") + marker.len();
    let reference = receipt[at..].split('<').next().unwrap().to_string();
    // Sending again files nothing more: the same receipt.
    let r = post_form(
        &http,
        &app.base,
        &cookie,
        &format!("/en/deposer/{draft}/envoi"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        r.headers()["location"],
        format!("/en/deposer/{draft}/recepisse")
    );
    // In instruction, with the photo's file received and the rest missing.
    let case = case_in_instruction(&app, &reference).await;
    let documents = case["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 1, "{case}");
    assert_eq!(documents[0]["kind"], "photo");
    assert_eq!(case["dossier"]["channel"], "web", "{case}");
    assert_eq!(case["dossier"]["procedure"], "first_application", "{case}");
    // The receipt's PDF, by the draft's link, in English.
    let pdf = eventually(WAIT, "the receipt PDF", || async {
        let r = http
            .get(format!("{}/en/deposer/{draft}/recepisse/pdf", app.base))
            .send()
            .await
            .unwrap();
        (r.status() == 200).then_some(r)
    })
    .await
    .bytes()
    .await
    .unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(
        common::pdf_text(&pdf).contains(&reference),
        "the receipt names the file"
    );
    app.stop().await;
    env.cleanup().await;
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test]
async fn in_chromium_every_page_passes_axe_and_the_filing_path_works_by_mouse_and_keyboard() {
    let modules = browser_dir().join("node_modules/playwright-core");
    assert!(
        modules.exists(),
        "the browser tests need `npm ci` in tests/browser (.ci/run does it) and Debian's chromium"
    );
    let env = TestEnv::on(Backend::Servers).await;
    let app = App::start(&env.config()).await;
    // A desk of 59 for the booking.
    let mut desk =
        guichet_proto::v1::desk_client::DeskClient::new(app.grpc_as("supervisor-59").await);
    desk.upsert_site(common::weekday_site(
        "59-lille",
        "Préfecture du Nord – Lille",
        "59",
        "09:00",
    ))
    .await
    .expect("a desk of 59");
    let files =
        std::env::temp_dir().join(format!("guichet-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("passport.pdf"), common::letter_pdf("Passeport")).unwrap();
    std::fs::write(files.join("photo.png"), common::tiny_png()).unwrap();
    let out = tokio::task::spawn_blocking({
        let base = app.base.clone();
        let files = files.clone();
        move || {
            Command::new("node")
                .arg("run.mjs")
                .current_dir(browser_dir())
                .env("GUICHET_URL", base)
                .env("GUICHET_FILES", files)
                .env("GUICHET_SITE", "59-lille")
                .output()
                .expect("node, to drive Chromium")
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the browser run's report ({e}): {stderr}"));
    assert!(out.status.success(), "{report:#}\n{stderr}");
    assert_eq!(
        report["violations"],
        serde_json::json!([]),
        "axe-core: {report:#}"
    );
    let filed = report["filed"].as_array().unwrap();
    assert_eq!(filed.len(), 3, "French, English, keyboard: {report:#}");
    for f in filed {
        let reference = f["reference"].as_str().unwrap();
        let case = case_in_instruction(&app, reference).await;
        let kinds: Vec<&str> = case["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"passport"), "{reference}: {case}");
        assert_eq!(case["dossier"]["procedure"], "renewal", "{case}");
        assert_eq!(case["dossier"]["channel"], "web", "{case}");
    }
    for w in report["weights"].as_array().unwrap() {
        assert!(w["wire_total"].as_u64().unwrap() > 1000, "{w}");
    }
    let _ = std::fs::remove_dir_all(&files);
    app.stop().await;
    env.cleanup().await;
}

/// The value of the first hidden or text input named `name` in `html`.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_string())
}

#[tokio::test]
async fn my_file_shows_the_status_then_with_the_code_the_papers_and_takes_missing_documents() {
    use common::notify::{SmsDouble, SmtpInbox, night_clock, notified_app};
    let env = TestEnv::new().await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(env.config(), &inbox, &sms, night_clock()).await;
    // Filed with no document: every one is missing.
    let mut filing = common::example("renewal-employee.json");
    filing["documents"] = serde_json::json!([]);
    let reference = app.file_accepted(&filing).await;
    let http = no_redirects();
    let (cookie, csrf) = token(&http, &app.base, "/mon-dossier").await;
    let ask = |fields: Vec<(&'static str, String)>| {
        let http = http.clone();
        let cookie = cookie.clone();
        let url = format!("{}/mon-dossier", app.base);
        async move {
            http.post(url)
                .header("cookie", cookie)
                .form(&fields)
                .send()
                .await
                .unwrap()
        }
    };
    let base = vec![
        ("csrf", csrf.clone()),
        ("reference", reference.clone()),
        ("birth_date", "02/03/1991".to_string()),
    ];
    // The birth date as people type it: the state, the cover, no name.
    let page = eventually(WAIT, "the file in instruction", || async {
        let r = ask(base.clone()).await;
        if r.status() == 200 {
            Some(r.text().await.unwrap())
        } else {
            None
        }
    })
    .await;
    assert!(page.contains("fr-callout__title"), "{page}");
    assert!(!page.contains("Benali"), "no name without the code");
    // A wrong birth date: a page naming the field, not the file.
    let mut wrong = base.clone();
    wrong[2].1 = "01/01/1950".into();
    let r = ask(wrong).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("href=\"#reference\""));
    // The code, sent to the phone on the file.
    let r = http
        .post(format!("{}/mon-dossier/code", app.base))
        .header("cookie", &cookie)
        .form(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let code = crate::person_code::nth_code(&sms, &reference, 0).await;
    let mut with_code = base.clone();
    with_code.push(("code", code.clone()));
    let page = ask(with_code.clone()).await.text().await.unwrap();
    assert!(page.contains("Benali"), "the name with the code");
    assert!(
        page.contains("/mon-dossier/documents"),
        "a form for what is missing"
    );
    // A missing document sent from the page: received, with its receipt.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("reference", reference.clone())
        .text("birth_date", "1991-03-02")
        .text("code", code.clone())
        .part(
            "employment_contract",
            reqwest::multipart::Part::bytes(common::letter_pdf("Contrat de travail"))
                .file_name("contrat.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
        .part(
            "proof_of_address",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        );
    let r = http
        .post(format!("{}/mon-dossier/documents", app.base))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("fr-alert--success"), "{page}");
    let case: Value = app
        .agent_get(
            "instructor-59",
            &format!("/api/v1/agent/dossiers/{reference}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        case["documents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "employment_contract" && d["channel"] == "web"),
        "{case}"
    );
    // A paper to download, by a form (the code never in an address).
    let page = eventually(WAIT, "the receipt among the papers", || async {
        let page = ask(with_code.clone()).await.text().await.unwrap();
        input_value(&page, "paper").map(|_| page)
    })
    .await;
    let paper = input_value(&page, "paper").unwrap();
    let mut fields = with_code.clone();
    fields.push(("paper", paper));
    let r = http
        .post(format!("{}/mon-dossier/papier", app.base))
        .header("cookie", &cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
    // Without the code, the same form is refused in words.
    let mut fields = base.clone();
    fields.push(("paper", "whatever".into()));
    let r = http
        .post(format!("{}/mon-dossier/papier", app.base))
        .header("cookie", &cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    app.stop().await;
    env.cleanup().await;
}

/// A gateway with a request bound of 1 s, before a service that takes
/// connections and never answers (`targets` puts the silent service's URL
/// where the test wants it).
struct BeforeASilentService {
    base: String,
    _gateway: guichet_gateway::server::Running,
    shutdown: guichet_kit::shutdown::Shutdown,
    holding: tokio::task::JoinHandle<()>,
}

impl BeforeASilentService {
    async fn start(
        env: &TestEnv,
        targets: impl FnOnce(String) -> guichet_gateway::Targets,
    ) -> Self {
        let mut config = env.config();
        config.request_timeout_ms = 1_000;
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let holding = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = silent.accept().await {
                held.push(connection);
            }
        });
        let shutdown = guichet_kit::shutdown::Shutdown::new();
        let shared = common::shared(&config, &shutdown).await;
        let gateway = common::start_gateway(&config, targets(url), &shared).await;
        Self {
            base: format!("http://{}", gateway.http_addr),
            _gateway: gateway,
            shutdown,
            holding,
        }
    }

    fn stop(self) {
        self.shutdown.cancel();
        self.holding.abort();
    }
}

/// A service that takes the connection and never answers (here instruction,
/// which the open data's page asks): the page says the service is
/// unavailable once the request's time bound has passed, instead of holding
/// the person, and a place among the gateway's requests, until the browser
/// gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_service_falls_silent_says_it_is_unavailable_within_the_bound() {
    let env = TestEnv::on(Backend::Embedded).await;
    let silent = BeforeASilentService::start(&env, |url| guichet_gateway::Targets {
        instruction: url,
        ..common::not_started()
    })
    .await;
    let base = &silent.base;
    for path in ["/donnees", "/en/donnees"] {
        // The bound is on a hang, far above the one-second time bound.
        let page = tokio::time::timeout(
            Duration::from_secs(60),
            reqwest::get(format!("{base}{path}")),
        )
        .await
        .expect("the page is answered, not held")
        .unwrap();
        assert_eq!(page.status(), 503, "{path}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let body = page.text().await.unwrap();
        let title = if path.starts_with("/en") {
            "Service temporarily unavailable"
        } else {
            "Service momentanément indisponible"
        };
        assert!(body.contains(title), "{path}: {body}");
    }
    silent.stop();
    env.cleanup().await;
}

/// A filing in JSON alone has the request's time bound, as every other call;
/// only a filing with files has the upload's (five minutes). Here intake
/// takes the call and never answers: the filer hears `504` once the bound
/// has passed, not after five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_filing_whose_intake_falls_silent_gets_504_at_the_request_bound() {
    let env = TestEnv::on(Backend::Embedded).await;
    let silent = BeforeASilentService::start(&env, |url| guichet_gateway::Targets {
        intake_web: url,
        ..common::not_started()
    })
    .await;
    let base = &silent.base;
    let (_, filing) = common::example_filings().remove(0);
    let sent = reqwest::Client::new()
        .post(format!("{base}/api/v1/dossiers"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&filing)
        .send();
    // A bound on a hang, well under the upload bound: not a measure.
    let answer = tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the filing is answered within the request bound, not the upload bound")
        .unwrap();
    assert_eq!(answer.status(), 504);
    silent.stop();
    env.cleanup().await;
}
