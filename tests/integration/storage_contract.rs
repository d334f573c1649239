//! The storage contract of the kit's outbox and inbox, one suite run on both
//! databases: PostgreSQL (a database of its own per test) and SQLite (a file).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, TestEnv, count};
use futures_util::StreamExt;
use guichet_kit::bus::{DOSSIERS_EXCHANGE, INSTRUCTION_QUEUE, OutgoingMessage};
use guichet_kit::db::{Database, Migrations};
use guichet_kit::outbox::{self, OutboxRelay};
use guichet_kit::{inbox, telemetry};

static KIT_ONLY: Migrations = Migrations {
    postgres: &[],
    sqlite: &[],
};

async fn database(env: &TestEnv) -> Database {
    Database::open(
        env.database_url.as_deref(),
        &env.data_dir,
        "contract",
        guichet_kit::db::Pool::sized(2),
        &KIT_ONLY,
    )
    .await
    .unwrap()
}

fn message(id: &str, routing_key: &str) -> OutgoingMessage {
    let span = tracing::info_span!("filing");
    OutgoingMessage {
        message_id: id.into(),
        exchange: DOSSIERS_EXCHANGE.into(),
        routing_key: routing_key.into(),
        headers: telemetry::inject(&span)
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        body: id.as_bytes().to_vec(),
    }
}

/// Enqueues in a transaction, then commits it or rolls it back.
async fn enqueue(db: &Database, m: &OutgoingMessage, commit: bool) {
    match db {
        Database::Postgres(p, _) => {
            let mut tx = p.begin().await.unwrap();
            outbox::enqueue_postgres(&mut tx, m).await.unwrap();
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
        }
        Database::Sqlite(p) => {
            let mut tx = p.begin().await.unwrap();
            outbox::enqueue_sqlite(&mut tx, m).await.unwrap();
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
        }
    }
}

on_both_backends!(an_outbox_row_lives_and_dies_with_its_transaction);
async fn an_outbox_row_lives_and_dies_with_its_transaction(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let db = database(&env).await;
    enqueue(&db, &message("rolled-back", "dossier.submitted.web"), false).await;
    assert_eq!(outbox::backlog(&db).await.unwrap(), 0);
    enqueue(&db, &message("committed", "dossier.submitted.web"), true).await;
    assert_eq!(outbox::backlog(&db).await.unwrap(), 1);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(the_relay_marks_sent_only_what_the_bus_confirmed);
async fn the_relay_marks_sent_only_what_the_bus_confirmed(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let db = database(&env).await;
    let bus = env.open_bus().await;
    bus.ensure_ready().await.unwrap();
    let good = message("good-1", "dossier.submitted.postal");
    enqueue(&db, &good, true).await;
    enqueue(&db, &message("nowhere-1", "no.route.here"), true).await;

    let relay = OutboxRelay::new(db.clone(), bus.clone(), 100);
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.failed), (1, 1), "{outcome:?}");
    assert_eq!(
        outbox::backlog(&db).await.unwrap(),
        1,
        "the unroutable row waits"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM outbox WHERE message_id = 'nowhere-1' AND attempts = 1 AND last_error IS NOT NULL").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE message_id = 'good-1' AND sent_at IS NOT NULL"
        )
        .await,
        1
    );

    let mut stream = bus
        .consume(INSTRUCTION_QUEUE, "contract", 10)
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message_id.as_deref(), Some("good-1"));
    assert_eq!(d.body, good.body);
    // The relay publishes under its own producer span, in the writer's trace.
    let sent_trace = &d.headers["traceparent"];
    let written_trace = &good.headers["traceparent"];
    assert_eq!(sent_trace[3..35], written_trace[3..35], "same trace id");
    assert_ne!(
        sent_trace[36..52],
        written_trace[36..52],
        "a producer span of its own"
    );
    d.ack().await.unwrap();

    // A second round publishes nothing new.
    let again = relay.relay_once().await.unwrap();
    assert_eq!(again.sent, 0);
    bus.close().await;
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(the_inbox_claims_each_message_id_once);
async fn the_inbox_claims_each_message_id_once(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let db = database(&env).await;
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let claim = |batch: Vec<String>| {
        let db = db.clone();
        async move {
            let mut claimed: Vec<String> = match &db {
                Database::Postgres(p, _) => {
                    let mut tx = p.begin().await.unwrap();
                    let c = inbox::claim_postgres(&mut tx, &batch).await.unwrap();
                    tx.commit().await.unwrap();
                    c
                }
                Database::Sqlite(p) => {
                    let mut tx = p.begin().await.unwrap();
                    let c = inbox::claim_sqlite(&mut tx, &batch).await.unwrap();
                    tx.commit().await.unwrap();
                    c
                }
            }
            .into_iter()
            .collect();
            claimed.sort();
            claimed
        }
    };
    assert_eq!(claim(ids(&["a", "b"])).await, ids(&["a", "b"]));
    assert_eq!(claim(ids(&["b", "c"])).await, ids(&["c"]));
    assert_eq!(claim(ids(&["a", "b", "c"])).await, Vec::<String>::new());
    db.close().await;
    env.cleanup().await;
}
