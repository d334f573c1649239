//! The agents' workspace (`/agents`), against a whole Guichet and the real
//! OpenID provider (oidc-provider from npm, `infra/oidc`): first as plain
//! HTTP, a browser without JavaScript (sign-in, the queue, take-next, a
//! document request, a decision, a case of another prefecture refused and
//! recorded in the audit log, forms without their token refused), then in
//! Debian's Chromium with axe-core (`tests/browser/agents.mjs`).

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{App, Backend, TestEnv, eventually};
use serde_json::{Value, json};

use crate::access::real_provider;

const WAIT: Duration = Duration::from_secs(60);

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A gateway on a port of its own and a provider that sends the browser
/// back to it.
async fn start(backend: Backend) -> (TestEnv, App, real_provider::Provider) {
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = real_provider::Provider::start_for(&format!("{base}/auth/callback"));
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.access.oidc_issuer = Some(provider.issuer.clone());
    config.access.public_url = Some(base);
    let app = App::builder(&config).gateway_port(port).start().await;
    (env, app, provider)
}

/// A filing of `postal_code`'s prefecture, recorded by instruction.
async fn filed(app: &App, family_name: &str, postal_code: &str) -> String {
    let mut filing = common::example("renewal-employee.json");
    filing["applicant"]["family_name"] = json!(family_name);
    filing["contact"]["address"]["postal_code"] = json!(postal_code);
    // Covered for 30 more days whatever the day the test runs: "soon".
    let expires =
        guichet_dossier::calendar::paris_date(chrono::Utc::now()) + chrono::Duration::days(30);
    filing["current_title"]["expires_on"] = json!(expires.to_string());
    let born = filing["applicant"]["birth_date"]
        .as_str()
        .unwrap()
        .to_string();
    let reference = app.file_accepted(&filing).await;
    eventually(WAIT, "the dossier in instruction", || async {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{reference}/status?birth_date={born}"
            ))
            .await;
        (r.status() == 200).then_some(())
    })
    .await;
    reference
}

/// An agent's browser session: its cookie and the token its forms carry.
struct Session {
    cookie: String,
    csrf: String,
}

/// Signs `uid` in at the provider through the gateway, as a browser does,
/// and lands on the workspace's door.
async fn sign_in(app: &App, uid: &str) -> Session {
    let http = no_redirects();
    let r = http
        .get(format!("{}/auth/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let authorize = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let back = real_provider::sign_in(&authorize, uid, real_provider::DEV_PASSWORD).await;
    assert!(back.as_str().starts_with(&app.base), "{back}");
    let r = http.get(back).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/agents", "to the workspace");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let door = http
        .get(format!("{}/agents", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(door.status(), 200);
    let html = door.text().await.unwrap();
    assert!(html.contains(uid), "the door names who signed in");
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the sign-out form")
        + 19;
    let csrf = html[at..].split('"').next().unwrap().to_string();
    assert!(csrf.len() > 20, "the session's token: {csrf}");
    Session { cookie, csrf }
}

impl Session {
    async fn get(&self, app: &App, path: &str) -> (u16, String) {
        let r = no_redirects()
            .get(format!("{}{path}", app.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form as the browser would; the status and where it leads.
    async fn post(&self, app: &App, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let r = no_redirects()
            .post(format!("{}{path}", app.base))
            .header("cookie", &self.cookie)
            .form(&all)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let to = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        (status, to.unwrap_or(r.text().await.unwrap()))
    }
}

/// The case as instruction's API shows it to an agent's session.
async fn case_json(app: &App, s: &Session, reference: &str) -> Value {
    no_redirects()
        .get(format!("{}/api/v1/agent/dossiers/{reference}", app.base))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn an_instructor_works_a_case_in_pages(backend: Backend) {
    let (env, app, _provider) = start(backend).await;
    let ours = filed(&app, "Ourfile", "59000").await;
    let theirs = filed(&app, "Theirfile", "75011").await;
    let anonymous = no_redirects()
        .get(format!("{}/agents/instruction", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "the queue needs a signed-in agent");
    assert!(
        anonymous
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
        "a refused page is a page"
    );
    let me = sign_in(&app, "instructor-59").await;

    // The queue of 59 names our file, not theirs; filters narrow it.
    let (status, queue) = me.get(&app, "/agents/instruction").await;
    assert_eq!(status, 200);
    assert!(queue.contains(&ours), "our file in the queue");
    assert!(!queue.contains(&theirs), "75's file is not in 59's queue");
    let (status, filtered) = me
        .get(&app, "/agents/instruction?channel=postal&urgency=")
        .await;
    assert_eq!(status, 200);
    assert!(
        !filtered.contains(&ours),
        "a web filing is not a postal one"
    );
    let (status, english) = me.get(&app, "/en/agents/instruction?urgency=soon").await;
    assert_eq!(status, 200);
    assert!(english.contains("Instruction queue") && english.contains(&ours));
    let (status, critical) = me.get(&app, "/agents/instruction?urgency=critical").await;
    assert_eq!(status, 200);
    assert!(
        !critical.contains(&ours),
        "30 days of cover left is not critical"
    );
    let (status, bad) = me
        .get(&app, "/agents/instruction?cover_ends_before=31/02/2027")
        .await;
    assert_eq!(status, 422, "a date that is no date is named");
    assert!(bad.contains("cover_ends_before-error"), "{bad}");

    // A form without the session's token changes nothing.
    let forged = no_redirects()
        .post(format!("{}/agents/instruction/suivant", app.base))
        .header("cookie", &me.cookie)
        .form(&[("prefecture", "59")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(case_json(&app, &me, &ours).await["taken_by"].is_null());

    // Take-next gives the oldest free file of 59: ours.
    let (status, to) = me.post(&app, "/agents/instruction/suivant", &[]).await;
    assert_eq!(status, 303, "{to}");
    assert_eq!(to, format!("/agents/dossiers/{ours}"));
    let (status, case) = me.get(&app, &to).await;
    assert_eq!(status, 200);
    assert!(case.contains("Ourfile") && case.contains("Vous traitez ce dossier"));

    // A request without a document is refused in words, then made.
    let pieces = format!("/agents/dossiers/{ours}/pieces");
    let (status, page) = me.post(&app, &pieces, &[("deadline", "")]).await;
    assert_eq!(status, 422);
    assert!(page.contains("request-kinds-error"), "{page}");
    let deadline = (guichet_dossier::calendar::paris_date(chrono::Utc::now())
        + chrono::Duration::days(30))
    .format("%d/%m/%Y")
    .to_string();
    let (status, to) = me
        .post(
            &app,
            &pieces,
            &[
                ("kinds", "proof_of_address"),
                ("deadline", &deadline),
                ("reason", "Justificatif de moins de trois mois"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let after = case_json(&app, &me, &ours).await;
    assert_eq!(after["dossier"]["state"], "documents_requested", "{after}");
    assert_eq!(after["missing"], json!(["proof_of_address"]), "{after}");

    // Deciding now is refused in words: the file waits for a document.
    let (status, page) = me
        .post(
            &app,
            &format!("/agents/dossiers/{ours}/decision"),
            &[("outcome", "favourable"), ("decision_reason", "Trop tôt")],
        )
        .await;
    assert_eq!(status, 409);
    assert!(page.contains("pas possible dans l’état actuel"), "{page}");
    // The document arrives (recorded through the agents' API, as the
    // mailroom would): the file is complete, and its holder resumes the
    // review.
    let arrived = no_redirects()
        .post(format!(
            "{}/api/v1/agent/dossiers/{ours}/documents",
            app.base
        ))
        .header("cookie", &me.cookie)
        .header("x-csrf-token", &me.csrf)
        .json(&json!({
            "kind": "proof_of_address",
            "sha256": "ab".repeat(32),
            "media_type": "application/pdf",
            "size_bytes": 1024,
            "filename": "justificatif.pdf",
            "channel": "postal",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(arrived.status(), 200, "{:?}", arrived.text().await);
    let (status, case) = me.get(&app, &format!("/agents/dossiers/{ours}")).await;
    assert_eq!(status, 200);
    assert!(
        case.contains("Reprendre l’examen"),
        "the holder resumes the review"
    );
    let (status, to) = me
        .post(
            &app,
            &format!("/agents/dossiers/{ours}/reprise"),
            &[("reason", "Documents reçus")],
        )
        .await;
    assert_eq!(status, 303, "{to}");

    // A decision needs its outcome; then it is recorded.
    let decision = format!("/agents/dossiers/{ours}/decision");
    let (status, page) = me
        .post(
            &app,
            &decision,
            &[("decision_reason", "Conditions remplies")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("decision-outcome-error"), "{page}");
    let (status, to) = me
        .post(
            &app,
            &decision,
            &[
                ("outcome", "favourable"),
                ("decision_reason", "Conditions remplies"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let decided = case_json(&app, &me, &ours).await;
    assert_eq!(decided["dossier"]["state"], "favourable", "{decided}");

    // 75's case is refused, in a page, and the refusal is in the audit log.
    let (status, page) = me.get(&app, &format!("/agents/dossiers/{theirs}")).await;
    assert_eq!(status, 403);
    assert!(!page.contains("Theirfile"), "nothing of the case shows");
    let operator = sign_in(&app, "operator-1").await;
    let (status, log) = operator
        .get(&app, &format!("/api/v1/admin/audit?dossier={theirs}"))
        .await;
    assert_eq!(status, 200, "{log}");
    let log: Value = serde_json::from_str(&log).unwrap();
    let refused: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["agent"] == "instructor-59" && e["status"] == 403)
        .collect();
    assert_eq!(refused.len(), 1, "{log:#}");
    assert_eq!(refused[0]["prefecture"], "75");
    assert_eq!(
        refused[0]["operation"], "GET /agents/dossiers/{reference}",
        "{log:#}"
    );

    // Signing out ends the session: the queue is closed again.
    let (status, to) = me.post(&app, "/agents/deconnexion", &[]).await;
    assert_eq!((status, to.as_str()), (303, "/agents"));
    let (status, _) = me.get(&app, "/agents/instruction").await;
    assert_eq!(status, 401);
    app.stop().await;
    env.cleanup().await;
}
on_both_backends!(an_instructor_works_a_case_in_pages);

/// Another agent's case is taken over explicitly, with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_held_by_another_is_taken_over_with_a_reason() {
    let (env, app, _provider) = start(Backend::Servers).await;
    let reference = filed(&app, "Heldfile", "59000").await;
    let first = sign_in(&app, "instructor-59").await;
    let (status, _) = first.post(&app, "/agents/instruction/suivant", &[]).await;
    assert_eq!(status, 303);
    let second = sign_in(&app, "supervisor-59").await;
    let (status, page) = second
        .get(&app, &format!("/agents/dossiers/{reference}"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("instructor-59"), "says who holds it");
    let (status, page) = second
        .post(
            &app,
            &format!("/agents/dossiers/{reference}/decision"),
            &[("outcome", "unfavourable"), ("decision_reason", "x")],
        )
        .await;
    assert_eq!(status, 409, "held by another: {page}");
    let (status, to) = second
        .post(
            &app,
            &format!("/agents/dossiers/{reference}/reprise"),
            &[("reason", "Agent absent")],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let case = case_json(&app, &second, &reference).await;
    assert_eq!(case["taken_by"], "supervisor-59", "{case}");
    let events = case["dossier"]["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "taken_over"
            && e["actor"] == "supervisor-59"
            && e["reason"].as_str().unwrap().contains("Agent absent")),
        "the take-over and its reason are in the history: {case}"
    );
    app.stop().await;
    env.cleanup().await;
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// In Chromium, signed in at the real provider's own login page: the
/// instructor of 59 takes the next case with the keyboard, asks for a
/// document and decides; a case of 75 is refused; the call centre opens a
/// report and offers a desk appointment; the mailroom keys a letter from
/// its page image into a dossier; every page passes axe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_instructor_decides_and_the_call_centre_offers_an_appointment() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "the browser tests need `npm ci` in tests/browser (.ci/run does it) and Debian's chromium"
    );
    let (env, app, _provider) = start(Backend::Servers).await;
    desk_of_59(&app).await;
    letter_scanned(
        &app,
        guichet_dossier::calendar::paris_date(chrono::Utc::now()),
    )
    .await;
    let ours = filed(&app, "Navigateur", "59000").await;
    // The letter read and waiting for keying before the browser opens.
    let postal =
        common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_postal_addr)).await;
    eventually(Duration::from_secs(240), "the envelope to key", || async {
        let waiting = guichet_proto::v1::postal_client::PostalClient::new(postal.clone())
            .list_keying(guichet_proto::v1::ListKeyingRequest { limit: 10 })
            .await
            .ok()?
            .into_inner()
            .envelopes;
        (!waiting.is_empty()).then_some(())
    })
    .await;
    let theirs = filed(&app, "Ailleurs", "75011").await;
    let files =
        std::env::temp_dir().join(format!("guichet-agents-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("photo.png"), common::tiny_png()).unwrap();
    let out = tokio::task::spawn_blocking({
        let base = app.base.clone();
        let theirs = theirs.clone();
        let files = files.clone();
        move || {
            Command::new("node")
                .arg("agents.mjs")
                .current_dir(browser_dir())
                .env("GUICHET_URL", base)
                .env("GUICHET_FILES", files)
                .env("GUICHET_OTHER_CASE", theirs)
                .env("GUICHET_PASSWORD", real_provider::DEV_PASSWORD)
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
    assert_eq!(report["violations"], json!([]), "axe-core: {report:#}");
    assert_eq!(report["taken"], json!(ours), "{report:#}");
    assert_eq!(report["refused_status"], 403, "{report:#}");
    let id = report["report"].as_str().expect("a report opened");
    let operator_view = sign_in(&app, "operator-1").await;
    let (status, _) = operator_view
        .get(&app, &format!("/agents/signalements/{id}"))
        .await;
    assert_eq!(status, 403, "operators read no report");
    let answered: Value = {
        let channel =
            common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_ccc_addr)).await;
        let r = guichet_proto::v1::call_centre_client::CallCentreClient::new(channel)
            .get_report(guichet_proto::v1::GetReportRequest { id: id.into() })
            .await
            .expect("the report")
            .into_inner();
        json!({
            "state": r.state,
            "kind": r.alternative.map(|a| a.kind),
            "by": r.history.last().map(|e| e.actor.clone()),
        })
    };
    assert_eq!(
        answered,
        json!({
            "state": guichet_proto::v1::ReportState::AlternativeOffered as i32,
            "kind": guichet_proto::v1::AlternativeKind::PanAppointment as i32,
            "by": "ccc-1",
        }),
        "{report:#}"
    );
    let operator = sign_in(&app, "operator-1").await;
    let (status, log) = operator
        .get(&app, &format!("/api/v1/admin/audit?dossier={theirs}"))
        .await;
    assert_eq!(status, 200);
    assert!(log.contains("\"status\":403"), "{log}");
    let (status, log) = operator
        .get(&app, &format!("/api/v1/admin/audit?dossier={ours}"))
        .await;
    assert_eq!(status, 200);
    for operation in [
        "POST /agents/dossiers/{reference}/pieces",
        "POST /agents/dossiers/{reference}/decision",
    ] {
        assert!(log.contains(operation), "{operation}: {log}");
    }
    let keyed = report["keyed"].as_str().expect("a dossier keyed");
    eventually(WAIT, "the keyed dossier in instruction", || async {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{keyed}/status?birth_date=1990-05-14"
            ))
            .await;
        (r.status() == 200).then_some(())
    })
    .await;
    let decided = app
        .get(&format!(
            "/api/v1/dossiers/{ours}/status?birth_date=1991-03-02"
        ))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(decided["state"], "favourable", "{decided}");
    assert!(report["at_desk"].is_string(), "{report:#}");
    let _ = std::fs::remove_dir_all(&files);
    app.stop().await;
    env.cleanup().await;
}

/// A desk of prefecture 59 open on working days, set at the desk service
/// itself (this gateway trusts the real provider only).
async fn desk_of_59(app: &App) {
    let channel = common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_pan_addr)).await;
    guichet_proto::v1::desk_client::DeskClient::new(channel)
        .upsert_site(common::weekday_site(
            "59-lille",
            "Préfecture du Nord – Lille",
            "59",
            "09:00",
        ))
        .await
        .expect("a desk of 59");
}

/// The first value of the radio buttons named `name` in `html`.
fn first_radio(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_string())
}

/// The call centre looks a file up, opens a report for a blocked caller,
/// and answers it with a desk appointment booked on the phone; the
/// prefecture's instructor sees the report, another prefecture's does not.
async fn the_call_centre_opens_a_report_and_offers_an_appointment(backend: Backend) {
    let (env, app, _provider) = start(backend).await;
    desk_of_59(&app).await;
    let reference = filed(&app, "Appelante", "59000").await;
    let ccc = sign_in(&app, "ccc-1").await;
    let (status, hub) = ccc.get(&app, "/agents/centre-appels").await;
    assert_eq!(status, 200);
    assert!(hub.contains("Ouvrir un signalement"));

    // The look-up: the birth date is the check.
    let (status, page) = ccc
        .post(
            &app,
            "/agents/centre-appels/consultation",
            &[("reference", &reference), ("birth_date", "02/03/1991")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&reference) && page.contains("role=\"status\""));
    let (status, page) = ccc
        .post(
            &app,
            "/agents/centre-appels/consultation",
            &[("reference", &reference), ("birth_date", "03/03/1991")],
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
    assert!(page.contains("reference-error"), "{page}");

    // Filing for the caller: refused without their recorded consent, then
    // filed, the same dossier as any channel's.
    let (status, form) = ccc.get(&app, "/agents/centre-appels/depot").await;
    assert_eq!(status, 200);
    assert!(form.contains("name=\"consent\""));
    let expires = (guichet_dossier::calendar::paris_date(chrono::Utc::now())
        + chrono::Duration::days(20))
    .format("%d/%m/%Y")
    .to_string();
    let mut filing = vec![
        ("procedure", "renewal"),
        ("motif", "employee"),
        ("applicant.family_name", "Telephone"),
        ("applicant.given_names", "Mariam"),
        ("applicant.birth_date", "07/08/1988"),
        ("applicant.nationality", "MLI"),
        ("contact.phone", "0611112222"),
        ("contact.address.line1", "8 place du Théâtre"),
        ("contact.address.postal_code", "59000"),
        ("contact.address.city", "Lille"),
        ("contact.answer_channel", "sms"),
        ("current_title.kind", "temporary_card"),
        ("current_title.number", "FR59C1112223"),
        ("current_title.expires_on", &expires),
        ("call_id", "call-7"),
    ];
    let (status, page) = ccc.post(&app, "/agents/centre-appels/depot", &filing).await;
    assert_eq!(status, 422);
    assert!(page.contains("consent-error"), "{page}");
    filing.push(("consent", "yes"));
    let (status, page) = ccc.post(&app, "/agents/centre-appels/depot", &filing).await;
    assert_eq!(status, 200, "{page}");
    let marker = "Demande déposée : dossier ";
    let at = page.find(marker).unwrap_or_else(|| panic!("{page}")) + marker.len();
    let on_behalf = page[at..at + 15].to_string();
    eventually(WAIT, "the call centre's filing in instruction", || async {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{on_behalf}/status?birth_date=1988-08-07"
            ))
            .await;
        if r.status() != 200 {
            return None;
        }
        let status: Value = r.json().await.ok()?;
        (status["channel"] == "ccc").then_some(())
    })
    .await;

    // A report without its essentials is refused field by field.
    let (status, page) = ccc
        .post(&app, "/agents/signalements", &[("family_name", "Kone")])
        .await;
    assert!((400..500).contains(&status), "{status}");
    assert!(page.contains("category-error"), "{page}");
    let fields = [
        ("category", "appointment_impossible"),
        ("procedure", "renewal"),
        ("what_was_tried", "Aucun créneau depuis six semaines"),
        ("family_name", "Kone"),
        ("given_names", "Awa"),
        ("phone", "0612345678"),
        ("line1", "3 rue Nationale"),
        ("postal_code", "59000"),
        ("city", "Lille"),
        ("call_id", "call-42"),
    ];
    let (status, to) = ccc.post(&app, "/agents/signalements", &fields).await;
    assert_eq!(status, 303, "{to}");
    let id = to
        .strip_prefix("/agents/signalements/")
        .unwrap()
        .to_string();
    let (again_status, again) = ccc.post(&app, "/agents/signalements", &fields).await;
    assert_eq!(
        (again_status, again.as_str()),
        (303, to.as_str()),
        "the same form twice is one report"
    );

    // The report on its clock, with the desk's slots.
    let (status, page) = ccc.get(&app, &to).await;
    assert_eq!(status, 200);
    assert!(page.contains("Préfecture du Nord – Lille") && page.contains("Kone"));
    let (status, refused) = ccc
        .post(&app, &format!("{to}/rendez-vous"), &[("site", "59-lille")])
        .await;
    assert_eq!(status, 422, "no slot chosen: {refused}");
    let slot = first_radio(&page, "starts_at").expect("a free slot on the next working day");
    let (status, back) = ccc
        .post(
            &app,
            &format!("{to}/rendez-vous"),
            &[("site", "59-lille"), ("starts_at", &slot)],
        )
        .await;
    assert_eq!((status, back.as_str()), (303, to.as_str()));
    let (_, page) = ccc.get(&app, &to).await;
    assert!(page.contains("Un rendez-vous au guichet"), "{page}");
    let answered = app.get(&format!("/api/v1/reports/{id}")).await.status();
    assert_eq!(answered, 401, "a report is not public");

    // The prefecture that must answer sees it; another does not.
    let instructor = sign_in(&app, "instructor-59").await;
    let (status, _) = instructor.get(&app, &to).await;
    assert_eq!(status, 200);
    let other = sign_in(&app, "instructor-75").await;
    let (status, page) = other.get(&app, &to).await;
    assert_eq!(status, 403);
    assert!(!page.contains("Kone"));
    app.stop().await;
    env.cleanup().await;
}
on_both_backends!(the_call_centre_opens_a_report_and_offers_an_appointment);

/// A letter a person wrote instead of the form: a PDF the scanning station
/// sends as it is, straight to the postal service (this gateway trusts
/// the real provider only, and stations sign in with the development one).
async fn letter_scanned(app: &App, received: chrono::NaiveDate) -> String {
    use guichet_proto::v1 as pb;
    let pdf = common::letter_pdf(
        "Madame, Monsieur, je demande le renouvellement de mon titre de séjour. \
         Diallo Mariama, née le 14/05/1990 à Dakar, sénégalaise, 12 rue Nationale 59000 Lille.",
    );
    let channel =
        common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_postal_addr)).await;
    let uploaded = pb::postal_client::PostalClient::new(channel)
        .upload_batch(pb::UploadBatchRequest {
            station_id: "station-59-1".into(),
            reception_date: received.to_string(),
            postmark_dates: vec![received.to_string()],
            files: vec![pb::ScanFile {
                media_type: "application/pdf".into(),
                content: pdf,
                filename: "lettre.pdf".into(),
                sha256: String::new(),
            }],
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .expect("the stack uploaded")
        .into_inner();
    uploaded.batch_id
}

/// The mailroom keys a letter from its page image into a dossier, then
/// prints and posts the receipt letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailroom_keys_an_envelope_from_its_page_into_a_dossier() {
    let (env, app, _provider) = start(Backend::Servers).await;
    let received = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    letter_scanned(&app, received).await;
    let operator = sign_in(&app, "mailroom-1").await;
    let envelope = eventually(Duration::from_secs(240), "the envelope to key", || async {
        let (_, hub) = operator.get(&app, "/agents/courrier").await;
        let at = hub.find("/agents/courrier/plis/")? + "/agents/courrier/plis/".len();
        Some(hub[at..].split('"').next()?.to_string())
    })
    .await;
    let screen = format!("/agents/courrier/plis/{envelope}");
    let (status, page) = operator.get(&app, &screen).await;
    assert_eq!(status, 200);
    let at = page
        .find("src=\"/api/v1/postal/pages/")
        .expect("the page image")
        + 5;
    let image = page[at..].split('"').next().unwrap().to_string();
    let r = no_redirects()
        .get(format!("{}{image}", app.base))
        .header("cookie", &operator.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(
        page.contains("name=\"f.family_name\""),
        "a field a form field"
    );

    // Keyed without a birth date: refused, the field named, nothing filed.
    let mut fields = vec![
        ("f.procedure", "renewal"),
        ("f.motif", "family"),
        ("f.family_name", "Diallo"),
        ("f.given_names", "Mariama"),
        ("f.birth_place", "Dakar"),
        ("f.nationality", "SEN"),
        ("f.address_line1", "12 rue Nationale"),
        ("f.postal_code", "59000"),
        ("f.city", "Lille"),
        ("f.title_kind", "temporary_card"),
        ("f.title_number", "FR59B7654321"),
    ];
    let expires = (received + chrono::Duration::days(40))
        .format("%d/%m/%Y")
        .to_string();
    fields.push(("f.title_expires_on", &expires));
    let (status, refused) = operator
        .post(&app, &format!("{screen}/saisie"), &fields)
        .await;
    assert!((400..500).contains(&status), "{status}: {refused}");
    assert!(refused.contains("f-birth_date-error"), "{refused}");
    fields.push(("f.birth_date", "14/05/1990"));
    let (status, to) = operator
        .post(&app, &format!("{screen}/saisie"), &fields)
        .await;
    assert_eq!((status, to.as_str()), (303, screen.as_str()));
    let (_, page) = operator.get(&app, &screen).await;
    let filed = "Déposé : dossier ";
    let at = page
        .find(filed)
        .unwrap_or_else(|| panic!("the dossier's reference: {page}"))
        + filed.len();
    let reference = page[at..at + 15].to_string();
    eventually(WAIT, "the postal dossier in instruction", || async {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{reference}/status?birth_date=1990-05-14"
            ))
            .await;
        (r.status() == 200).then_some(())
    })
    .await;

    // Its receipt letter is printed, then posted.
    let letter = eventually(WAIT, "the receipt letter", || async {
        let (_, hub) = operator.get(&app, "/agents/courrier").await;
        let row = hub.split("<tr>").find(|row| row.contains(&reference))?;
        let at = row.find("/agents/courrier/lettres/")? + "/agents/courrier/lettres/".len();
        Some(row[at..].split('/').next()?.to_string())
    })
    .await;
    for (step, shown) in [
        ("impression", "Imprimé par mailroom-1"),
        ("envoi", "Posté par mailroom-1"),
    ] {
        let (status, _) = operator
            .post(
                &app,
                &format!("/agents/courrier/lettres/{letter}/{step}"),
                &[],
            )
            .await;
        assert_eq!(status, 303);
        let (_, hub) = operator.get(&app, "/agents/courrier").await;
        assert!(hub.contains(shown), "{shown}");
    }
    app.stop().await;
    env.cleanup().await;
}

/// A supervisor grants and withdraws roles in their prefecture only, and
/// reads the audit log; a desk agent sees their site's day.
async fn supervisors_and_desks_work_their_prefecture(backend: Backend) {
    let (env, app, _provider) = start(backend).await;
    desk_of_59(&app).await;
    let supervisor = sign_in(&app, "supervisor-59").await;
    let (status, page) = supervisor.get(&app, "/agents/supervision").await;
    assert_eq!(status, 200);
    assert!(page.contains("instructor-59"), "the team of 59");
    let grant = [
        ("uid", "new-agent-1"),
        ("role", "desk_agent"),
        ("prefecture", "59"),
    ];
    let (status, to) = supervisor
        .post(&app, "/agents/supervision/habilitations", &grant)
        .await;
    assert_eq!((status, to.as_str()), (303, "/agents/supervision"));
    let (_, page) = supervisor.get(&app, "/agents/supervision").await;
    assert!(page.contains("new-agent-1"));
    let (status, _) = supervisor
        .post(
            &app,
            "/agents/supervision/habilitations",
            &[
                ("uid", "new-agent-1"),
                ("role", "desk_agent"),
                ("prefecture", "75"),
            ],
        )
        .await;
    assert_eq!(status, 403, "not in another prefecture");
    let (status, _) = supervisor
        .post(&app, "/agents/supervision/habilitations/retrait", &grant)
        .await;
    assert_eq!(status, 303);
    let (_, page) = supervisor.get(&app, "/agents/supervision").await;
    assert!(!page.contains("new-agent-1"), "withdrawn");
    let (status, journal) = supervisor
        .get(&app, "/agents/journal?agent=supervisor-59")
        .await;
    assert_eq!(status, 200);
    assert!(
        journal.contains("POST /agents/supervision/habilitations"),
        "{journal}"
    );
    // The refusal in 75 is in the log, for the operators who see every
    // prefecture (a supervisor reads their own prefectures' entries).
    let operator = sign_in(&app, "operator-1").await;
    let (status, journal) = operator
        .get(&app, "/agents/journal?agent=supervisor-59")
        .await;
    assert_eq!(status, 200);
    assert!(
        journal.contains("Refusé (403)"),
        "the refusal is in the log"
    );
    let instructor = sign_in(&app, "instructor-59").await;
    let (status, _) = instructor.get(&app, "/agents/journal").await;
    assert_eq!(status, 403, "instructors read no audit log");

    // The desk's day: an appointment booked by phone, listed with its
    // person; attendance before its time is refused in words.
    let channel = common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_pan_addr)).await;
    let mut pan = guichet_proto::v1::desk_client::DeskClient::new(channel);
    let day = {
        let mut d =
            guichet_dossier::calendar::paris_date(chrono::Utc::now()) + chrono::Days::new(1);
        while !guichet_dossier::calendar::is_working_day(d, "59") {
            d = d + chrono::Days::new(1);
        }
        d
    };
    let slot = pan
        .list_slots(guichet_proto::v1::ListSlotsRequest {
            site_id: "59-lille".into(),
            date: Some(guichet_proto::convert::date_to_pb(day)),
        })
        .await
        .unwrap()
        .into_inner()
        .slots
        .remove(0);
    pan.book(guichet_proto::v1::BookRequest {
        site_id: "59-lille".into(),
        starts_at: slot.starts_at,
        person: Some(guichet_proto::v1::Person {
            family_name: "Guichetiere".into(),
            given_names: "Lina".into(),
            phone: "0611223344".into(),
            email: String::new(),
        }),
        route: guichet_proto::v1::BookingRoute::Phone as i32,
        booked_by: "ccc-1".into(),
        report_id: String::new(),
        idempotency_key: "desk-test".into(),
    })
    .await
    .expect("booked");
    let desk = sign_in(&app, "desk-59").await;
    let typed = day.format("%d/%m/%Y").to_string();
    let (status, page) = desk
        .get(&app, &format!("/agents/guichet?site=59-lille&jour={typed}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Guichetiere Lina") && page.contains("0611223344"),
        "{page}"
    );
    let at =
        page.find("/agents/guichet/rendez-vous/").unwrap() + "/agents/guichet/rendez-vous/".len();
    let id = page[at..].split('/').next().unwrap().to_string();
    let (status, refused) = desk
        .post(
            &app,
            &format!("/agents/guichet/rendez-vous/{id}/presence"),
            &[("present", "yes"), ("day", &day.to_string())],
        )
        .await;
    assert_eq!(status, 409, "too early: {refused}");
    let (status, page) = desk
        .post(
            &app,
            "/agents/guichet/remise",
            &[("card-reference", "W26-0000-0000-0"), ("card-number", "X1")],
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
    assert!(page.contains("card-reference-error"), "{page}");
    let other = sign_in(&app, "instructor-75").await;
    let (status, _) = other.get(&app, "/agents/guichet?site=59-lille").await;
    assert_eq!(status, 403, "no desk role");
    app.stop().await;
    env.cleanup().await;
}
on_both_backends!(supervisors_and_desks_work_their_prefecture);

/// A desk files with the person present, with a document scanned at the
/// desk: its token first in the multipart form, the file checked and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_files_with_the_documents_scanned_there() {
    use reqwest::multipart::{Form as Multipart, Part};
    let (env, app, _provider) = start(Backend::Servers).await;
    desk_of_59(&app).await;
    let desk = sign_in(&app, "desk-59").await;
    let (status, page) = desk.get(&app, "/agents/guichet/depot").await;
    assert_eq!(status, 200);
    assert!(page.contains("enctype=\"multipart/form-data\""));
    let expires = (guichet_dossier::calendar::paris_date(chrono::Utc::now())
        + chrono::Duration::days(25))
    .format("%d/%m/%Y")
    .to_string();
    let form = |csrf: Option<&str>, identity: bool| {
        let mut f = Multipart::new();
        if let Some(t) = csrf {
            f = f.text("csrf", t.to_string());
        }
        for (k, v) in [
            ("site_id", "59-lille"),
            ("procedure", "renewal"),
            ("motif", "employee"),
            ("applicant.family_name", "Auguichet"),
            ("applicant.given_names", "Sami"),
            ("applicant.birth_date", "03/04/1985"),
            ("applicant.nationality", "TUN"),
            ("contact.phone", "0622334455"),
            ("contact.address.line1", "1 rue Esquermoise"),
            ("contact.address.postal_code", "59000"),
            ("contact.address.city", "Lille"),
            ("contact.answer_channel", "sms"),
            ("current_title.kind", "temporary_card"),
            ("current_title.number", "FR59D9998887"),
            ("current_title.expires_on", expires.as_str()),
        ] {
            f = f.text(k, v.to_string());
        }
        if identity {
            f = f.text("identity_checked", "yes");
        }
        f.part(
            "passport",
            Part::bytes(common::letter_pdf("Passeport"))
                .file_name("passeport.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
    };
    let send = |f: Multipart| {
        no_redirects()
            .post(format!("{}/agents/guichet/depot", app.base))
            .header("cookie", &desk.cookie)
            .multipart(f)
            .send()
    };
    let r = send(form(None, true)).await.unwrap();
    assert_eq!(r.status(), 403, "no token, nothing filed");
    let r = send(form(Some(&desk.csrf), false)).await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("identity_checked-error"));
    let r = send(form(Some(&desk.csrf), true)).await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let marker = "Demande déposée : dossier ";
    let at = page.find(marker).unwrap_or_else(|| panic!("{page}")) + marker.len();
    let reference = page[at..at + 15].to_string();
    let status: Value = eventually(WAIT, "the desk's filing in instruction", || async {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{reference}/status?birth_date=1985-04-03"
            ))
            .await;
        if r.status() != 200 {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(status["channel"], "pan", "{status}");
    let kinds: Vec<&str> = status["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["passport"], "{status}");
    app.stop().await;
    env.cleanup().await;
}
