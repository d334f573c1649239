//! The instruction service end to end, on both backends: one equal-rights
//! queue, take-next under concurrency, the same request filed on two
//! channels, attestations issued without asking, and where a file stands.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Datelike, Days, NaiveDate, Utc};
use common::{App, Backend, ONLINE, TestEnv, count, eventually, example};
use futures_util::StreamExt;
use guichet_kit::bus::NOTIFIER_QUEUE;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn today() -> NaiveDate {
    guichet_dossier::calendar::paris_date(Utc::now())
}

/// A complete renewal for an employee, for `name`, whose title expires on `expires`.
fn renewal(name: &str, expires: NaiveDate) -> Value {
    let mut body = example("renewal-employee.json");
    body["applicant"]["family_name"] = name.into();
    body["current_title"]["expires_on"] = expires.to_string().into();
    body
}

async fn start(backend: Backend) -> (TestEnv, App) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.sweep_interval_s = 1;
    let app = App::builder(&config).only(ONLINE).start().await;
    (env, app)
}

/// As `start`, on PostgreSQL, on a clock the test moves forward.
async fn start_on_clock() -> (TestEnv, App, std::sync::Arc<common::ShiftedClock>) {
    let env = TestEnv::on(Backend::Servers).await;
    let mut config = env.config();
    config.sweep_interval_s = 1;
    let clock = std::sync::Arc::new(common::ShiftedClock::default());
    let app = App::builder(&config)
        .only(ONLINE)
        .clock(clock.clone())
        .start()
        .await;
    (env, app, clock)
}

/// A filing without its employment contract: incomplete for an employee.
fn without_contract(mut body: Value) -> Value {
    body["documents"]
        .as_array_mut()
        .unwrap()
        .retain(|d| d["kind"] != "employment_contract");
    body
}

/// `agent` takes the case over (an incomplete file is not handed out by
/// the queue), as an agent's act on it first requires.
async fn take_over(app: &App, agent: &str, reference: &str) {
    let taken = app
        .agent_post(
            agent,
            &format!("/api/v1/agent/dossiers/{reference}/takeover"),
            json!({"reason": "instructing it"}),
        )
        .await;
    assert_eq!(taken.status(), 200, "{:?}", taken.text().await);
}

async fn file(app: &App, body: &Value) -> String {
    let reference = app.file_accepted(body).await;
    eventually(WAIT, "the dossier in instruction", || async {
        (app.dossier(&reference).await.status() == 200).then_some(())
    })
    .await;
    reference
}

/// The queue as the instructor of 59 sees it (with references).
async fn queue(app: &App, query: &str) -> Vec<Value> {
    let r = app
        .as_agent(
            reqwest::Method::GET,
            "instructor-59",
            &format!("/api/v1/queue?{query}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

on_both_backends!(a_letter_postmarked_first_sorts_ahead_of_a_web_filing_scanned_before_it);
async fn a_letter_postmarked_first_sorts_ahead_of_a_web_filing_scanned_before_it(backend: Backend) {
    let (env, app) = start(backend).await;
    let expires = today() + Days::new(45); // same urgency class for both
    let web = file(&app, &renewal("Martin", expires)).await;
    let postal = app
        .file_by_post(&renewal("Nguyen", expires), today() - Days::new(6), today())
        .await;

    let entries = queue(&app, "prefecture=59").await;
    let order: Vec<&str> = entries
        .iter()
        .map(|e| e["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![postal.as_str(), web.as_str()],
        "by legal filing date, not by arrival"
    );
    assert_eq!(entries[0]["channel"], "postal");
    assert_eq!(
        entries[0]["legal_filing_date"],
        (today() - Days::new(6)).to_string()
    );
    assert_eq!(entries[0]["urgency"], entries[1]["urgency"]);
    // Filters.
    assert_eq!(queue(&app, "prefecture=59&channel=web").await.len(), 1);
    assert_eq!(
        queue(&app, "prefecture=59&procedure=first_application")
            .await
            .len(),
        0
    );
    let before = (expires + Days::new(1)).to_string();
    assert_eq!(
        queue(&app, &format!("prefecture=59&cover_ends_before={before}"))
            .await
            .len(),
        2
    );
    let r = app.get("/api/v1/queue?channel=fax").await;
    assert_eq!(r.status(), 400);
    common::stop(app, env).await;
}

on_both_backends!(eight_agents_taking_next_at_once_get_eight_different_dossiers);
async fn eight_agents_taking_next_at_once_get_eight_different_dossiers(backend: Backend) {
    let (env, app) = start(backend).await;
    let expires = today() + Days::new(200);
    let mut filed = BTreeSet::new();
    for i in 0..10 {
        filed.insert(file(&app, &renewal(&format!("Person{i}"), expires)).await);
    }
    let taken: Vec<(u16, Value)> = futures_util::stream::iter(0..8)
        .map(|i| {
            let app = &app;
            async move {
                let r = app
                    .agent_post(
                        &format!("agent-{i}"),
                        "/api/v1/agent/queue/next",
                        json!({"prefecture": "59"}),
                    )
                    .await;
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let references: BTreeSet<String> = taken
        .iter()
        .map(|(status, case)| {
            assert_eq!(*status, 200, "{case}");
            assert_eq!(
                case["dossier"]["state"], "under_review",
                "a complete file taken is under review"
            );
            case["dossier"]["reference"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(references.len(), 8, "eight different dossiers");
    assert!(references.is_subset(&filed));
    let instruction = env.db("instruction").await;
    assert_eq!(
        count(
            &instruction,
            "SELECT count(DISTINCT taken_by) FROM dossiers WHERE taken_by IS NOT NULL"
        )
        .await,
        8
    );
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM agent_reads").await,
        8,
        "each take is an audited read"
    );
    // Two are left; a ninth and tenth agent get them; then the queue is empty.
    for agent in ["agent-8", "agent-9"] {
        let r = app
            .agent_post(
                agent,
                "/api/v1/agent/queue/next",
                json!({"prefecture": "59"}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = app
        .agent_post(
            "agent-10",
            "/api/v1/agent/queue/next",
            json!({"prefecture": "59"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .agent_post(
            "agent-10",
            "/api/v1/agent/queue/next",
            json!({"prefecture": "75"}),
        )
        .await;
    assert_eq!(r.status(), 404, "other prefectures' files are not theirs");
    common::stop(app, env).await;
}

on_both_backends!(the_same_renewal_online_and_by_post_has_one_place_at_the_earlier_date);
async fn the_same_renewal_online_and_by_post_has_one_place_at_the_earlier_date(backend: Backend) {
    let (env, app) = start(backend).await;
    let expires = today() + Days::new(90);
    let body = renewal("Benali", expires);
    let online = file(&app, &body).await;
    // The site failed them (they think): they post the same renewal too,
    // postmarked before they managed online.
    let mut by_post = body.clone();
    by_post["applicant"]["family_name"] = "BÉNALI".into();
    let postmarked = today() - Days::new(4);
    let postal = app.file_by_post(&by_post, postmarked, today()).await;

    let entries = queue(&app, "prefecture=59").await;
    assert_eq!(entries.len(), 1, "one place in the queue: {entries:?}");
    assert_eq!(entries[0]["reference"], online.as_str());
    assert_eq!(
        entries[0]["queue_date"],
        postmarked.to_string(),
        "the earlier filing date holds"
    );
    assert_eq!(entries[0]["linked"], json!([postal]));

    // An agent takes the first filing, confirms the second is the same
    // request (acting on a linked filing is its first's holder's), decides.
    let taken = app
        .agent_post(
            "agent-1",
            "/api/v1/agent/queue/next",
            json!({"prefecture": "59"}),
        )
        .await;
    assert_eq!(
        taken.json::<Value>().await.unwrap()["dossier"]["reference"],
        online.as_str()
    );
    let r = app
        .agent_post(
            "agent-1",
            &format!("/api/v1/agent/dossiers/{postal}/link"),
            json!({"same_request": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["link_confirmed"], true);
    let decided = app
        .agent_post(
            "agent-1",
            &format!("/api/v1/agent/dossiers/{online}/decision"),
            json!({"favourable": true}),
        )
        .await;
    assert_eq!(decided.status(), 200);
    let case: Value = decided.json().await.unwrap();
    assert_eq!(case["dossier"]["state"], "favourable");
    assert_eq!(case["cover"]["basis"], "favourable_decision");
    assert_eq!(case["cover"]["open_ended"], true);
    // The answer reaches the person on both channels.
    let status = |r: String| {
        let app = &app;
        async move {
            app.get(&format!(
                "/api/v1/dossiers/{r}/status?birth_date=1991-03-02"
            ))
            .await
            .json::<Value>()
            .await
            .unwrap()
        }
    };
    assert_eq!(status(postal.clone()).await["state"], "favourable");
    let mut stream = app
        .mesh
        .bus
        .consume(NOTIFIER_QUEUE, "test-notifier", 100)
        .await
        .unwrap();
    let mut keys = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(keys.contains("case.decided_favourable.web")
        && keys.contains("case.decided_favourable.postal"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the decision not announced on both channels: {keys:?}"
        );
        if let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            keys.insert(d.routing_key.clone());
            d.ack().await.unwrap();
        }
    }
    // Drain what else is there.
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(300), stream.next()).await
    {
        keys.insert(d.routing_key.clone());
        d.ack().await.unwrap();
    }
    assert!(keys.contains("case.attestation_issued.web"), "{keys:?}");
    common::stop(app, env).await;
}

on_both_backends!(a_complete_renewal_near_expiry_is_covered_without_asking);
async fn a_complete_renewal_near_expiry_is_covered_without_asking(backend: Backend) {
    let (env, app) = start(backend).await;
    let expires = today() + Days::new(10);
    let reference = file(&app, &renewal("Okafor", expires)).await;
    let url = format!(
        "{}/api/v1/dossiers/{reference}/status?birth_date=1991-03-02",
        app.base
    );
    let status: Value = eventually(WAIT, "an attestation issued by the sweep", || async {
        let s: Value = app.http.get(&url).send().await.ok()?.json().await.ok()?;
        (s["attestations"].as_array()?.len() == 1).then_some(s)
    })
    .await;
    let api = &status["attestations"][0];
    assert_eq!(api["kind"], "prolongation");
    assert_eq!(api["valid_from"], today().to_string());
    let until = guichet_dossier::rights::add_months(expires, 3);
    assert_eq!(
        api["valid_until"],
        until.to_string(),
        "joins the title with no gap"
    );
    assert_eq!(api["verification_code"].as_str().unwrap().len(), 8);
    assert_eq!(status["cover"]["basis"], "prolongation");
    assert_eq!(status["cover"]["until"], until.to_string());
    assert_eq!(status["state"], "complete");
    assert_eq!(status["files_ahead"], 0);
    assert!(
        status["estimated_days_to_decision"].is_null(),
        "no estimate from no decisions"
    );
    // Whom the file names takes the person's code (tests/integration/person_code.rs).
    assert!(status.get("holder").is_none(), "{status}");
    // An employer checks the paper with its code.
    let code = api["verification_code"].as_str().unwrap();
    let check: Value = app.get_json(&format!("/api/v1/attestations/{code}")).await;
    assert_eq!(check["valid_today"], true);
    assert_eq!(check["holder"]["family_name"], "Okafor");
    assert_eq!(check["attestation"]["valid_until"], until.to_string());
    // What an employer needs and nothing else: no file reference, no birth
    // date, nationality or foreigner number to whoever holds the code.
    assert_eq!(
        check["holder"]
            .as_object()
            .map(|h| h.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["family_name".to_string(), "given_names".to_string()]),
        "{check}"
    );
    assert!(check.get("reference").is_none(), "{check}");
    let unknown = app.get("/api/v1/attestations/ZZZZZZZZ").await;
    assert_eq!(unknown.status(), 404);
    // A wrong birth date is as good as no file.
    let wrong = app
        .http
        .get(url.replace("1991-03-02", "1991-03-03"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    // The sweep does not issue twice.
    app.two_more_sweeps().await;
    let instruction = env.db("instruction").await;
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM attestations").await,
        1
    );
    common::stop(app, env).await;
}

/// Documents asked for are due by the deadline, sent by then: a reply
/// posted on the deadline day (the postmark attests it) is still on its
/// way the day after. The sweep closes the case for the missed deadline
/// only once such a reply would have been received and keyed, five working
/// days on; the post has the same days to answer as the web.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_closes_the_case_once_a_posted_reply_would_be_in() {
    let (env, app, clock) = start_on_clock().await;
    let body = without_contract(renewal("Traoré", today() + Days::new(200)));
    let reference = file(&app, &body).await;
    take_over(&app, "agent-7", &reference).await;
    let deadline = today() + Days::new(1);
    let asked = app
        .agent_post(
            "agent-7",
            &format!("/api/v1/agent/dossiers/{reference}/document-requests"),
            json!({"kinds": ["employment_contract"], "deadline": deadline.to_string()}),
        )
        .await;
    assert_eq!(asked.status(), 200, "{:?}", asked.text().await);
    let db = env.db("instruction").await;
    let in_state = |state: &'static str| {
        let (db, reference) = (&db, &reference);
        async move {
            count(
                db,
                &format!(
                    "SELECT count(*) FROM dossiers WHERE reference = '{reference}' \
                     AND state = '{state}'"
                ),
            )
            .await
                == 1
        }
    };

    // The day after the deadline: still waiting for the post.
    clock.advance(chrono::Duration::days(2));
    app.two_more_sweeps().await;
    assert!(in_state("documents_requested").await);

    // Two weeks on, five working days have passed whatever the holidays.
    clock.advance(chrono::Duration::days(13));
    eventually(WAIT, "the case closed for the missed deadline", || async {
        in_state("closed").await.then_some(())
    })
    .await;
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM dossier_events WHERE reference = '{reference}' \
                 AND kind = 'closed_deadline_passed'"
            ),
        )
        .await,
        1
    );
    common::stop(app, env).await;
}

on_both_backends!(the_lifecycle_refuses_what_it_does_not_allow_and_documents_complete_a_file);
async fn the_lifecycle_refuses_what_it_does_not_allow_and_documents_complete_a_file(
    backend: Backend,
) {
    let (env, app) = start(backend).await;
    // No employment contract: incomplete.
    let body = without_contract(renewal("Diallo", today() + Days::new(200)));
    let reference = file(&app, &body).await;
    let read = app
        .agent_get("agent-7", &format!("/api/v1/agent/dossiers/{reference}"))
        .await;
    let case: Value = read.json().await.unwrap();
    assert_eq!(case["dossier"]["state"], "incomplete");
    // Acting on a case is its holder's: agent-7 takes it (it is not in the
    // queue's next place: an incomplete file is not taken from the queue).
    take_over(&app, "agent-7", &reference).await;
    assert_eq!(case["missing"], json!(["employment_contract"]));
    assert_eq!(case["applicant"]["family_name"], "Diallo");

    let decide = app
        .agent_post(
            "agent-7",
            &format!("/api/v1/agent/dossiers/{reference}/decision"),
            json!({"favourable": true}),
        )
        .await;
    assert_eq!(decide.status(), 409);
    let problem: Value = decide.json().await.unwrap();
    assert!(
        common::first_problem(&problem).contains("cannot be decided favourably"),
        "{problem}"
    );

    let deadline = (today() + Days::new(30)).to_string();
    let asked = app.agent_post("agent-7",
        &format!("/api/v1/agent/dossiers/{reference}/document-requests"),
        json!({"kinds": ["employment_contract"], "deadline": deadline, "reason": "contract missing"}),
    )
    .await;
    assert_eq!(asked.status(), 200);
    let case: Value = asked.json().await.unwrap();
    assert_eq!(case["dossier"]["state"], "documents_requested");
    assert_eq!(case["documents_deadline"], deadline);

    let arrived = app.agent_post("agent-7",
        &format!("/api/v1/agent/dossiers/{reference}/documents"),
        json!({"kind": "employment_contract", "sha256": "ab".repeat(32), "media_type": "application/pdf", "size_bytes": 1234, "channel": "postal"}),
    )
    .await;
    assert_eq!(arrived.status(), 200);
    let case: Value = arrived.json().await.unwrap();
    assert_eq!(case["dossier"]["state"], "complete");
    assert_eq!(case["missing"], json!([]));
    let kinds: Vec<&str> = case["dossier"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "filed",
            "found_incomplete",
            "taken_over",
            "documents_requested",
            "found_complete"
        ]
    );

    // Bad input is named.
    let bad = app
        .agent_post(
            "agent-7",
            &format!("/api/v1/agent/dossiers/{reference}/document-requests"),
            json!({"kinds": ["passport"], "deadline": "2020-01-01"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let nobody = app
        .get(&format!("/api/v1/agent/dossiers/{reference}"))
        .await;
    assert_eq!(nobody.status(), 401);
    let instruction = env.db("instruction").await;
    assert_eq!(
        count(
            &instruction,
            "SELECT count(*) FROM agent_reads WHERE agent = 'agent-7'"
        )
        .await,
        2,
        "the read, and the take-over (which shows the case)"
    );
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A round of expiry alerts with none left to send is a handful of
/// transactions, however many titles expire within the furthest offset: it
/// reads the titles still owed an alert, not each title near its expiry.
async fn a_round_with_no_alert_left_is_a_handful_of_transactions_for_2000_titles() {
    use guichet_instruction::titles;
    const TITLES: usize = 2_000;
    let env = TestEnv::on(Backend::Servers).await;
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let csv = env.data_dir.join("legacy.csv");
    let in_50 = today() + Days::new(50);
    let mut lines = String::from(
        "kind,number,expires_on,family_name,given_names,birth_date,nationality,email,phone,address_line1,postal_code,city,answer_channel\n",
    );
    for i in 0..TITLES {
        lines.push_str(&format!(
            "temporary_card,FR59T{i:05},{in_50},Benali,Samira,1991-03-02,DZA,s{i}@example.org,,12 rue Solferino,59000,Lille,email\n"
        ));
    }
    std::fs::write(&csv, lines).unwrap();
    let (records, rejected) = titles::read_file(&csv, today()).unwrap();
    assert_eq!((records.len(), rejected.len()), (TITLES, 0));
    let db = instruction_db(&env).await;
    titles::record(&db, &records, "imported", None, Utc::now())
        .await
        .unwrap();
    drop(db);
    assert_eq!(alert_round(&env).await, TITLES, "each title's 60-day alert");

    let before = commits_once_idle(&env).await;
    let second = alert_round(&env).await;
    let after = commits_once_idle(&env).await;
    assert_eq!(second, 0, "nothing left to send");
    // The figure is for the closing note, not a threshold of time.
    eprintln!(
        "a round with nothing to send: {} transactions",
        after - before
    );
    // Opening the pool and checking its migrations take a few dozen; one
    // transaction per title would be 2,000 more.
    assert!(
        after - before < 200,
        "{} transactions for a round with nothing to send",
        after - before
    );
    env.cleanup().await;
}

async fn instruction_db(env: &TestEnv) -> guichet_kit::db::Database {
    crate::store_contracts::open(
        env,
        guichet_instruction::server::SCHEMA,
        &guichet_instruction::server::MIGRATIONS,
    )
    .await
}

/// One round of expiry alerts on a pool of its own, gone once the round is
/// over (so its backends have counted their transactions); how many went.
async fn alert_round(env: &TestEnv) -> usize {
    use guichet_dossier::alerts::DEFAULT_ALERT_OFFSETS;
    let db = instruction_db(env).await;
    let sent = guichet_instruction::titles::send_due_alerts(
        &db,
        &DEFAULT_ALERT_OFFSETS,
        Utc::now(),
        today(),
    )
    .await
    .unwrap();
    db.close().await;
    sent
}

/// The transactions committed in this test's database, once none of its
/// connections is left: a backend counts its own as it ends.
async fn commits_once_idle(env: &TestEnv) -> i64 {
    let admin = sqlx::PgPool::connect(&common::database_admin_url())
        .await
        .unwrap();
    eventually(WAIT, "the test database's connections ended", || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&env.name)
                .fetch_one(&admin)
                .await
                .unwrap();
        (open == 0).then_some(())
    })
    .await;
    let commits: i64 =
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&env.name)
            .fetch_one(&admin)
            .await
            .unwrap();
    admin.close().await;
    commits
}

on_both_backends!(holders_are_warned_once_before_their_title_expires);
async fn holders_are_warned_once_before_their_title_expires(backend: Backend) {
    let (env, app) = start(backend).await;
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let csv = env.data_dir.join("legacy.csv");
    let in_60 = today() + Days::new(60);
    let in_200 = today() + Days::new(200);
    std::fs::write(
        &csv,
        format!(
            "kind,number,expires_on,family_name,given_names,birth_date,nationality,email,phone,address_line1,postal_code,city,answer_channel\n\
             temporary_card,FR59T1,{in_60},Benali,Samira,1991-03-02,DZA,s.benali@example.org,,12 rue Solférino,59000,Lille,email\n\
             resident_card,FR59R2,{in_200},Diallo,Mamadou,1985-06-11,GIN,,,15 rue de la Paix,59100,Roubaix,post\n\
             passport,X,{in_60},Nobody,,1990-01-01,FRA,,,1 rue,59000,Lille,\n"
        ),
    )
    .unwrap();
    let (records, rejected) = guichet_instruction::titles::read_file(&csv, today()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].line, 4);
    assert!(rejected[0].problems.contains("kind"), "{:?}", rejected[0]);
    let db = env.db("instruction").await;
    let (imported, known) =
        guichet_instruction::titles::record(&db, &records, "imported", None, Utc::now())
            .await
            .unwrap();
    assert_eq!((imported, known), (2, 0));

    // The sweep warns the one 60 days from expiry, by e-mail as they asked.
    let mut stream = app
        .mesh
        .bus
        .consume(NOTIFIER_QUEUE, "test-notifier", 10)
        .await
        .unwrap();
    let alert = loop {
        let d = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
        if d.routing_key.starts_with("title.") {
            break d;
        }
    };
    assert_eq!(alert.routing_key, "title.expiry_alert.email");
    let body =
        <guichet_proto::v1::TitleExpiryAlert as prost::Message>::decode(alert.body.as_slice())
            .unwrap();
    assert_eq!(body.offset_days, 60);
    assert_eq!(
        body.number_ending, "59T1",
        "only the end of the number travels"
    );
    assert_eq!(body.family_name, "Benali");
    // Sweeps go on every second: still one alert, not one per sweep.
    app.two_more_sweeps().await;
    assert_eq!(count(&db, "SELECT count(*) FROM title_alerts").await, 1);

    // A favourable decision with the title granted: that title is watched too.
    let reference = file(&app, &renewal("Okafor", today() + Days::new(300))).await;
    app.agent_post(
        "agent-1",
        "/api/v1/agent/queue/next",
        json!({"prefecture": "59"}),
    )
    .await;
    let granted_until = (today() + Days::new(4 * 365)).to_string();
    let decided = app.agent_post("agent-1",
        &format!("/api/v1/agent/dossiers/{reference}/decision"),
        json!({"favourable": true, "new_title": {"kind": "multi_year_card", "number": "FR59M9", "expires_on": granted_until}}),
    )
    .await;
    assert_eq!(decided.status(), 200);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM titles WHERE source = 'decided' AND number = 'FR59M9'"
        )
        .await,
        1
    );
    common::stop(app, env).await;
}

/// Starts the mesh with the sweep at its default interval (five minutes):
/// whatever a test sees within its wait came from arrival, not the sweep.
async fn start_with_default_sweep(backend: Backend, horizon_days: i64) -> (TestEnv, App) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    assert_eq!(config.sweep_interval_s, 300, "the default sweep interval");
    config.instruction.attestation_horizon_days = horizon_days;
    let app = App::builder(&config).only(ONLINE).start().await;
    (env, app)
}

async fn status_of(app: &App, reference: &str, birth_date: &str) -> Value {
    let r = app
        .get(&format!(
            "/api/v1/dossiers/{reference}/status?birth_date={birth_date}"
        ))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

on_both_backends!(a_complete_renewal_is_attested_when_it_is_recorded);
async fn a_complete_renewal_is_attested_when_it_is_recorded(backend: Backend) {
    let (env, app) = start_with_default_sweep(backend, 15).await;
    let expires = today() + Days::new(10);
    let filed = tokio::time::Instant::now();
    let reference = app.file_accepted(&renewal("Diallo", expires)).await;
    let status = eventually(WAIT, "the attestation in the status answer", || async {
        let r = app
            .http
            .get(format!(
                "{}/api/v1/dossiers/{reference}/status?birth_date=1991-03-02",
                app.base
            ))
            .send()
            .await
            .ok()?;
        let s: Value = r.json().await.ok()?;
        (s["attestations"].as_array()?.len() == 1).then_some(s)
    })
    .await;
    // The figure is for the closing note and BENCHMARKS.md, not a threshold.
    eprintln!(
        "attestation shown {} ms after the filing was answered",
        filed.elapsed().as_millis()
    );
    let until = guichet_dossier::rights::add_months(expires, 3);
    assert_eq!(status["attestations"][0]["kind"], "prolongation");
    assert_eq!(status["attestations"][0]["valid_from"], today().to_string());
    assert_eq!(status["attestations"][0]["valid_until"], until.to_string());
    assert_eq!(status["cover"]["basis"], "prolongation");
    assert_eq!(status["cover"]["until"], until.to_string());
    assert_eq!(status["uncovered"], json!([]));
    // In the history, right after the filing was found complete.
    let view: Value = app.dossier(&reference).await.json().await.unwrap();
    let kinds: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["filed", "found_complete", "attestation_issued"]);
    common::stop(app, env).await;
}

on_both_backends!(the_configured_horizon_decides_the_attestation_on_arrival);
/// `GUICHET_ATTESTATION_HORIZON_DAYS` is the horizon on arrival too: the
/// attestation and the dossier are written in one transaction, so once the
/// dossier can be read, an attestation owed on arrival can be read as well.
async fn the_configured_horizon_decides_the_attestation_on_arrival(backend: Backend) {
    for (horizon, expected) in [(60, 1), (15, 0)] {
        let (env, app) = start_with_default_sweep(backend, horizon).await;
        let reference = file(&app, &renewal("Keita", today() + Days::new(40))).await;
        let status = status_of(&app, &reference, "1991-03-02").await;
        assert_eq!(status["state"], "complete");
        assert_eq!(
            status["attestations"].as_array().unwrap().len(),
            expected,
            "horizon {horizon} days, title ending in 40 days"
        );
        common::stop(app, env).await;
    }
}

on_both_backends!(the_legal_extension_covers_only_renewals_filed_in_time);
/// L.433-3 end to end, against dates worked out from the law: the three
/// months after expiry cover only a renewal asked for in time.
async fn the_legal_extension_covers_only_renewals_filed_in_time(backend: Backend) {
    let (env, app) = start_with_default_sweep(backend, 15).await;
    let add_months = guichet_dossier::rights::add_months;
    let today = today();
    let titled = |name: &str, kind: &str, expires: NaiveDate| {
        let mut body = renewal(name, expires);
        body["current_title"]["kind"] = kind.into();
        body
    };
    // The next 31 January, and the next 30 November before a 29 February.
    let jan31 = (today.year()..)
        .map(|y| NaiveDate::from_ymd_opt(y, 1, 31).unwrap())
        .find(|d| *d > today)
        .unwrap();
    let nov30 = (today.year()..)
        .map(|y| NaiveDate::from_ymd_opt(y, 11, 30).unwrap())
        .find(|d| *d > today && NaiveDate::from_ymd_opt(d.year() + 1, 2, 29).is_some())
        .unwrap();
    let in_time = today + Days::new(200);
    let late = today - Days::new(20);
    // (who, title kind, expires, cover until, basis, urgency, attestations)
    type Row<'a> = (
        &'a str,
        &'a str,
        NaiveDate,
        NaiveDate,
        &'a str,
        &'a str,
        usize,
    );
    let table: Vec<Row> = vec![
        (
            "Traore",
            "multi_year_card",
            in_time,
            add_months(in_time, 3),
            "legal_extension",
            "routine",
            0,
        ),
        (
            "Camara",
            "multi_year_card",
            late,
            add_months(today, 3),
            "prolongation",
            "routine",
            1,
        ),
        (
            "Sow",
            "temporary_card",
            in_time,
            in_time,
            "current_title",
            "routine",
            0,
        ),
        (
            "Bah",
            "resident_card",
            jan31,
            NaiveDate::from_ymd_opt(jan31.year(), 4, 30).unwrap(),
            "legal_extension",
            "",
            0,
        ),
        (
            "Barry",
            "agreement_title",
            nov30,
            NaiveDate::from_ymd_opt(nov30.year() + 1, 2, 29).unwrap(),
            "legal_extension",
            "",
            0,
        ),
    ];
    for (name, kind, expires, until, basis, urgency, attestations) in table {
        let reference = file(&app, &titled(name, kind, expires)).await;
        let status = status_of(&app, &reference, "1991-03-02").await;
        assert_eq!(status["cover"]["until"], until.to_string(), "{name}: cover");
        assert_eq!(status["cover"]["basis"], basis, "{name}: basis");
        let issued = status["attestations"].as_array().unwrap();
        assert_eq!(issued.len(), attestations, "{name}: attestations");
        if !urgency.is_empty() {
            let view: Value = app.dossier(&reference).await.json().await.unwrap();
            assert_eq!(view["urgency"], urgency, "{name}: urgency");
        }
    }
    // The late renewal, looked at closely: before its attestation it was the
    // most urgent file; the attestation runs from the day it was issued, never
    // back-dated, and the days between expiry and then show as uncovered.
    let mut incomplete = titled("Conde", "multi_year_card", late);
    incomplete["documents"] = json!([]);
    let reference = file(&app, &incomplete).await;
    let status = status_of(&app, &reference, "1991-03-02").await;
    assert_eq!(status["cover"]["until"], late.to_string());
    assert_eq!(status["cover"]["basis"], "current_title");
    assert_eq!(
        status["uncovered"],
        json!([{"from": (late + Days::new(1)).to_string(), "until": today.to_string()}])
    );
    let view: Value = app.dossier(&reference).await.json().await.unwrap();
    assert_eq!(
        view["urgency"], "critical",
        "no L.433-3: critical, not routine"
    );
    // Another person (the same one again would be linked to the first).
    let late_complete = titled("Conte", "multi_year_card", late);
    let reference = file(&app, &late_complete).await;
    let status = status_of(&app, &reference, "1991-03-02").await;
    let api = &status["attestations"][0];
    assert_eq!(api["valid_from"], today.to_string(), "never back-dated");
    assert_eq!(api["valid_until"], add_months(today, 3).to_string());
    assert_eq!(
        status["uncovered"],
        json!([{
            "from": (late + Days::new(1)).to_string(),
            "until": (today - Days::new(1)).to_string()
        }])
    );
    common::stop(app, env).await;
}

on_both_backends!(twins_are_proposed_to_an_agent_not_linked);
/// Twins share a family name, a birth date and a nationality: only their
/// given names differ. They are never linked; an agent is shown the match.
async fn twins_are_proposed_to_an_agent_not_linked(backend: Backend) {
    let (env, app) = start(backend).await;
    let expires = today() + Days::new(90);
    let mut first = renewal("Haidara", expires);
    first["applicant"]["given_names"] = "Awa".into();
    let mut twin = first.clone();
    twin["applicant"]["given_names"] = "Adama".into();
    let mut same = first.clone();
    same["applicant"]["given_names"] = "AWA".into();
    let a = file(&app, &first).await;
    let b = file(&app, &twin).await;
    let entries = queue(&app, "prefecture=59").await;
    let listed: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([a.as_str(), b.as_str()]),
        "two places"
    );
    let case: Value = app
        .agent_get("agent-7", &format!("/api/v1/agent/dossiers/{b}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["linked_to"], Value::Null);
    assert_eq!(case["near_matches"], json!([a]));
    let kinds = |v: &Value| -> Vec<String> {
        v["dossier"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(&case).contains(&"near_match".to_string()));
    // The same person filing again, given names in capitals: linked.
    let c = file(&app, &same).await;
    let case: Value = app
        .agent_get("agent-7", &format!("/api/v1/agent/dossiers/{c}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["linked_to"], a.as_str());
    common::stop(app, env).await;
}

/// The favourable-decision attestation proves legal stay until the card is
/// in the person's hands; a desk records the handover, the attestation ends
/// that day, and the cover rests on the card until its last day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_handed_over_ends_the_favourable_decision_attestation() {
    let (env, app, clock) = start_on_clock().await;
    let reference = file(&app, &example("renewal-employee.json")).await;
    let handover = format!("/api/v1/agent/dossiers/{reference}/card-handover");
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let card_until = (today + chrono::Days::new(4 * 365)).to_string();
    let card = json!({"card_number": "FR59A0012345", "valid_until": card_until});

    // No card before a favourable decision.
    let early = app.agent_post("agent-1", &handover, card.clone()).await;
    assert_eq!(early.status(), 409, "{:?}", early.text().await);

    let taken = app
        .agent_post(
            "agent-1",
            "/api/v1/agent/queue/next",
            json!({"prefecture": "59"}),
        )
        .await;
    assert_eq!(taken.status(), 200);
    let decided = app
        .agent_post(
            "agent-1",
            &format!("/api/v1/agent/dossiers/{reference}/decision"),
            json!({"favourable": true}),
        )
        .await;
    assert_eq!(decided.status(), 200);
    let decided: Value = decided.json().await.unwrap();
    assert_eq!(decided["cover"]["basis"], "favourable_decision");
    assert_eq!(decided["cover"]["open_ended"], true);

    // A card already past, and a card without its number, are named.
    let past = app
        .agent_post(
            "agent-1",
            &handover,
            json!({"card_number": "FR59A0012345", "valid_until": "2020-01-31"}),
        )
        .await;
    assert_eq!(past.status(), 409);
    let unnamed = app
        .agent_post("agent-1", &handover, json!({"valid_until": card_until}))
        .await;
    assert_eq!(unnamed.status(), 400);
    let body: Value = unnamed.json().await.unwrap();
    assert_eq!(common::error_fields(&body), ["card_number"], "{body}");

    // A supervisor of the prefecture records it (the instructor who decided
    // is a desk agent too in the tests' grants).
    let handed = app
        .agent_post(common::PREFECTURE_AGENT, &handover, card.clone())
        .await;
    assert_eq!(handed.status(), 200, "{:?}", handed.text().await);
    let case: Value = handed.json().await.unwrap();
    assert_eq!(case["cover"]["basis"], "new_card", "{case}");
    assert_eq!(case["cover"]["until"], json!(card_until));
    assert_eq!(case["cover"]["open_ended"], false);
    let attestation = case["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "favourable_decision")
        .unwrap_or_else(|| panic!("the decision's attestation: {case}"));
    assert_eq!(attestation["valid_until"], json!(today.to_string()));
    assert!(
        case["dossier"]["events"]
            .to_string()
            .contains("card_handed_over"),
        "{case}"
    );
    // Once.
    let again = app.agent_post("agent-1", &handover, card).await;
    assert_eq!(again.status(), 409);

    // The person sees the same, and the sweep issues nothing more.
    let status = status_of(&app, &reference, "1991-03-02").await;
    assert_eq!(status["cover"]["basis"], "new_card", "{status}");
    app.two_more_sweeps().await;
    let status = status_of(&app, &reference, "1991-03-02").await;
    assert_eq!(
        status["attestations"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    assert_eq!(status["cover"]["basis"], "new_card");

    // Months later, past the old title's end and its three months: the card
    // covers every day since it was handed over, none is shown uncovered.
    clock.advance(chrono::Duration::days(160));
    let later = status_of(&app, &reference, "1991-03-02").await;
    assert_eq!(later["cover"]["basis"], "new_card", "{later}");
    for gap in later["uncovered"].as_array().unwrap() {
        let until: NaiveDate = gap["until"].as_str().unwrap().parse().unwrap();
        assert!(
            until < today,
            "a day after the handover shown uncovered: {later}"
        );
    }
    common::stop(app, env).await;
}

/// A web filing of the renewal example by a person of their own, as the
/// consumer hands it to the store.
fn incoming(i: usize, today: NaiveDate) -> guichet_instruction::store::Incoming {
    use guichet_dossier::filing::RawProvenance;
    use guichet_dossier::{Dossier, Filing, RawFiling, Reference};
    use prost::Message as _;
    let mut body = example("renewal-employee.json");
    // Names are letters: each digit of `i` spelled as one.
    let own: String = i
        .to_string()
        .bytes()
        .map(|d| char::from(b'a' + (d - b'0')))
        .collect();
    body["applicant"]["family_name"] = format!("Plan {own}").into();
    body["idempotency_key"] = format!("plan-{i}").into();
    let raw: RawFiling = serde_json::from_value(body).unwrap();
    let filing = Filing::parse(&raw, &RawProvenance::Web { account_id: None }, today).unwrap();
    let reference = Reference::generate(filing.provenance.channel(), 2026, &mut rand::rng());
    let now = Utc::now();
    let dossier = Dossier::new(reference, filing, now, now);
    guichet_instruction::store::Incoming {
        message_id: uuid::Uuid::new_v4().to_string(),
        encoded: guichet_proto::convert::dossier_to_pb(&dossier).encode_to_vec(),
        dossier,
        trace_id: String::new(),
    }
}

/// Index entries of `dossiers` read so far, as the statistics say once the
/// store's one connection has handed its own over.
async fn dossier_index_reads(pool: &sqlx::PgPool) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes \
         WHERE schemaname = current_schema() AND relname = 'dossiers'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Instruction starts on an empty table and grows to a year of filings
/// without being analysed in between. A statement it keeps prepared would
/// keep the plan made for the empty table: looking for a person's earlier
/// filings then read every open dossier of the procedure, for each dossier
/// recorded (in the bench, instruction fell from 1,300 to 139 dossiers/s
/// past 20,000 dossiers). Each batch must read about as many index entries
/// as it has dossiers, whatever the size of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_earlier_filings_reads_the_persons_entries_only_as_the_table_grows() {
    use guichet_kit::db::Database;
    const GROWN_TO: i64 = 20_000;
    const BATCH: usize = 40;
    let env = TestEnv::on(Backend::Servers).await;
    // One connection: every batch runs on the one that prepared the first.
    let db = Database::open(
        env.database_url.as_deref(),
        &env.data_dir,
        guichet_instruction::server::SCHEMA,
        guichet_kit::db::Pool::sized(1),
        &guichet_instruction::server::MIGRATIONS,
    )
    .await
    .unwrap();
    let pool = db.postgres().expect("PostgreSQL").clone();
    // No analysis behind the test's back: the table grows as it would
    // between two passes of autovacuum.
    sqlx::query("ALTER TABLE dossiers SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let store = guichet_instruction::store::Store::new(db.clone(), 30);
    let today = today();
    let mut next = 0;
    let mut batch = |size: usize| {
        let b: Vec<_> = (next..next + size).map(|i| incoming(i, today)).collect();
        next += size;
        b
    };
    // Batches on the nearly empty table, more than the five after which
    // PostgreSQL may keep one plan for a prepared statement (batches of a
    // dozen, as the first minutes of a service bring).
    for _ in 0..8 {
        let recorded = store.record(&batch(12), Utc::now(), today).await.unwrap();
        assert_eq!(recorded.len(), 12);
    }
    // A year of other people's open filings of the same procedure.
    sqlx::query(
        "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, \
         legal_filing_date, filed_at, received_at, dossier, person_key, near_key) \
         SELECT 'GROWN-' || g, d.channel, d.procedure, d.motif, d.prefecture, \
         d.legal_filing_date, d.filed_at, d.received_at, d.dossier, md5('p' || g), md5('n' || g) \
         FROM (SELECT * FROM dossiers LIMIT 1) d, generate_series(1, $1) g",
    )
    .bind(GROWN_TO)
    .execute(&pool)
    .await
    .unwrap();
    let before = dossier_index_reads(&pool).await;
    let recorded = store
        .record(&batch(BATCH), Utc::now(), today)
        .await
        .unwrap();
    assert_eq!(recorded.len(), BATCH);
    let read = dossier_index_reads(&pool).await - before;
    eprintln!(
        "instruction: one batch of {BATCH} dossiers read {read} index entries of a table of {} dossiers",
        GROWN_TO + 96 + BATCH as i64
    );
    assert!(
        read < 50 * BATCH as i64,
        "a batch of {BATCH} read {read} index entries of dossiers: a plan made for the empty table"
    );
    db.close().await;
    env.cleanup().await;
}
