//! The foundation, end to end against real RabbitMQ and PostgreSQL: a web
//! filing goes gateway -> intake -> outbox -> RabbitMQ -> instruction.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    App, Backend, ONLINE, Services, TestEnv, count, eventually, example, example_filings,
    proxy::Proxy,
};
use futures_util::StreamExt;
use guichet_kit::bus::{
    AmqpBus, Bus, DEAD_LETTER_QUEUE, DEATH_REASON_HEADER, DOSSIERS_EXCHANGE, INSTRUCTION_QUEUE,
    OutgoingMessage, SharedBus,
};
use guichet_kit::metrics::{ExchangeLabels, QueueLabels};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

async fn instruction_has(app: &App, reference: &str) -> Option<Value> {
    let r = app.dossier(reference).await;
    if r.status() == 200 {
        r.json().await.ok()
    } else {
        None
    }
}

on_both_backends!(a_filing_reaches_instruction_with_its_trace);
async fn a_filing_reaches_instruction_with_its_trace(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;

    let response = app
        .file(&example("renewal-employee.json"), Some("trace-1"))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let receipt: Value = response.json().await.unwrap();
    let reference = receipt["reference"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/dossiers/{reference}"));
    assert!(reference.starts_with("W"), "{reference}");
    assert_eq!(receipt["channel"], "web");
    assert_eq!(receipt["documents"].as_array().unwrap().len(), 5);
    let trace_id = receipt["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");

    let view = eventually(WAIT, "the dossier in instruction", || {
        instruction_has(&app, &reference)
    })
    .await;
    assert_eq!(view["reference"], reference.as_str());
    assert_eq!(view["channel"], "web");
    assert_eq!(view["procedure"], "renewal");
    assert_eq!(view["motif"], "employee");
    assert_eq!(view["prefecture"], "59");
    assert_eq!(view["state"], "complete");
    assert_eq!(view["legal_filing_date"], receipt["legal_filing_date"]);
    assert_eq!(view["title_expires_on"], "2027-01-10");
    let events = view["events"].as_array().unwrap();
    // Filed, then checked: the example carries every document a renewal for
    // an employee needs.
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["kind"], "filed");
    assert_eq!(events[1]["kind"], "found_complete");
    assert_eq!(events[0]["actor"], "channel:web");
    // One trace from the gateway to the instruction database.
    assert_eq!(events[0]["trace_id"], trace_id.as_str());
    let intake = env.db("intake_web").await;
    let sql = format!(
        "SELECT count(*) FROM filings WHERE reference = '{reference}' AND trace_id = '{trace_id}'"
    );
    assert_eq!(
        count(&intake, &sql).await,
        1,
        "intake recorded the same trace"
    );

    // The queue lists it, to the prefecture's instructors by reference.
    let queue: Value = app
        .as_agent(
            reqwest::Method::GET,
            "instructor-59",
            "/api/v1/queue?prefecture=59",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue[0]["reference"], reference.as_str());
    assert_eq!(queue[0]["position"], 1);

    common::stop(app, env).await;
}

on_both_backends!(one_idempotency_key_is_one_dossier_and_a_different_body_is_a_conflict);
async fn one_idempotency_key_is_one_dossier_and_a_different_body_is_a_conflict(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;
    let body = example("first-application-student.json");

    let first = app.file(&body, Some("same-key")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = app.file(&body, Some("same-key")).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["reference"], second["reference"]);
    assert_eq!(first["verification_code"], second["verification_code"]);

    let mut other = body.clone();
    other["motif"] = "visitor".into();
    let conflict = app.file(&other, Some("same-key")).await;
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.unwrap();
    assert!(
        common::first_problem(&problem).contains("idempotency key"),
        "{problem}"
    );

    let reference = first["reference"].as_str().unwrap().to_string();
    eventually(WAIT, "the dossier in instruction", || {
        instruction_has(&app, &reference)
    })
    .await;
    let instruction = env.db("instruction").await;
    let intake = env.db("intake_web").await;
    // Before counting, nothing left on its way: the outbox sent every row,
    // and instruction consumed every message published on the dossiers
    // exchange, so a duplicate wrongly published would be in by now.
    eventually(WAIT, "every published dossier consumed", || async {
        let unsent = count(&intake, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await;
        let published = app
            .metrics
            .messages_published
            .get_or_create(&ExchangeLabels {
                exchange: DOSSIERS_EXCHANGE.into(),
            })
            .get();
        let consumed = app
            .metrics
            .messages_consumed
            .get_or_create(&QueueLabels {
                queue: INSTRUCTION_QUEUE,
            })
            .get();
        (unsent == 0 && published > 0 && consumed >= published).then_some(())
    })
    .await;
    assert_eq!(count(&intake, "SELECT count(*) FROM filings").await, 1);
    assert_eq!(count(&intake, "SELECT count(*) FROM outbox").await, 1);
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM dossiers").await,
        1
    );
    assert_eq!(
        count(
            &instruction,
            "SELECT count(*) FROM dossier_events WHERE kind = 'filed'"
        )
        .await,
        1
    );

    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filings_are_accepted_while_the_broker_is_unreachable_and_delivered_after() {
    let env = TestEnv::new().await;
    // Intake reaches RabbitMQ through a proxy the test can cut; instruction directly.
    let proxy = Proxy::to_broker().await;
    let intake_bus: SharedBus =
        std::sync::Arc::new(AmqpBus::new(&proxy.amqp_url(&env), "intake-web", 3));
    let direct_bus: SharedBus = std::sync::Arc::new(env.amqp_bus());
    let config = env.config();
    let services = Services::start((&config, intake_bus), (&config, direct_bus), &config).await;
    let (base, http) = (&services.base, &services.http);

    proxy.cut().await;
    let mut references = Vec::new();
    for (i, (_, body)) in example_filings().into_iter().enumerate() {
        let r = http
            .post(format!("{base}/api/v1/dossiers"))
            .header("Idempotency-Key", format!("outage-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "filing {i} refused while the broker is away"
        );
        let receipt: Value = r.json().await.unwrap();
        references.push(receipt["reference"].as_str().unwrap().to_string());
    }
    let intake_db = env.db("intake_web").await;
    let instruction_db = env.db("instruction").await;
    // The relay has tried every row, and failed: the broker is away.
    let n = references.len() as i64;
    eventually(
        Duration::from_secs(60),
        "the relay trying every row",
        || {
            let db = intake_db.clone();
            async move {
                (count(&db, "SELECT count(*) FROM outbox WHERE attempts > 0").await == n)
                    .then_some(())
            }
        },
    )
    .await;
    let unsent = count(
        &intake_db,
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
    )
    .await;
    assert_eq!(
        unsent,
        references.len() as i64,
        "every filing waits in the outbox"
    );
    assert_eq!(
        count(&instruction_db, "SELECT count(*) FROM dossiers").await,
        0
    );

    proxy.restore();
    eventually(WAIT, "every dossier in instruction", || {
        let db = instruction_db.clone();
        async move { (count(&db, "SELECT count(*) FROM dossiers").await == n).then_some(()) }
    })
    .await;
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT reference FROM dossiers ORDER BY reference")
            .fetch_all(instruction_db.postgres().unwrap())
            .await
            .unwrap();
    references.sort();
    assert_eq!(recorded, references, "nothing lost, nothing doubled");
    // The relay marks rows sent once confirmed, which may land just after delivery.
    eventually(WAIT, "the outbox drained", || {
        let db = intake_db.clone();
        async move {
            (count(&db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0)
                .then_some(())
        }
    })
    .await;

    services.stop().await;
    env.cleanup().await;
}

on_both_backends!(a_malformed_message_is_dead_lettered_and_consuming_goes_on);
async fn a_malformed_message_is_dead_lettered_and_consuming_goes_on(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;
    let bus = app.mesh.bus.clone();
    let garbage = OutgoingMessage {
        message_id: "not-a-dossier-1".into(),
        exchange: DOSSIERS_EXCHANGE.into(),
        routing_key: "dossier.submitted.web".into(),
        headers: BTreeMap::new(),
        body: vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad],
    };
    let published = bus.publish(&[garbage]).await;
    assert!(published[0].is_ok(), "{:?}", published[0]);

    eventually(WAIT, "the message in the dead-letter queue", || {
        let bus = &bus;
        async move { (bus.queue_depth(DEAD_LETTER_QUEUE).await.ok()? == 1).then_some(()) }
    })
    .await;
    let mut dead = bus
        .consume(DEAD_LETTER_QUEUE, "test-reader", 1)
        .await
        .unwrap();
    let letter = tokio::time::timeout(WAIT, dead.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(letter.message_id.as_deref(), Some("not-a-dossier-1"));
    assert!(
        letter.headers[DEATH_REASON_HEADER].starts_with("undecodable"),
        "{:?}",
        letter.headers
    );
    assert_eq!(letter.body, vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad]);

    // The consumer is still there: a real filing goes through.
    let reference = app.file_accepted(&example("renewal-employee.json")).await;
    eventually(WAIT, "a later dossier in instruction", || {
        instruction_has(&app, &reference)
    })
    .await;
    assert_eq!(bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 0);

    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_dead_letters_a_message_past_the_delivery_limit() {
    // No instruction service here: a consumer that keeps failing (a crash
    // loop) gives the message back each time, and the quorum queue's delivery
    // limit moves it to the dead-letter queue instead of looping forever.
    let env = TestEnv::new().await;
    let bus = env.amqp_bus();
    let limit = 3;
    let message = OutgoingMessage {
        message_id: "crash-loop-1".into(),
        exchange: DOSSIERS_EXCHANGE.into(),
        routing_key: "dossier.submitted.postal".into(),
        headers: BTreeMap::new(),
        body: b"whatever makes the consumer fall over".to_vec(),
    };
    assert!(bus.publish(&[message]).await[0].is_ok());
    let stream = bus
        .consume(INSTRUCTION_QUEUE, "failing-consumer", 1)
        .await
        .unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut deliveries = 0;
    while bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 0 {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        let Ok(Some(Ok(d))) = next else { continue };
        deliveries += 1;
        assert!(
            deliveries <= limit + 1,
            "delivered {deliveries} times, past the limit"
        );
        d.retry_later().await.unwrap();
    }
    assert!(
        deliveries >= limit,
        "dead-lettered after only {deliveries} deliveries"
    );
    assert_eq!(bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 0);
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(every_example_is_accepted_and_a_broken_copy_names_its_field);
async fn every_example_is_accepted_and_a_broken_copy_names_its_field(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;
    let examples = example_filings();
    assert!(examples.len() >= 5, "one example per procedure at least");
    let mut procedures = std::collections::BTreeSet::new();
    for (name, body) in &examples {
        let r = app.file(body, Some(&format!("example-{name}"))).await;
        assert_eq!(
            r.status(),
            201,
            "{name}: {}",
            r.text().await.unwrap_or_default()
        );
        procedures.insert(body["procedure"].as_str().unwrap().to_string());
    }
    for p in guichet_dossier::Procedure::ALL {
        assert!(procedures.contains(p.as_str()), "no example for {p}");
    }

    let intake = env.db("intake_web").await;
    let before = count(&intake, "SELECT count(*) FROM outbox").await;
    type Breaker = fn(&mut Value);
    let broken: Vec<(&str, Breaker, &str)> = vec![
        (
            "renewal-employee.json",
            |b| b["applicant"]["birth_date"] = "31/12/1990".into(),
            "applicant.birth_date",
        ),
        (
            "renewal-employee.json",
            |b| b["current_title"] = Value::Null,
            "current_title",
        ),
        (
            "first-application-student.json",
            |b| b["contact"]["address"]["postal_code"] = "ABCDE".into(),
            "contact.address.postal_code",
        ),
        (
            "duplicate-resident-card.json",
            |b| b["documents"][1]["sha256"] = "xyz".into(),
            "documents[1].sha256",
        ),
        (
            "regularisation-private-family-life.json",
            |b| b["motif"] = "tourism".into(),
            "motif",
        ),
        (
            "change-of-status-student-to-employee.json",
            |b| b["applicant"]["nationality"] = 250.into(),
            "applicant.nationality",
        ),
    ];
    for (name, breaker, field) in broken {
        let mut body = example(name);
        breaker(&mut body);
        let r = app.file(&body, None).await;
        assert_eq!(r.status(), 400, "{name} broken at {field}");
        let problem: Value = r.json().await.unwrap();
        assert!(
            common::error_fields(&problem).contains(&field.to_string()),
            "{name}: expected {field} in {problem}"
        );
    }
    assert_eq!(
        count(&intake, "SELECT count(*) FROM outbox").await,
        before,
        "nothing published"
    );
    assert_eq!(
        count(&intake, "SELECT count(*) FROM filings").await,
        examples.len() as i64
    );

    common::stop(app, env).await;
}

on_both_backends!(bad_requests_get_clear_errors_never_a_500);
async fn bad_requests_get_clear_errors_never_a_500(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let url = format!("{}/api/v1/dossiers", app.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (app.http.post(&url).body("{}"), 415, "content-type"),
        (
            app.http
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "body",
        ),
        (
            app.http
                .post(&url)
                .header("content-type", "application/json")
                .body("[]"),
            400,
            "body",
        ),
        (
            app.http
                .post(&url)
                .json(&serde_json::json!({"procedure": "renewal", "surprise": 1})),
            400,
            "surprise",
        ),
        (
            app.http
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; 300 * 1024]),
            413,
            "body",
        ),
        (
            app.http
                .post(&url)
                .header("Idempotency-Key", "a")
                .json(&serde_json::json!({"idempotency_key": "b"})),
            400,
            "idempotency_key",
        ),
        (
            app.http.get(format!("{url}/W26-0000-0000-1")),
            400,
            "reference",
        ),
        (app.http.get(format!("{url}/nonsense")), 400, "reference"),
        (
            app.http.get(format!("{}/api/v1/queue?limit=0", app.base)),
            400,
            "limit",
        ),
    ];
    for (i, (request, status, field)) in cases.into_iter().enumerate() {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "case {i}");
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("case {i}: not JSON: {e}"));
        assert!(
            common::error_fields(&body).iter().any(|f| f == field),
            "case {i}: expected field {field} in {body}"
        );
    }
    // A well-formed reference that does not exist is a 404, with the JSON body.
    let missing =
        guichet_dossier::Reference::generate(guichet_dossier::Channel::Web, 2026, &mut rand_rng());
    let r = app.dossier(missing.as_str()).await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["errors"][0]["problem"].is_string());
    let r = app.get("/nowhere").await;
    assert_eq!(r.status(), 404);
    // Health, readiness and the API description.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let doc: Value = app.get_json("/api/openapi.json").await;
    assert!(doc["paths"]["/api/v1/dossiers"]["post"].is_object());

    common::stop(app, env).await;
}

fn rand_rng() -> impl rand::Rng {
    rand::rng()
}
