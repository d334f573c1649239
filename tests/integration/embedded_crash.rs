//! The embedded default survives `kill -9`: every filing accepted before the
//! crash is in instruction after a restart, exactly once.

use crate::common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{count, eventually, example};
use futures_util::StreamExt;
use guichet_kit::db::Database;

const BURST: usize = 5000;
const KILL_AFTER: usize = 400;

fn start(data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("up")
        .env_remove("GUICHET_DATABASE_URL")
        .env_remove("GUICHET_AMQP_URL")
        .env("GUICHET_DATA_DIR", data_dir)
        .env("GUICHET_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start guichet up")
}

async fn ready(http: &reqwest::Client, base: &str) {
    eventually(
        Duration::from_secs(60),
        "guichet up to be ready",
        || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
}

async fn sqlite(path: std::path::PathBuf) -> Database {
    Database::Sqlite(guichet_kit::db::sqlite_pool(&path, 1).await.unwrap())
}

async fn references(db: &Database, sql: &str) -> BTreeSet<String> {
    let Database::Sqlite(pool) = db else {
        unreachable!("the embedded default runs on SQLite")
    };
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Files filings `0..BURST`, 32 at a time; returns the references answered 201.
async fn burst(http: reqwest::Client, base: String, answered: Arc<AtomicUsize>) -> Vec<String> {
    let body = example("renewal-employee.json");
    futures_util::stream::iter(0..BURST)
        .map(|i| {
            let (http, base, body, answered) =
                (http.clone(), base.clone(), body.clone(), answered.clone());
            async move {
                let r = http
                    .post(format!("{base}/api/v1/dossiers"))
                    .header("Idempotency-Key", format!("burst-{i}"))
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                if r.status() != 201 {
                    return None;
                }
                let v: serde_json::Value = r.json().await.ok()?;
                answered.fetch_add(1, Ordering::SeqCst);
                Some(v["reference"].as_str()?.to_string())
            }
        })
        .buffer_unordered(32)
        .filter_map(|r| async move { r })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filing_accepted_before_a_kill_9_is_in_instruction_once_after_restart() {
    let data_dir =
        std::env::temp_dir().join(format!("guichet_crash_{}", uuid::Uuid::new_v4().simple()));
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut guichet = start(&data_dir, port);
    ready(&http, &base).await;

    // SIGKILL in the middle of a burst: no chance to drain anything. What got
    // a 201 was accepted; what the kill cut off got an error and is owed
    // nothing (though intake may have committed it just before).
    let answered = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(burst(http.clone(), base.clone(), answered.clone()));
    eventually(Duration::from_secs(120), "filings to be accepted", || {
        let answered = answered.clone();
        async move { (answered.load(Ordering::SeqCst) >= KILL_AFTER).then_some(()) }
    })
    .await;
    guichet.kill().unwrap();
    guichet.wait().unwrap();
    let accepted: BTreeSet<String> = sending.await.unwrap().into_iter().collect();
    assert!(accepted.len() >= KILL_AFTER, "{} accepted", accepted.len());
    assert!(
        accepted.len() < BURST,
        "the kill came before the burst ended"
    );

    let committed = {
        let intake = sqlite(data_dir.join("intake_web.sqlite")).await;
        let instruction = sqlite(data_dir.join("instruction.sqlite")).await;
        let bus = sqlite(data_dir.join("bus.sqlite")).await;
        let committed = references(&intake, "SELECT reference FROM filings").await;
        eprintln!(
            "at the kill: {} accepted, {} committed by intake, {} recorded in instruction, \
             {} unsent in the outbox, {} on the bus",
            accepted.len(),
            committed.len(),
            count(&instruction, "SELECT count(*) FROM dossiers").await,
            count(&intake, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await,
            count(&bus, "SELECT count(*) FROM bus_messages").await,
        );
        for db in [intake, instruction, bus] {
            db.close().await;
        }
        committed
    };
    assert!(
        accepted.is_subset(&committed),
        "intake lost an accepted filing"
    );

    let mut guichet = start(&data_dir, port);
    ready(&http, &base).await;
    let instruction = sqlite(data_dir.join("instruction.sqlite")).await;
    let intake = sqlite(data_dir.join("intake_web.sqlite")).await;
    eventually(
        Duration::from_secs(60),
        "every committed filing in instruction",
        || {
            let db = instruction.clone();
            let n = committed.len() as i64;
            async move { (count(&db, "SELECT count(*) FROM dossiers").await == n).then_some(()) }
        },
    )
    .await;
    let recorded = references(&instruction, "SELECT reference FROM dossiers").await;
    assert_eq!(recorded, committed, "nothing lost");
    assert!(accepted.is_subset(&recorded));
    assert_eq!(
        count(
            &instruction,
            "SELECT count(*) FROM dossier_events WHERE kind = 'filed'"
        )
        .await,
        committed.len() as i64,
        "nothing doubled"
    );
    eventually(Duration::from_secs(30), "the outbox drained", || {
        let db = intake.clone();
        async move {
            (count(&db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0)
                .then_some(())
        }
    })
    .await;

    guichet.kill().unwrap();
    guichet.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}
