//! Several instances of a service on one PostgreSQL and one RabbitMQ, as a
//! deployment runs them: competing consumers on the instruction queue, one
//! instance killed without warning, and the periodic work (expiry alerts,
//! overdue reports, the sweep) done once however many instances sweep. Each
//! test has its own database and vhost; counts are exact.

use crate::common;
use crate::faults::{
    DRAIN, accepted_references, assert_exactly_once, dossier_message, file_all_answered, keys,
    outbox_drained, spawn_instruction, statuses, tally,
};
use crate::store_contracts::{event_kinds, new_report, open};

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Days, SubsecRound as _, Utc};
use common::{Services, TestEnv, count, eventually};
use guichet_dossier::calendar::paris_date;
use guichet_intake_ccc::reports::Reports;
use guichet_kit::db::{Database, Migrations};
use guichet_kit::lease::Lease;

/// The servers only: instances share a database between processes, which
/// the embedded default (one process per file) never does.
async fn postgres_env() -> TestEnv {
    TestEnv::on(common::Backend::Servers).await
}

/// Waits until three consumers take from the instruction queue, as the
/// broker's management API counts them.
async fn three_instruction_consumers(env: &TestEnv, http: &reqwest::Client) {
    eventually(
        DRAIN,
        "three consumers on the instruction queue",
        || async {
            let q = common::management_queue(http, &env.name, "instruction.dossiers").await?;
            (q["consumers"].as_u64() == Some(3)).then_some(())
        },
    )
    .await;
}

/// `n` filings made by `file(i)`, eight at a time: their references.
async fn filed_by<F, Fut>(n: usize, file: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(0..n)
        .map(file)
        .buffer_unordered(8)
        .collect()
        .await
}

/// A second pool on the same schema: what another instance holds.
async fn instance(env: &TestEnv, schema: &str, migrations: &Migrations) -> Database {
    open(env, schema, migrations).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_and_passes_on_when_its_holder_stops_renewing() {
    let env = postgres_env().await;
    let kit_only = Migrations {
        postgres: &[],
        sqlite: &[],
    };
    let (a_db, b_db) = (
        instance(&env, "leases", &kit_only).await,
        instance(&env, "leases", &kit_only).await,
    );
    let ttl = Duration::from_millis(1500);
    let a = Lease::new(a_db.clone(), "sweep", ttl);
    let b = Lease::new(b_db.clone(), "sweep", ttl);
    assert_ne!(a.holder(), b.holder());

    // Both ask at once, many times: exactly one holds it each time.
    for round in 0..20 {
        let (ha, hb) = tokio::join!(a.hold(), b.hold());
        let (ha, hb) = (ha.unwrap(), hb.unwrap());
        assert!(ha ^ hb, "round {round}: one holder, not {ha} and {hb}");
    }
    let (first, second) = if a.hold().await.unwrap() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // Another name is another lease, free.
    assert!(Lease::new(b_db.clone(), "purge", ttl).hold().await.unwrap());

    // The holder stops renewing (it died): the other takes over once the
    // lease has run out, not before.
    assert!(!second.hold().await.unwrap());
    eventually(Duration::from_secs(10), "the lease taken over", || async {
        second.hold().await.unwrap().then_some(())
    })
    .await;
    assert!(!first.hold().await.unwrap(), "the old holder lost it");
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'sweep'")
        .fetch_one(a_db.postgres().unwrap())
        .await
        .unwrap();
    assert_eq!(holder, second.holder());

    // Given up on a clean stop: free at once.
    second.release().await.unwrap();
    assert!(
        first.hold().await.unwrap(),
        "a lease given up is free at once"
    );

    a_db.close().await;
    b_db.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_lease_has_one_holder_and_passes_on_at_once_when_its_holder_stops() {
    let env = postgres_env().await;
    let kit_only = Migrations {
        postgres: &[],
        sqlite: &[],
    };
    let (a_db, b_db) = (
        instance(&env, "keepers", &kit_only).await,
        instance(&env, "keepers", &kit_only).await,
    );
    let (ttl, renew) = (Duration::from_secs(2), Duration::from_millis(150));
    let (stop_a, stop_b) = (
        guichet_kit::shutdown::Shutdown::new(),
        guichet_kit::shutdown::Shutdown::new(),
    );
    let a = Lease::new(a_db.clone(), "sweep", ttl).keep(renew, stop_a.clone());
    let b = Lease::new(b_db.clone(), "sweep", ttl).keep(renew, stop_b.clone());

    // One of them holds it; then, for a lease time and a half, never both.
    eventually(Duration::from_secs(10), "a holder", || async {
        (*a.borrow() || *b.borrow()).then_some(())
    })
    .await;
    let (mut samples, mut both) = (0, 0);
    let watched = std::time::Instant::now();
    while watched.elapsed() < ttl * 3 / 2 {
        if *a.borrow() && *b.borrow() {
            both += 1;
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(both, 0, "two holders in {samples} looks");
    let (holder_stop, mut other) = if *a.borrow() {
        (stop_a.clone(), b.clone())
    } else {
        (stop_b.clone(), a.clone())
    };
    assert!(!*other.borrow_and_update());

    // The holder stops cleanly: the other one is told it holds the lease
    // at its next renewal, not once the lease has run out.
    let stopped = std::time::Instant::now();
    holder_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), other.wait_for(|held| *held))
        .await
        .expect("the lease passed on")
        .unwrap();
    eprintln!(
        "lease: passed on {:?} after its holder stopped",
        stopped.elapsed()
    );
    assert_eq!(
        count(&a_db, "SELECT count(*) FROM leases WHERE name = 'sweep'").await,
        1
    );

    stop_a.cancel();
    stop_b.cancel();
    a_db.close().await;
    b_db.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sending_expiry_alerts_at_once_send_each_alert_once() {
    const TITLES: usize = 120;
    let env = postgres_env().await;
    let migrations = &guichet_instruction::server::MIGRATIONS;
    let schema = guichet_instruction::server::SCHEMA;
    let (a, b) = (
        instance(&env, schema, migrations).await,
        instance(&env, schema, migrations).await,
    );
    // Titles expiring within the next 60 days: one alert each at 60 days.
    let now = Utc::now();
    let today = paris_date(now);
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let csv = env.data_dir.join("titles.csv");
    let mut text = String::from(
        "kind,number,expires_on,family_name,given_names,birth_date,nationality,email,phone,address_line1,postal_code,city,answer_channel\n",
    );
    for i in 0..TITLES {
        let expires = today + Days::new(10 + (i % 50) as u64);
        text.push_str(&format!(
            "temporary_card,FR59T{i:04},{expires},Benali,Samira,1991-03-02,DZA,s{i}@example.org,+3361234{i:04},12 rue Solférino,59000,Lille,email\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let (records, rejected) = guichet_instruction::titles::read_file(&csv, today).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(records.len(), TITLES);
    guichet_instruction::titles::record(&a, &records, "imported", None, now)
        .await
        .unwrap();

    // Both instances sweep at once, three rounds each, as two instances
    // whose leases overlapped would.
    let offsets = [60_i64];
    let mut sent = 0;
    for _ in 0..3 {
        let (x, y) = tokio::join!(
            guichet_instruction::titles::send_due_alerts(&a, &offsets, now, today),
            guichet_instruction::titles::send_due_alerts(&b, &offsets, now, today),
        );
        sent += x.unwrap() + y.unwrap();
    }
    eprintln!("instances: {sent} expiry alerts sent by two instances for {TITLES} titles");
    assert_eq!(sent, TITLES, "each alert sent once");
    assert_eq!(
        count(&a, "SELECT count(*) FROM title_alerts").await,
        TITLES as i64
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM outbox").await,
        TITLES as i64,
        "one message queued per alert"
    );

    a.close().await;
    b.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_escalating_at_once_escalate_each_overdue_report_once() {
    const REPORTS: usize = 60;
    let env = postgres_env().await;
    let migrations = &guichet_intake_ccc::server::MIGRATIONS;
    let schema = guichet_intake_ccc::server::SCHEMA;
    let a = Reports::new(instance(&env, schema, migrations).await);
    let b = Reports::new(instance(&env, schema, migrations).await);
    let now = Utc::now();
    let today = paris_date(now);
    let mut ids = Vec::new();
    for i in 0..REPORTS {
        let deadline = today - chrono::Duration::days(1 + (i % 3) as i64);
        let opened = a
            .open(
                new_report(&format!("late-{i}"), "no receipt", deadline),
                now,
                today,
            )
            .await
            .unwrap();
        ids.push(opened.id);
    }
    let mut escalated = 0;
    for _ in 0..3 {
        let (x, y) = tokio::join!(
            a.escalate_overdue(now, today),
            b.escalate_overdue(now, today)
        );
        escalated += x.unwrap() + y.unwrap();
    }
    eprintln!("instances: {escalated} escalations by two instances for {REPORTS} overdue reports");
    assert_eq!(escalated, REPORTS, "each report escalated once");
    for id in &ids {
        assert_eq!(event_kinds(&a, id).await, ["opened", "escalated"], "{id}");
    }
    assert_eq!(
        count(
            a.db(),
            "SELECT count(*) FROM outbox WHERE routing_key LIKE 'report.escalated.%'"
        )
        .await,
        REPORTS as i64,
        "one event published per escalation"
    );
    a.db().close().await;
    b.db().close().await;
    env.cleanup().await;
}

/// Two notifiers taking their batches of messages due at the same moment
/// take each message once; a lease is extended only by the sender that
/// holds it, and a message whose lease ran out is taken by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifiers_take_each_message_due_once() {
    use guichet_dossier::notice::{Medium, NoticeKind};
    use guichet_notifier::store::{NewNotice, SentMark, Store, insert};
    const MESSAGES: usize = 100;
    let env = postgres_env().await;
    let (schema, migrations) = (guichet_notifier::SCHEMA, &guichet_notifier::MIGRATIONS);
    let a = Store {
        db: instance(&env, schema, migrations).await,
    };
    let b = Store {
        db: instance(&env, schema, migrations).await,
    };
    let now = Utc::now();
    let mut c = a.db.acquire().await.unwrap();
    for i in 0..MESSAGES {
        let notice = NewNotice {
            notice_key: format!("receipt:W26-{i}"),
            medium: Medium::Email,
            kind: NoticeKind::Receipt,
            subject_ref: format!("W26-{i}"),
            recipient: format!("person{i}@example.org"),
            language: "fr".into(),
            routing_key: "case.found_complete".into(),
            event: vec![],
            has_address: false,
            not_before: now - chrono::Duration::seconds((MESSAGES - i) as i64),
            event_at: now,
        };
        assert!(insert(&mut c.conn(), &notice, now).await.unwrap());
    }
    drop(c);
    // Both take batches of 32 at once until nothing is left.
    let until = (now + chrono::Duration::minutes(5)).trunc_subsecs(6);
    let (mut by_a, mut by_b) = (Vec::new(), Vec::new());
    loop {
        let (x, y) = tokio::join!(a.lease_due(now, until, 32), b.lease_due(now, until, 32));
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        assert!(
            x.windows(2).all(|w| w[0].not_before <= w[1].not_before),
            "oldest first"
        );
        by_a.extend(x.into_iter().map(|r| r.id));
        by_b.extend(y.into_iter().map(|r| r.id));
    }
    eprintln!(
        "instances: {} messages taken by one notifier, {} by the other",
        by_a.len(),
        by_b.len()
    );
    let mut all: Vec<_> = by_a.iter().chain(&by_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), MESSAGES, "each taken once, none twice");
    assert_eq!(by_a.len() + by_b.len(), MESSAGES);

    // Extending takes the holder's lease end; another one is refused.
    let id = &by_a[0];
    let later = until + chrono::Duration::minutes(5);
    assert!(
        !b.extend_lease(id, now, later).await.unwrap(),
        "not its lease"
    );
    assert!(
        a.extend_lease(id, until, later).await.unwrap(),
        "its holder's"
    );
    // Once the lease has run out, the other notifier takes the message,
    // and the first can no longer extend what it held.
    let after = later + chrono::Duration::seconds(1);
    let retaken = b
        .lease_due(after, after + chrono::Duration::minutes(5), MESSAGES as i64)
        .await
        .unwrap();
    assert!(
        retaken.iter().any(|r| &r.id == id),
        "taken again after its lease"
    );
    assert!(!a.extend_lease(id, later, after).await.unwrap());

    // What a sender handed over is marked in one go: sent, or delivered
    // with the provider's id; a message settled meanwhile stays as it is,
    // and nothing marked is due again.
    let settled = &retaken[3];
    b.db.execute(
        guichet_kit::sql::Stmt::new("UPDATE notices SET state = 'cancelled' WHERE id = $1")
            .bind(settled.id.as_str()),
    )
    .await
    .unwrap();
    let marks: Vec<SentMark> = retaken[..4]
        .iter()
        .enumerate()
        .map(|(n, r)| SentMark {
            id: r.id.clone(),
            at: after,
            provider_id: (n == 1).then(|| "provider-1".to_string()),
            delivered: n == 1,
        })
        .collect();
    b.mark_sent(&marks, &[]).await.unwrap();
    let state_of = |r: &guichet_notifier::store::NoticeRow| {
        let (b, key) = (&b, r.notice_key.clone());
        async move { b.states_of(&key).await.unwrap()[0].1 }
    };
    use guichet_dossier::notice::DeliveryState;
    assert_eq!(state_of(&retaken[0]).await, DeliveryState::Sent);
    assert_eq!(state_of(&retaken[1]).await, DeliveryState::Delivered);
    assert_eq!(state_of(&retaken[2]).await, DeliveryState::Sent);
    assert_eq!(state_of(settled).await, DeliveryState::Cancelled);
    let due_again = b
        .lease_due(
            after + chrono::Duration::minutes(20),
            after + chrono::Duration::minutes(25),
            MESSAGES as i64,
        )
        .await
        .unwrap();
    assert_eq!(
        due_again.len(),
        MESSAGES - 4,
        "the four settled are not due again"
    );
    assert!(
        due_again
            .iter()
            .all(|r| !marks.iter().any(|m| m.id == r.id))
    );
    a.db.close().await;
    b.db.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_given_several_broker_nodes_publishes_through_one_that_is_up() {
    use guichet_kit::bus::{AmqpBus, Bus, INSTRUCTION_QUEUE};
    let env = postgres_env().await;
    let live = env.amqp_url.clone().unwrap();
    // A node that takes TCP connections and never answers (a host whose
    // broker hangs), one that refuses them (nothing listens there), then the
    // broker: the services take the nodes of a cluster in one variable.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let node = |port: u16| format!("amqp://guest:guest@127.0.0.1:{port}/{}", env.name);
    let (silent, dead) = (node(silent_port), node(common::free_port()));
    let bus = AmqpBus::new(&format!("{silent},{dead},{live}"), "cluster-test", 3);
    let messages: Vec<_> = (0..5).map(|_| dossier_message().1).collect();
    for (i, r) in bus.publish(&messages).await.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    assert_eq!(bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 5);
    bus.close().await;
    held.abort();
    env.cleanup().await;
}

const LOAD: usize = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_each_online_service_and_one_killed_lose_and_double_nothing() {
    let env = postgres_env().await;
    let config = env.config();
    // Two whole online stacks (gateway, web intake, instruction), each with
    // its own connections, on one database and one vhost; and a third
    // instruction, a process of its own, killed without warning mid-run.
    let first = Services::start(
        (&config, env.open_bus().await),
        (&config, env.open_bus().await),
        &config,
    )
    .await;
    let second = Services::start(
        (&config, env.open_bus().await),
        (&config, env.open_bus().await),
        &config,
    )
    .await;
    let instruction = env.db("instruction").await;
    let mut third = spawn_instruction(&env, 64);
    // The three instructions all consume before the load starts, so the
    // killed one is killed with work in hand.
    three_instruction_consumers(&env, &first.http).await;

    let (half_a, half_b) = {
        let all = keys("instances", LOAD);
        let (a, b) = all.split_at(LOAD / 2);
        (a.to_vec(), b.to_vec())
    };
    let killer = {
        let instruction = instruction.clone();
        async move {
            // Once a fifth of the load is recorded, by whichever instances.
            eventually(DRAIN, "the instances to get going", || async {
                (count(&instruction, "SELECT count(*) FROM dossiers").await >= (LOAD / 5) as i64)
                    .then_some(())
            })
            .await;
            third.kill();
            count(&instruction, "SELECT count(*) FROM dossiers").await
        }
    };
    let (answers_a, answers_b, killed_at) = tokio::join!(
        file_all_answered(&first.http, &first.base, half_a, 16),
        file_all_answered(&second.http, &second.base, half_b, 16),
        killer,
    );
    eprintln!("instances: the third instruction SIGKILLed with {killed_at} dossiers recorded");
    let mut answers = answers_a;
    answers.extend(answers_b);
    assert_eq!(statuses(&answers), BTreeMap::from([(201, LOAD)]));
    let accepted = accepted_references(&answers);
    assert_eq!(accepted.len(), LOAD);

    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once("two instances of each, a third instruction killed", &tally);
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM inbox").await,
        LOAD as i64,
        "one inbox claim per message"
    );
    let intake = env.db("intake_web").await;
    outbox_drained(&intake).await;
    assert_eq!(
        count(&intake, "SELECT count(*) FROM filings").await,
        LOAD as i64
    );
    // The instances sweep under one lease: one row, one holder.
    assert_eq!(
        count(
            &instruction,
            "SELECT count(*) FROM leases WHERE name = 'instruction-sweep'"
        )
        .await,
        1
    );

    first.stop().await;
    second.stop().await;
    intake.close().await;
    instruction.close().await;
    env.cleanup().await;
}

/// A dossier message of `version`, as a build writing that version would
/// publish it; `extra` is a field this build does not know (field 900).
fn dossier_of_version(
    version: u32,
    extra: Option<&str>,
) -> (String, guichet_kit::bus::OutgoingMessage) {
    use prost::Message;
    let (reference, message) = dossier_message();
    let mut wire = guichet_proto::v1::Dossier::decode(message.body.as_slice()).unwrap();
    wire.schema_version = version;
    let mut body = wire.encode_to_vec();
    if let Some(extra) = extra {
        prost::encoding::string::encode(900, &extra.to_string(), &mut body);
    }
    let message = guichet_kit::bus::OutgoingMessage { body, ..message }
        .with_header("x-guichet-schema-version", version.to_string());
    (reference, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_rolling_upgrade_dossiers_one_version_either_side_are_recorded_and_read() {
    use guichet_dossier::SCHEMA_VERSION;
    use guichet_kit::bus::{DEAD_LETTER_QUEUE, INSTRUCTION_QUEUE};
    let env = postgres_env().await;
    let config = env.config();
    let app = common::App::builder(&config)
        .only(&["gateway", "instruction"])
        .start()
        .await;
    // What this build writes, what the next build writes (a field added,
    // which this build skips), and, once there is one, what the build before
    // wrote: old and new instances side by side read each other's dossiers.
    let mut readable = vec![
        dossier_of_version(SCHEMA_VERSION, None),
        dossier_of_version(SCHEMA_VERSION + 1, Some("a field the next version added")),
    ];
    if SCHEMA_VERSION > 1 {
        readable.push(dossier_of_version(SCHEMA_VERSION - 1, None));
    }
    // Two steps ahead is not this build's to read: dead-lettered, not lost.
    let (far_reference, far) = dossier_of_version(SCHEMA_VERSION + 2, None);
    let mut messages: Vec<_> = readable.iter().map(|(_, m)| m.clone()).collect();
    messages.push(far);
    for r in app.mesh.bus.publish(&messages).await {
        r.unwrap();
    }
    let instruction = env.db("instruction").await;
    eventually(DRAIN, "the readable dossiers recorded", || async {
        (count(&instruction, "SELECT count(*) FROM dossiers").await == readable.len() as i64)
            .then_some(())
    })
    .await;
    eventually(DRAIN, "the far one dead-lettered", || async {
        (app.mesh.bus.queue_depth(DEAD_LETTER_QUEUE).await.ok()? == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.mesh.bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(),
        0
    );
    // Each recorded dossier reads back through the API, the newer one too.
    for (reference, _) in &readable {
        let response = app.dossier(reference).await;
        assert_eq!(response.status(), 200, "{reference}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["reference"], reference.as_str(), "{body}");
    }
    assert_eq!(
        count(
            &instruction,
            &format!("SELECT count(*) FROM dossiers WHERE reference = '{far_reference}'")
        )
        .await,
        0
    );
    instruction.close().await;
    common::stop(app, env).await;
}

/// What a migration may do while old instances still run on the schema:
/// add (tables, nullable columns or columns with a default, indexes). A
/// change the old code would trip on (a drop, a rename, a new type, a new
/// NOT NULL without default) is a contraction: it goes in a migration named
/// `*_contract_*`, released once no running build uses the old shape.
fn contractions(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    let mut found = Vec::new();
    for statement in text.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let s = words.join(" ");
        if !s.starts_with("ALTER TABLE") && !s.starts_with("DROP") {
            continue;
        }
        for pattern in [
            "DROP COLUMN",
            "DROP TABLE",
            "RENAME ",
            " TYPE ",
            "SET NOT NULL",
        ] {
            if s.contains(pattern) {
                found.push(format!("{pattern}: {s}"));
            }
        }
        for added in s.split("ADD COLUMN").skip(1) {
            let column = added.split(',').next().unwrap_or(added);
            if column.contains("NOT NULL") && !column.contains("DEFAULT") {
                found.push(format!("NOT NULL without DEFAULT: {column}"));
            }
        }
    }
    found
}

#[test]
fn every_migration_expands_and_a_contraction_says_so() {
    // The rule itself, on what it must catch and what it must let through.
    assert!(contractions("ALTER TABLE t ADD COLUMN a TEXT; CREATE INDEX i ON t (a);").is_empty());
    assert!(
        contractions("ALTER TABLE t ADD COLUMN a TEXT NOT NULL DEFAULT '', ADD COLUMN b DATE;")
            .is_empty()
    );
    assert!(contractions("CREATE TABLE t (a TEXT NOT NULL);").is_empty());
    for bad in [
        "ALTER TABLE t DROP COLUMN a;",
        "ALTER TABLE t RENAME COLUMN a TO b;",
        "ALTER TABLE t ALTER COLUMN a TYPE BIGINT;",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
        "ALTER TABLE t ADD COLUMN b DATE, ADD COLUMN a TEXT NOT NULL;",
        "DROP TABLE t;",
    ] {
        assert!(!contractions(bad).is_empty(), "{bad}");
    }
    // Every service's migrations, PostgreSQL and SQLite.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("services");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for service in std::fs::read_dir(&root).unwrap() {
        for backend in ["postgres", "sqlite"] {
            let dir = service
                .as_ref()
                .unwrap()
                .path()
                .join("migrations")
                .join(backend);
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                let found = contractions(&std::fs::read_to_string(&path).unwrap());
                checked += 1;
                if !found.is_empty() && !name.contains("_contract_") {
                    wrong.push(format!("{}: {found:?}", path.display()));
                }
            }
        }
    }
    assert!(checked > 20, "the migrations were found ({checked})");
    assert!(
        wrong.is_empty(),
        "contractions in expanding migrations: {wrong:#?}"
    );
}

/// Filings per channel in the four-channel run.
const PER_CHANNEL: usize = 1250;

/// Postal dossiers as the postal service publishes them, `n` of them.
fn postal_dossiers(n: usize) -> Vec<(String, guichet_kit::bus::OutgoingMessage)> {
    use guichet_dossier::filing::RawProvenance;
    use guichet_dossier::{Channel, Dossier, Filing, RawFiling, Reference};
    let bodies = common::example_filings();
    let today = paris_date(Utc::now());
    (0..n)
        .map(|i| {
            let mut raw: RawFiling = serde_json::from_value(bodies[i % bodies.len()].1.clone())
                .expect("an example filing");
            raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
            let provenance = RawProvenance::Postal {
                station_id: Some("station-59-1".into()),
                envelope_id: Some(uuid::Uuid::new_v4().to_string()),
                postmark_date: Some((today - Days::new(2)).to_string()),
                reception_date: Some(today.to_string()),
            };
            let filing = Filing::parse(&raw, &provenance, today).expect("a postal filing");
            let now = Utc::now();
            let reference = Reference::generate(Channel::Postal, 2026, &mut rand::rng());
            let dossier = Dossier::new(reference.clone(), filing, now, now);
            (
                reference.to_string(),
                guichet_intake::ledger::dossier_message(&dossier),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whole_meshes_filing_on_the_four_channels_with_an_instruction_killed_lose_and_double_nothing()
 {
    use crate::channels::{lille, wire_filing};
    use guichet_proto::v1 as pb;
    use guichet_proto::v1::call_centre_client::CallCentreClient;
    use guichet_proto::v1::desk_client::DeskClient;

    let env = postgres_env().await;
    let config = env.config();
    // Every service twice (two gateways, two of each intake, two
    // instructions, two notifiers), on one database and one vhost; and a
    // third instruction, a process of its own, killed mid-run.
    let apps = [
        common::App::start(&config).await,
        common::App::start(&config).await,
    ];
    DeskClient::new(apps[0].grpc_as(common::PREFECTURE_AGENT).await)
        .upsert_site(lille(4, 1))
        .await
        .unwrap();
    let instruction = env.db("instruction").await;
    let mut third = spawn_instruction(&env, 64);
    three_instruction_consumers(&env, &apps[0].http).await;

    let bodies: Vec<serde_json::Value> = common::example_filings()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    // Each channel's filings, half through each mesh.
    let web = async {
        let (a, b) = tokio::join!(
            file_all_answered(
                &apps[0].http,
                &apps[0].base,
                keys("web-a", PER_CHANNEL / 2),
                8
            ),
            file_all_answered(
                &apps[1].http,
                &apps[1].base,
                keys("web-b", PER_CHANNEL / 2),
                8
            ),
        );
        let mut answers = a;
        answers.extend(b);
        assert_eq!(statuses(&answers), BTreeMap::from([(201, PER_CHANNEL)]));
        accepted_references(&answers)
    };
    let on_behalf = async {
        let clients = [
            CallCentreClient::new(apps[0].grpc_as(common::PREFECTURE_AGENT).await),
            CallCentreClient::new(apps[1].grpc_as(common::PREFECTURE_AGENT).await),
        ];
        filed_by(PER_CHANNEL, |i| {
            let mut client = clients[i % 2].clone();
            let request = pb::FileOnBehalfRequest {
                filing: Some(wire_filing(&bodies[i % bodies.len()])),
                agent_id: "ccc-agent-7".into(),
                call_id: format!("call-{i}"),
                consent_recorded: true,
            };
            async move {
                let answer = client.file_on_behalf(request).await;
                let answer = answer.unwrap_or_else(|e| panic!("call-centre filing {i}: {e}"));
                answer.into_inner().receipt.unwrap().reference
            }
        })
        .await
    };
    let at_the_desk = async {
        let clients = [
            DeskClient::new(apps[0].grpc_as(common::PREFECTURE_AGENT).await),
            DeskClient::new(apps[1].grpc_as(common::PREFECTURE_AGENT).await),
        ];
        filed_by(PER_CHANNEL, |i| {
            let mut client = clients[i % 2].clone();
            let request = pb::FileAssistedRequest {
                filing: Some(wire_filing(&bodies[i % bodies.len()])),
                site_id: "59-lille".into(),
                desk_agent_id: "pan-agent-2".into(),
                appointment_id: String::new(),
                identity_checked: true,
            };
            async move {
                let answer = client.file_assisted(request).await;
                let answer = answer.unwrap_or_else(|e| panic!("desk filing {i}: {e}"));
                answer.into_inner().receipt.unwrap().reference
            }
        })
        .await
    };
    let by_post = async {
        let dossiers = postal_dossiers(PER_CHANNEL);
        for (n, chunk) in dossiers.chunks(50).enumerate() {
            let messages: Vec<_> = chunk.iter().map(|(_, m)| m.clone()).collect();
            for r in apps[n % 2].postal_bus.publish(&messages).await {
                r.unwrap();
            }
        }
        dossiers
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<String>>()
    };
    let killer = async {
        eventually(DRAIN, "the instances to get going", || async {
            (count(&instruction, "SELECT count(*) FROM dossiers").await
                >= (4 * PER_CHANNEL / 5) as i64)
                .then_some(())
        })
        .await;
        third.kill();
        count(&instruction, "SELECT count(*) FROM dossiers").await
    };
    let (web, on_behalf, at_the_desk, by_post, killed_at) =
        tokio::join!(web, on_behalf, at_the_desk, by_post, killer);
    eprintln!(
        "instances: four channels, the third instruction SIGKILLed with {killed_at} recorded"
    );

    let mut accepted = web;
    for (channel, references) in [
        ("call centre", on_behalf),
        ("desk", at_the_desk),
        ("post", by_post),
    ] {
        assert_eq!(references.len(), PER_CHANNEL, "{channel}");
        accepted.extend(references);
    }
    assert_eq!(accepted.len(), 4 * PER_CHANNEL, "every reference distinct");
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once(
        "two of every service, four channels, a third instruction killed",
        &tally,
    );
    let by_channel: Vec<(String, i64)> =
        sqlx::query_as("SELECT channel, count(*) FROM dossiers GROUP BY channel ORDER BY channel")
            .fetch_all(instruction.postgres().unwrap())
            .await
            .unwrap();
    eprintln!("instances: recorded by channel {by_channel:?}");
    assert_eq!(by_channel.len(), 4, "{by_channel:?}");
    assert!(
        by_channel.iter().all(|(_, n)| *n == PER_CHANNEL as i64),
        "{by_channel:?}"
    );
    instruction.close().await;
    let [first, second] = apps;
    first.stop().await;
    second.stop().await;
    env.cleanup().await;
}
