//! No input crashes a service. Driven by the OpenAPI document the gateway
//! serves: a NUL byte in each path and query parameter and in each body
//! field of each route is a 400 that names it, on both backends (NUL is
//! what PostgreSQL refuses outright). The same through gRPC, where the
//! services check for themselves. An idempotency key used again with
//! another request is a 409; a made-up HTTP method is counted as `other`;
//! a connection that does not finish its request head is closed.

use crate::common;

use std::time::{Duration, Instant};

use common::{App, Backend, ONLINE, TestEnv, example};
use guichet_proto::v1 as pb;
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use guichet_proto::v1::instruction_desk_client::InstructionDeskClient;
use guichet_proto::v1::postal_client::PostalClient;
use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NUL: &str = "\u{0}";

/// One text a route takes, where a NUL byte will be put.
#[derive(Debug, Clone)]
enum Target {
    Path(String),
    Query(String),
    /// A JSON body field, by its path (`person.family_name`, `kinds[0]`).
    Json(Vec<Step>),
    /// A multipart text part.
    Part(String),
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index,
}

impl Target {
    /// The field the 400 must name: the parameter, or the body field's path.
    fn field(&self) -> String {
        match self {
            Target::Path(n) | Target::Query(n) | Target::Part(n) => n.clone(),
            Target::Json(steps) => {
                let mut out = String::new();
                for s in steps {
                    match s {
                        Step::Key(k) if out.is_empty() => out.push_str(k),
                        Step::Key(k) => {
                            out.push('.');
                            out.push_str(k);
                        }
                        Step::Index => out.push_str("[0]"),
                    }
                }
                out
            }
        }
    }
}

/// Follows `$ref`s within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(doc, doc.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => v,
    }
}

/// Every text field of a JSON schema, as paths; maps (additionalProperties)
/// get a key printed on paper, `family_name`.
fn text_fields(doc: &Value, schema: &Value, at: &[Step], out: &mut Vec<Vec<Step>>) {
    let schema = resolve(doc, schema);
    match schema["type"].as_str() {
        Some("string") => out.push(at.to_vec()),
        Some("array") => {
            let mut next = at.to_vec();
            next.push(Step::Index);
            text_fields(doc, &schema["items"], &next, out);
        }
        _ => {
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    let mut next = at.to_vec();
                    next.push(Step::Key(name.clone()));
                    text_fields(doc, prop, &next, out);
                }
            }
            if schema["additionalProperties"].is_object() {
                let mut next = at.to_vec();
                next.push(Step::Key("family_name".into()));
                text_fields(doc, &schema["additionalProperties"], &next, out);
            }
        }
    }
}

/// A JSON value holding `leaf` at `steps`, and nothing else.
fn json_at(steps: &[Step], leaf: Value) -> Value {
    match steps.split_first() {
        None => leaf,
        Some((Step::Key(k), rest)) => {
            let mut m = Map::new();
            m.insert(k.clone(), json_at(rest, leaf));
            Value::Object(m)
        }
        Some((Step::Index, rest)) => Value::Array(vec![json_at(rest, leaf)]),
    }
}

/// A harmless value for a parameter that is not the one under test.
fn plain_value(doc: &Value, param: &Value) -> String {
    let schema = resolve(doc, &param["schema"]);
    if let Some(e) = schema["example"].as_str() {
        return e.to_string();
    }
    if let Some(first) = schema["enum"].get(0).and_then(Value::as_str) {
        return first.to_string();
    }
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("integer"), _) => "1".into(),
        (Some("number"), _) => "0.5".into(),
        (_, Some("date")) => "2026-01-05".into(),
        _ => "x".into(),
    }
}

/// Sends `method path` with a NUL byte in `target` and harmless values
/// elsewhere; answers the status and the body.
async fn send_with_nul(
    app: &App,
    doc: &Value,
    path: &str,
    method: &str,
    op: &Value,
    target: &Target,
) -> (u16, Value) {
    let params: Vec<&Value> = op["parameters"]
        .as_array()
        .map(|a| a.iter().map(|p| resolve(doc, p)).collect())
        .unwrap_or_default();
    let mut url_path = path.to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    for p in &params {
        let name = p["name"].as_str().unwrap().to_string();
        let required = p["required"].as_bool().unwrap_or(false);
        match p["in"].as_str().unwrap() {
            "path" => {
                let value = match target {
                    Target::Path(n) if *n == name => "a%00b".to_string(),
                    _ => plain_value(doc, p),
                };
                url_path = url_path.replace(&format!("{{{name}}}"), &value);
            }
            "query" => match target {
                Target::Query(n) if *n == name => query.push((name, NUL.into())),
                _ if required => query.push((name, plain_value(doc, p))),
                _ => {}
            },
            // A NUL byte cannot travel in an HTTP header at all: the
            // headers the API reads get plain values.
            "header" => {
                let value = if name.eq_ignore_ascii_case("idempotency-key") {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    "agent-nul-test".to_string()
                };
                headers.push((name, value));
            }
            _ => {}
        }
    }
    let url = format!("{}{}", app.base, url_path);
    let mut request = match method {
        "get" => app.http.get(&url),
        "post" => app.http.post(&url),
        "put" => app.http.put(&url),
        "delete" => app.http.delete(&url),
        other => panic!("method {other} not covered by this test"),
    };
    request = request.query(&query).header(
        "Authorization",
        crate::common::bearer(crate::common::EVERY_ROLE),
    );
    for (n, v) in headers {
        request = request.header(n, v);
    }
    let content = &op["requestBody"]["content"];
    if content["application/json"].is_object() {
        let body = match target {
            Target::Json(steps) => json_at(steps, json!(NUL)),
            _ => json!({}),
        };
        request = request.json(&body);
    } else if content["multipart/form-data"].is_object() {
        let mut form = Form::new();
        if let Target::Part(name) = target {
            form = form.text(name.clone(), NUL);
        }
        form = form.part(
            "page",
            Part::bytes(vec![0u8; 8])
                .file_name("page.png")
                .mime_str("image/png")
                .unwrap(),
        );
        request = request.multipart(form);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

fn names(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

on_both_backends!(a_nul_byte_in_any_parameter_of_any_route_is_a_400_naming_it);
async fn a_nul_byte_in_any_parameter_of_any_route_is_a_400_naming_it(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let doc: Value = app.get_json("/api/openapi.json").await;
    let mut tried = Vec::new();
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut targets = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let p = resolve(&doc, p);
                let name = p["name"].as_str().unwrap().to_string();
                match p["in"].as_str().unwrap() {
                    "path" => targets.push(Target::Path(name)),
                    "query" => targets.push(Target::Query(name)),
                    _ => {}
                }
            }
            let content = &op["requestBody"]["content"];
            let mut fields = Vec::new();
            if let Some(schema) = content["application/json"].get("schema") {
                text_fields(&doc, schema, &[], &mut fields);
                targets.extend(fields.into_iter().map(Target::Json));
            } else if let Some(schema) = content["multipart/form-data"].get("schema") {
                for (name, prop) in resolve(&doc, schema)["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    let prop = resolve(&doc, prop);
                    let is_text = prop["type"] == "string" && prop["format"] != "binary"
                        || prop["items"]["type"] == "string" && prop["items"]["format"] != "binary";
                    if is_text {
                        targets.push(Target::Part(name.clone()));
                    }
                }
            }
            for target in targets {
                let (status, body) = send_with_nul(&app, &doc, path, method, op, &target).await;
                let field = target.field();
                tried.push(format!("{method} {path} {field}"));
                if status != 400 || !names(&body).contains(&field) {
                    wrong.push(format!("{method} {path} {field}: {status} {body}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not a 400 naming the field:\n{}",
        wrong.join("\n")
    );
    // The document's routes do take texts: the walk above found them.
    assert!(
        tried.len() > 60,
        "only {} parameters tried: {tried:?}",
        tried.len()
    );
    for expected in [
        "get /api/v1/queue prefecture",
        "get /api/v1/appointments/{id} id",
        "get /api/v1/reports/{id} id",
        "get /api/v1/postal/batches/{id} id",
        "get /api/v1/postal/envelopes/{id} id",
        "get /api/v1/postal/letters/{id} id",
        "post /api/v1/agent/queue/next prefecture",
        "post /api/v1/agent/dossiers/{reference}/withdrawal reason",
        "post /api/v1/agent/dossiers/{reference}/document-requests reason",
        "post /api/v1/appointments site_id",
        "post /api/v1/appointments person.family_name",
        "post /api/v1/postal/batches station_id",
        "post /api/v1/postal/forms prefill.family_name",
    ] {
        assert!(tried.iter().any(|t| t == expected), "{expected} not tried");
    }
    common::stop(app, env).await;
}

on_both_backends!(grpc_callers_get_invalid_argument_naming_the_field);
async fn grpc_callers_get_invalid_argument_naming_the_field(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let gateway = app.grpc_as(crate::common::EVERY_ROLE).await;
    let mut desk = DeskClient::new(gateway.clone());
    let mut ccc = CallCentreClient::new(gateway.clone());
    let mut postal = PostalClient::new(gateway);
    let check = |what: &str, result: Result<(), tonic::Status>, field: &str| {
        let status = result.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(
            common::refused_fields(&status).iter().any(|f| f == field),
            "{what}: {field} not named in {status:?}"
        );
    };
    check(
        "an appointment id",
        desk.get_appointment(pb::GetAppointmentRequest { id: NUL.into() })
            .await
            .map(drop),
        "id",
    );
    check(
        "a booking's site",
        desk.book(pb::BookRequest {
            site_id: format!("59{NUL}"),
            idempotency_key: "k".into(),
            ..Default::default()
        })
        .await
        .map(drop),
        "site_id",
    );
    check(
        "a name printed on letters, with a right-to-left override",
        desk.book(pb::BookRequest {
            site_id: "59-lille".into(),
            person: Some(pb::Person {
                family_name: "Ben\u{202E}ila".into(),
                ..Default::default()
            }),
            idempotency_key: "k".into(),
            ..Default::default()
        })
        .await
        .map(drop),
        "person.family_name",
    );
    check(
        "a name printed on letters, with a zero-width space",
        ccc.open_report(pb::OpenReportRequest {
            family_name: "Ben\u{200B}ali".into(),
            ..Default::default()
        })
        .await
        .map(drop),
        "family_name",
    );
    check(
        "a report id",
        ccc.get_report(pb::GetReportRequest { id: NUL.into() })
            .await
            .map(drop),
        "id",
    );
    check(
        "a batch id",
        postal
            .get_batch(pb::GetBatchRequest {
                batch_id: NUL.into(),
            })
            .await
            .map(drop),
        "batch_id",
    );
    check(
        "a keyed field of an envelope",
        postal
            .confirm_envelope(pb::ConfirmEnvelopeRequest {
                envelope_id: "e".into(),
                operator_id: "op".into(),
                fields: [("given_names".to_string(), format!("Nour{NUL}"))]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
            .await
            .map(drop),
        "fields.given_names",
    );
    check(
        "a text longer than its bound",
        postal
            .get_letter(pb::GetLetterRequest {
                letter_id: "x".repeat(5_000),
            })
            .await
            .map(drop),
        "letter_id",
    );
    // Instruction is not passed on by the gateway; it checks for itself too.
    let mut instruction =
        InstructionDeskClient::connect(format!("http://{}", app.mesh.instruction_addr))
            .await
            .unwrap();
    check(
        "a withdrawal's reason",
        instruction
            .withdraw(pb::WithdrawRequest {
                actor: "agent-1".into(),
                reference: "W26-AAAA-AAAA-A".into(),
                reason: format!("retrait{NUL}"),
            })
            .await
            .map(drop),
        "reason",
    );
    common::stop(app, env).await;
}

/// A prefecture site open on weekdays, 08:30-16:00.
fn site() -> pb::Site {
    pb::Site {
        id: "59-lille".into(),
        name: "Préfecture du Nord, Lille".into(),
        prefecture: "59".into(),
        kind: pb::SiteKind::Prefecture as i32,
        address: None,
        opening_hours: (1..=5)
            .map(|d| pb::OpeningHours {
                weekday: d,
                opens: "08:30".into(),
                closes: "16:00".into(),
            })
            .collect(),
        desks: 4,
        slot_minutes: 30,
        places_per_slot: 4,
        places_for_reports: 0,
    }
}

/// `hour`:00 (Paris) on the first working day after tomorrow.
fn slot(hour: u32) -> String {
    let mut day = guichet_dossier::calendar::paris_date(chrono::Utc::now()) + chrono::Days::new(2);
    while !guichet_dossier::calendar::is_working_day(day, "59") {
        day = day + chrono::Days::new(1);
    }
    guichet_dossier::desk::from_local(day.and_hms_opt(hour, 0, 0).unwrap())
        .unwrap()
        .to_rfc3339()
}

fn png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(40, 60, image::Luma([255u8]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

on_both_backends!(a_key_used_again_with_another_request_is_a_409);
async fn a_key_used_again_with_another_request_is_a_409(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let gateway = app.grpc_as(crate::common::EVERY_ROLE).await;
    DeskClient::new(gateway.clone())
        .upsert_site(site())
        .await
        .unwrap();

    // Appointments.
    let book = |key: &'static str, hour: u32, name: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/api/v1/appointments", app.base))
                .header("Idempotency-Key", key)
                .json(&json!({
                    "site_id": "59-lille",
                    "starts_at": slot(hour),
                    "person": {"family_name": name, "phone": "+33612345678"},
                }))
                .send()
                .await
                .unwrap()
        }
    };
    let first = book("booking-1", 9, "Benali").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = book("booking-1", 9, "Benali").await;
    assert_eq!(again.status(), 201, "the same booking again is answered");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "one appointment for one key");
    for (hour, name) in [(10, "Benali"), (9, "Martin")] {
        let other = book("booking-1", hour, name).await;
        assert_eq!(other.status(), 409, "another booking with the same key");
        let body: Value = other.json().await.unwrap();
        assert!(
            common::first_problem(&body).contains("idempotency key"),
            "{body}"
        );
    }
    let slots: Vec<Value> = app
        .http
        .get(format!(
            "{}/api/v1/sites/59-lille/slots?date={}",
            app.base,
            &slot(9)[..10]
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nine = slots
        .iter()
        .find(|s| s["starts_at"].as_str().unwrap() == slot(9))
        .unwrap();
    assert_eq!(nine["free"], 3, "one place taken, not two: {slots:?}");

    // Postal batches.
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let upload = |key: &'static str, postmark: String| {
        let app = &app;
        async move {
            let form = Form::new()
                .text("station_id", "station-59-1")
                .text("reception_date", today.to_string())
                .text("postmark_date", postmark)
                .text("idempotency_key", key)
                .part(
                    "page",
                    Part::bytes(png())
                        .file_name("scan-000.png")
                        .mime_str("image/png")
                        .unwrap(),
                );
            app.http
                .post(format!("{}/api/v1/postal/batches", app.base))
                .header(
                    "Authorization",
                    crate::common::client_bearer("guichet-scanner-1"),
                )
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    };
    let yesterday = (today - chrono::Days::new(1)).to_string();
    let first = upload("batch-1", yesterday.clone()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = upload("batch-1", yesterday).await;
    assert_eq!(again.status(), 200, "the same upload again");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["batch_id"], first["batch_id"]);
    let other = upload("batch-1", (today - chrono::Days::new(2)).to_string()).await;
    assert_eq!(other.status(), 409, "another upload with the same key");

    // Blocked-user reports, over gRPC.
    let mut ccc = CallCentreClient::new(gateway);
    let report = |what: &str| pb::OpenReportRequest {
        category: pb::ReportCategory::UploadFails as i32,
        what_was_tried: what.into(),
        family_name: "Benali".into(),
        given_names: "Samira".into(),
        contact: Some(pb::Contact {
            phone: "+33612345678".into(),
            address: Some(pb::PostalAddress {
                line1: "12 rue Solférino".into(),
                postal_code: "59000".into(),
                city: "Lille".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        agent_id: "ccc-agent-7".into(),
        call_id: "call-1".into(),
        idempotency_key: "report-1".into(),
        ..Default::default()
    };
    let first = ccc
        .open_report(report("the upload fails"))
        .await
        .unwrap()
        .into_inner();
    let again = ccc
        .open_report(report("the upload fails"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, first.id, "one report for one key");
    let other = ccc
        .open_report(report("the site is down"))
        .await
        .expect_err("another report with the same key");
    assert_eq!(other.code(), tonic::Code::AlreadyExists, "{other:?}");
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_method_is_counted_as_other() {
    let env = TestEnv::on(Backend::Embedded).await;
    let app = App::builder(&env.config()).only(&["gateway"]).start().await;
    for method in ["BREW", "X-MADE-UP-1", "X-MADE-UP-2"] {
        let r = app
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/healthz", app.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let series = "guichet_http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"}";
    assert_eq!(app.metric(series).await, 3.0);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains("BREW") && !text.contains("MADE-UP"),
        "{text}"
    );
    common::stop(app, env).await;
}

on_both_backends!(every_answer_is_hardened_against_sniffing_framing_and_caching);
async fn every_answer_is_hardened_against_sniffing_framing_and_caching(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;
    let reference = app.file_accepted(&example("renewal-employee.json")).await;
    let answers = [
        app.get("/healthz").await,
        app.dossier(&reference).await,
        app.get("/api/v1/no-such-route").await,
        app.post_json("/api/v1/dossiers", &json!({"procedure": 7}))
            .await,
    ];
    for r in answers {
        let h = r.headers();
        let at = format!("{} {}", r.url().path(), r.status());
        assert_eq!(h["x-content-type-options"], "nosniff", "{at}");
        assert_eq!(h["x-frame-options"], "DENY", "{at}");
        assert_eq!(
            h["content-security-policy"], "frame-ancestors 'none'",
            "{at}"
        );
        assert_eq!(h["cache-control"], "no-store", "{at}");
    }
    common::stop(app, env).await;
}

on_both_backends!(a_form_on_another_site_cannot_change_anything);
async fn a_form_on_another_site_cannot_change_anything(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;
    let from_elsewhere = |path: &str| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("origin", "https://evil.example")
    };
    // What a plain cross-site form can send: an empty body, or text.
    let cancel = from_elsewhere("/api/v1/appointments/any/cancellation")
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 403);
    let filing = from_elsewhere("/api/v1/dossiers")
        .header("content-type", "application/json")
        .json(&example("renewal-employee.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(filing.status(), 403);
    let body: Value = filing.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "Origin", "{body}");
    // The same from the gateway's own pages, or from software, goes through.
    let host = app.base.trim_start_matches("http://").to_string();
    let own = app
        .http
        .post(format!("{}/api/v1/dossiers", app.base))
        .header("origin", format!("http://{host}"))
        .json(&example("renewal-employee.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);
    app.file_accepted(&example("renewal-employee.json")).await;
    // Filed twice (same body, no key: two filings), never from elsewhere.
    let accepted = r#"guichet_filings_accepted_total{channel="web"}"#;
    assert_eq!(app.metric(accepted).await, 2.0);
    common::stop(app, env).await;
}

on_both_backends!(wrong_birth_dates_are_limited_per_reference_and_address);
async fn wrong_birth_dates_are_limited_per_reference_and_address(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.status_tries = 5;
    config.status_window_s = 900;
    let clock = std::sync::Arc::new(common::ShiftedClock::default());
    let app = App::builder(&config)
        .only(ONLINE)
        .clock(clock.clone())
        .start()
        .await;
    let filing = example("renewal-employee.json");
    let born = filing["applicant"]["birth_date"]
        .as_str()
        .unwrap()
        .to_string();
    let reference = app.file_accepted(&filing).await;
    // Recorded by instruction, asked without a birth date (not a try).
    common::eventually(Duration::from_secs(20), "the dossier recorded", || async {
        (app.dossier(&reference).await.status() == 200).then_some(())
    })
    .await;
    let path =
        |birth_date: &str| format!("/api/v1/dossiers/{reference}/status?birth_date={birth_date}");
    // A reference nobody has (or not recorded yet, as right after filing)
    // is not a try: asking again and again is never held back.
    let unknown =
        guichet_dossier::Reference::generate(guichet_dossier::Channel::Web, 2026, &mut rand::rng());
    for _ in 0..20 {
        let r = app
            .get(&format!(
                "/api/v1/dossiers/{unknown}/status?birth_date={born}"
            ))
            .await;
        assert_eq!(r.status(), 404);
    }
    let mut answers = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for day in 0..1000 {
        let wrong = (chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + chrono::Days::new(day))
            .to_string();
        let r = app.get(&path(&wrong)).await;
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        *answers.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(answers, [(404, 5), (429, 995)].into(), "{answers:?}");
    let wait: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "Retry-After: {wait}");
    // Held back, the right birth date is refused too: nothing to learn.
    assert_eq!(app.get(&path(&born)).await.status(), 429);
    // Once the window has passed, the right one works.
    clock.advance(chrono::Duration::seconds(901));
    let r = app.get(&path(&born)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reference"], reference.as_str());
    common::stop(app, env).await;
}

on_both_backends!(unknown_attestation_codes_are_limited_per_address);
async fn unknown_attestation_codes_are_limited_per_address(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.attestation_tries = 3;
    let app = App::builder(&config).only(ONLINE).start().await;
    let mut answers = Vec::new();
    for code in ["ZZZZZZZ1", "ZZZZZZZ2", "ZZZZZZZ3", "ZZZZZZZ4", "ZZZZZZZ5"] {
        let r = app.get(&format!("/api/v1/attestations/{code}")).await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        answers.push(r.status().as_u16());
    }
    assert_eq!(answers, [404, 404, 404, 429, 429]);
    common::stop(app, env).await;
}

/// Sends `head` and waits for the server to close; the time it took.
async fn closed_after(app: &App, head: &[u8]) -> Duration {
    let mut stream = tokio::net::TcpStream::connect(app.mesh.http_addr)
        .await
        .unwrap();
    stream.write_all(head).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // Bounded: a server that never closes fails here, not by hanging.
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "still open after 30 s: {head:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_not_finished_in_time_closes_the_connection() {
    let env = TestEnv::on(Backend::Embedded).await;
    let app = App::builder(&env.config()).only(&["gateway"]).start().await;
    let limit = guichet_gateway::server::HEADER_READ_TIMEOUT;
    let heads: [&[u8]; 3] = [
        b"GET /healthz HTTP/1.1\r\nHost: guichet\r\nX-Slow: ",
        b"",
        // The start of an HTTP/2 preface, never finished.
        b"PRI * HTTP/2.0\r\n",
    ];
    // All three at once: each is closed on its own clock.
    let took = futures_util::future::join_all(heads.iter().map(|h| closed_after(&app, h))).await;
    for (head, took) in heads.iter().zip(took) {
        assert!(
            took < limit + Duration::from_secs(3),
            "{head:?} held the connection {took:?}"
        );
    }
    // A request whose head comes whole is answered as usual.
    let mut stream = tokio::net::TcpStream::connect(app.mesh.http_addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: guichet\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    common::stop(app, env).await;
}

/// Opens an HTTP/2 connection to `addr` (the preface and empty settings),
/// then falls silent: reads what comes and answers nothing, pings
/// included. The types of the frames the server sent before it closed.
async fn frames_until_let_go(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut read = Vec::new();
    // A bound on a hang, well past the pings' 15 s: not a measure.
    let closed = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut read)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "{addr}: a silent client's connection still open after 60 s"
    );
    let mut types = Vec::new();
    let mut rest = read.as_slice();
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + length).min(rest.len())..];
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A gRPC client that opens a connection and falls silent (call-centre
/// software whose host went without a reset) is pinged, then let go, by
/// the gateway and by a service. Unpinged, an idle connection is never
/// written to, so TCP never finds the peer gone and it stays for good.
async fn an_http2_client_that_falls_silent_is_pinged_then_let_go() {
    const PING: u8 = 6;
    let env = TestEnv::on(Backend::Embedded).await;
    let app = App::builder(&env.config())
        .only(&["gateway", "notifier"])
        .start()
        .await;
    let (gateway, notifier) = futures_util::future::join(
        frames_until_let_go(app.mesh.http_addr),
        frames_until_let_go(app.mesh.notifier_addr),
    )
    .await;
    for (server, frames) in [("gateway", gateway), ("notifier", notifier)] {
        assert!(
            frames.contains(&PING),
            "{server} closed without a ping first: frames {frames:?}"
        );
    }
    common::stop(app, env).await;
}

/// Reads one answer of a kept-alive connection: its head, and the body its
/// `content-length` gives.
async fn one_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("the connection still open");
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_idle_longer_than_a_head_may_take_is_still_answered() {
    let env = TestEnv::on(Backend::Embedded).await;
    let app = App::builder(&env.config()).only(&["gateway"]).start().await;
    let limit = guichet_gateway::server::HEADER_READ_TIMEOUT;
    let request = b"GET /healthz HTTP/1.1\r\nHost: guichet\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(app.mesh.http_addr)
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    assert!(one_answer(&mut stream).await.starts_with("HTTP/1.1 200"));

    // Idle for longer than a head may take, as a proxy's or a client's kept
    // connection is between two requests: the next request is answered.
    tokio::time::sleep(limit + Duration::from_secs(2)).await;
    stream.write_all(request).await.unwrap();
    assert!(one_answer(&mut stream).await.starts_with("HTTP/1.1 200"));

    // A head begun on it and never finished still closes it in time.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: guichet\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "still open after 30 s"
    );
    assert!(
        started.elapsed() < limit + Duration::from_secs(3),
        "an unfinished head held the connection {:?}",
        started.elapsed()
    );
    common::stop(app, env).await;
}

/// The gateway's bound follows its answers: with a latency target no filing
/// can meet, it takes fewer requests at once after each tenth of a second
/// of slow answers, and shows the bound in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_answers_are_slow_takes_fewer_requests_at_once() {
    let env = TestEnv::on(Backend::Embedded).await;
    let mut config = env.config();
    config.latency_target_ms = 1;
    let app = App::builder(&config).only(ONLINE).start().await;
    let bound = || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("guichet_in_flight_limit{service=\"gateway\"} "))
            .unwrap_or_else(|| panic!("no gateway bound in /metrics:\n{text}"))
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(bound().await, 64, "where it starts");
    let filings = common::example_filings();
    // Two windows' worth of answers, each window over a tenth of a second.
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(110)).await;
        for (name, body) in filings.iter().cycle().take(10) {
            let r = app.file(body, Some(&format!("slow-{round}-{name}"))).await;
            assert!(r.status().is_success(), "{name}: {}", r.status());
        }
    }
    let after = bound().await;
    assert!(after <= 51, "64, less a fifth at least once: {after}");
    assert!(after >= 8, "never under the floor: {after}");
    app.stop().await;
    env.cleanup().await;
}

/// A request to `path` whose body is sent in two parts: the first ten
/// bytes now, the rest when the returned sender is given them. With
/// `declared`, the body's length is declared up front; without, it is sent
/// chunked, of a length unknown until it ends.
fn sent_slowly(
    app: &App,
    path: &str,
    body: &[u8],
    declared: bool,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::StatusCode>,
) {
    let (send, receive) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    send.try_send(Ok(body[..10].to_vec())).unwrap();
    let mut request = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json");
    if declared {
        request = request.header("content-length", body.len().to_string());
    }
    let stream = futures_util::stream::unfold(receive, |mut r| async move {
        r.recv().await.map(|chunk| (chunk, r))
    });
    let slow = tokio::spawn(async move {
        request
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap()
            .status()
    });
    (send, slow)
}

/// A request sent slowly (as `sent_slowly`) that holds the only place of
/// its kind: `probe` is refused 503 meanwhile, and that refusal is given
/// back. The slow request may itself be refused, when a probe takes the
/// place first: it is then sent again.
async fn holding_the_place<P, F>(
    app: &App,
    body: &[u8],
    declared: bool,
    probe: P,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::StatusCode>,
    reqwest::Response,
)
where
    P: Fn() -> F,
    F: std::future::Future<Output = reqwest::Response>,
{
    for _ in 0..20 {
        let (send, slow) = sent_slowly(app, "/api/v1/dossiers", body, declared);
        // Its head first, most times; a probe that wins the race is retried.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = common::eventually(Duration::from_secs(20), "the place taken", || async {
            if slow.is_finished() {
                return Some(None);
            }
            let r = probe().await;
            (r.status() == 503).then_some(Some(r))
        })
        .await;
        if let Some(refused) = refused {
            return (send, slow, refused);
        }
        assert_eq!(slow.await.unwrap(), 503, "refused, not served, while taken");
    }
    panic!("the slow request never held the place");
}

/// A gateway at capacity refuses at once, with `Retry-After`, instead of
/// queueing: one filing whose body is still coming holds the only place;
/// health still answers; once it completes, requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_at_capacity_refuses_at_once_and_recovers() {
    let env = TestEnv::on(Backend::Embedded).await;
    let mut config = env.config();
    config.max_in_flight = 1;
    let app = App::builder(&config).only(ONLINE).start().await;
    let body = serde_json::to_vec(&example("renewal-employee.json")).unwrap();
    // Of declared length under 64 KiB: a filing, not an upload.
    let (send, slow, refused) =
        holding_the_place(&app, &body, true, || app.get("/api/openapi.json")).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem.to_string().contains("capacity"), "{problem}");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "health is never refused"
    );
    assert_eq!(app.get("/metrics").await.status(), 200);
    // The filing in flight completes, and the place is free again.
    send.send(Ok(body[10..].to_vec())).await.unwrap();
    drop(send);
    assert_eq!(slow.await.unwrap(), 201);
    assert_eq!(app.get("/api/openapi.json").await.status(), 200);
    app.stop().await;
    env.cleanup().await;
}

/// Uploads, whose time is the person's line, have their own places: while
/// slow uploads hold all of them, filings and looks are served, and one
/// upload more is refused at once with `Retry-After`; once an upload ends,
/// its place is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_hold_their_own_places_not_the_filings() {
    let env = TestEnv::on(Backend::Embedded).await;
    let mut config = env.config();
    config.max_in_flight = 1;
    config.max_uploads_in_flight = 1;
    let app = App::builder(&config).only(ONLINE).start().await;
    let body = serde_json::to_vec(&example("renewal-employee.json")).unwrap();
    let shed = || app.metric("guichet_requests_shed_total{service=\"gateway\"}");
    // A body of unknown length is an upload; so is the probe, whole but
    // of unknown length too.
    let probe = || {
        app.http
            .post(format!("{}/api/v1/dossiers", app.base))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter([
                Ok::<_, std::io::Error>(b"{}".to_vec()),
            ])))
            .send()
    };
    let (send, slow, refused) =
        holding_the_place(&app, &body, false, || async { probe().await.unwrap() }).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem.to_string().contains("capacity"), "{problem}");
    let shed_before = shed().await;
    assert!(shed_before >= 1.0, "the refusal is counted: {shed_before}");

    // The machine's only place is free: a filing and a look are served,
    // one after the other, while the upload is still coming.
    let reference = app
        .file_accepted(&example("change-of-status-student-to-employee.json"))
        .await;
    assert_eq!(app.get("/api/openapi.json").await.status(), 200);
    assert!(!slow.is_finished(), "the upload is still coming");
    assert_eq!(shed().await, shed_before, "nothing refused meanwhile");

    // The upload completes; its place is free for the next one.
    send.send(Ok(body[10..].to_vec())).await.unwrap();
    drop(send);
    assert_eq!(slow.await.unwrap(), 201);
    let other = serde_json::to_vec(&example("first-application-student.json")).unwrap();
    let (send, next) = sent_slowly(&app, "/api/v1/dossiers", &other, false);
    send.send(Ok(other[10..].to_vec())).await.unwrap();
    drop(send);
    assert_eq!(next.await.unwrap(), 201, "the place came back");
    assert!(
        reference.starts_with('W'),
        "an online reference: {reference}"
    );
    app.stop().await;
    env.cleanup().await;
}
