//! Faults, against the real RabbitMQ and PostgreSQL: the broker going away
//! under load, the consumer killed mid-batch, the instruction database cut,
//! poison messages, and intake without its database. Each test has its own
//! vhost and database, and every fault is made inside them only (the servers
//! are shared): connections of this vhost closed through the management API,
//! a TCP proxy cut, backends of this database terminated. Counts are exact:
//! lost = 0 and doubled = 0, every time.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Services, TestEnv, count, eventually, example_filings, proxy::Proxy, rabbitmq_api};
use futures_util::StreamExt;
use guichet_kit::bus::{AmqpBus, SharedBus};
use guichet_kit::db::Database;
use serde_json::Value;

/// Generous: these bound a hang, they do not measure speed.
pub(crate) const DRAIN: Duration = Duration::from_secs(240);
/// A drain that makes no progress for this long has stalled: a defect.
/// One that progresses slowly (the machine busy with other tests) is not.
const STALL: Duration = Duration::from_secs(120);

/// Waits until `remaining` reaches 0, failing only when it stops going
/// down for `STALL`: a bound on a hang, not on the machine's speed.
pub(crate) async fn until_drained<F, Fut>(what: &str, mut remaining: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut least = i64::MAX;
    let mut moved = tokio::time::Instant::now();
    loop {
        let left = remaining().await;
        if left <= 0 {
            return;
        }
        if left < least {
            least = left;
            moved = tokio::time::Instant::now();
        } else if moved.elapsed() > STALL {
            panic!("{what}: stalled with {left} left for {STALL:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- the pieces every fault test uses ----------------------------------------

/// What the person got back for one filing.
pub(crate) struct Answer {
    key: String,
    status: u16,
    reference: Option<String>,
    retry_after: Option<String>,
    /// The saved receipt of an earlier request with the same key.
    replayed: bool,
    body: Value,
}

/// Files `keys` through the gateway, `concurrency` at a time; every answer is
/// kept. Each key always goes with the same example filing (chosen by the
/// number it ends with), so filing a key again is the same filing again.
pub(crate) async fn file_all(
    http: &reqwest::Client,
    base: &str,
    keys: Vec<String>,
    concurrency: usize,
) -> Vec<Answer> {
    let bodies: Vec<Value> = example_filings().into_iter().map(|(_, b)| b).collect();
    futures_util::stream::iter(keys)
        .map(|key| {
            let http = http.clone();
            let url = format!("{base}/api/v1/dossiers");
            let n: usize = key
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = bodies[n % bodies.len()].clone();
            async move { file_one(&http, &url, &body, key).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn file_one(http: &reqwest::Client, url: &str, body: &Value, key: String) -> Answer {
    let response = match http
        .post(url)
        .header("Idempotency-Key", &key)
        .json(body)
        .send()
        .await
    {
        Ok(r) => r,
        // No answer at all counts as an error for the person: status 0.
        Err(e) => {
            return Answer {
                key,
                status: 0,
                reference: None,
                retry_after: None,
                replayed: false,
                body: Value::String(e.to_string()),
            };
        }
    };
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let reference = (status == 201)
        .then(|| body["reference"].as_str().map(str::to_string))
        .flatten();
    Answer {
        key,
        status,
        reference,
        retry_after,
        replayed,
        body,
    }
}

/// `file_all`, where a filing that got no answer at all (the connection
/// failed, status 0) is filed again with the same key, as its filer would:
/// the key makes a second try of an accepted filing return the same receipt.
pub(crate) async fn file_all_answered(
    http: &reqwest::Client,
    base: &str,
    keys: Vec<String>,
    concurrency: usize,
) -> Vec<Answer> {
    let mut answers = file_all(http, base, keys, concurrency).await;
    for _ in 0..3 {
        let (unanswered, answered): (Vec<Answer>, Vec<Answer>) =
            answers.into_iter().partition(|a| a.status == 0);
        answers = answered;
        if unanswered.is_empty() {
            break;
        }
        for a in &unanswered {
            eprintln!("no answer for {}, filed again: {}", a.key, a.body);
        }
        let again = unanswered.into_iter().map(|a| a.key).collect();
        answers.extend(file_all(http, base, again, concurrency).await);
    }
    answers
}

pub(crate) fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The counts the README reports for each fault.
#[derive(Debug)]
pub(crate) struct Tally {
    accepted: usize,
    delivered: usize,
    lost: usize,
    doubled: usize,
}

/// Waits until instruction holds every accepted reference, then counts:
/// lost is accepted and not in instruction, doubled is recorded more than once.
pub(crate) async fn tally(instruction: &Database, accepted: &BTreeSet<String>) -> Tally {
    let n = accepted.len() as i64;
    until_drained("every accepted filing in instruction", || async {
        n - count(instruction, "SELECT count(*) FROM dossiers").await
    })
    .await;
    let pool = instruction.postgres().unwrap();
    let recorded: Vec<String> = sqlx::query_scalar("SELECT reference FROM dossiers")
        .fetch_all(pool)
        .await
        .unwrap();
    let filed: Vec<String> =
        sqlx::query_scalar("SELECT reference FROM dossier_events WHERE kind = 'filed'")
            .fetch_all(pool)
            .await
            .unwrap();
    let recorded_set: BTreeSet<String> = recorded.iter().cloned().collect();
    let filed_set: BTreeSet<String> = filed.iter().cloned().collect();
    let tally = Tally {
        accepted: accepted.len(),
        delivered: recorded_set.intersection(accepted).count(),
        lost: accepted.difference(&recorded_set).count(),
        doubled: (recorded.len() - recorded_set.len()) + (filed.len() - filed_set.len()),
    };
    assert_eq!(
        recorded_set, filed_set,
        "every dossier has its one 'filed' event"
    );
    tally
}

pub(crate) fn assert_exactly_once(fault: &str, tally: &Tally) {
    eprintln!(
        "reliability: {fault}: accepted {}, delivered {}, lost {}, doubled {}",
        tally.accepted, tally.delivered, tally.lost, tally.doubled
    );
    assert_eq!(tally.lost, 0, "{fault}: lost");
    assert_eq!(tally.doubled, 0, "{fault}: doubled");
    assert_eq!(tally.delivered, tally.accepted, "{fault}: delivered");
}

/// Nothing left to publish in intake's outbox.
pub(crate) async fn outbox_drained(db: &Database) {
    until_drained("intake's outbox drained", || async {
        count(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await
    })
    .await;
}

/// Closes every connection of `vhost` on the broker, as a broker restart
/// would; returns how many were closed.
async fn close_connections(http: &reqwest::Client, vhost: &str) -> usize {
    let api = rabbitmq_api();
    let Ok(r) = http
        .get(format!("{api}/api/vhosts/{vhost}/connections"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
    else {
        return 0;
    };
    let connections: Vec<Value> = r.json().await.unwrap_or_default();
    let mut closed = 0;
    for c in connections {
        let Some(name) = c["name"].as_str() else {
            continue;
        };
        let mut url = reqwest::Url::parse(&api).unwrap();
        url.path_segments_mut()
            .unwrap()
            .extend(["api", "connections", name]);
        let done = http
            .delete(url)
            .basic_auth("guest", Some("guest"))
            .header("X-Reason", "guichet fault test: broker going away")
            .send()
            .await;
        if done.is_ok_and(|r| r.status().is_success()) {
            closed += 1;
        }
    }
    closed
}

pub(crate) fn accepted_references(answers: &[Answer]) -> BTreeSet<String> {
    answers.iter().filter_map(|a| a.reference.clone()).collect()
}

pub(crate) fn statuses(answers: &[Answer]) -> BTreeMap<u16, usize> {
    let mut by = BTreeMap::new();
    for a in answers {
        *by.entry(a.status).or_insert(0) += 1;
    }
    by
}

// ---- 1. RabbitMQ goes away under load -------------------------------------------

const BROKER_LOAD: usize = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_going_away_under_5000_filings_loses_and_doubles_nothing() {
    let env = TestEnv::new().await;
    // Both services reach the broker through a proxy that the test cuts (the
    // broker unreachable for a while) and, in between, the broker itself
    // closes their connections (what a restart does to clients).
    let proxy = Proxy::to_broker().await;
    let url = proxy.amqp_url(&env);
    let mut config = env.config();
    config.amqp_url = Some(url.clone());
    let intake_bus: SharedBus = Arc::new(AmqpBus::new(&url, "intake-web", config.delivery_limit));
    let instruction_bus: SharedBus =
        Arc::new(AmqpBus::new(&url, "instruction", config.delivery_limit));
    let services =
        Services::start((&config, intake_bus), (&config, instruction_bus), &config).await;

    let loaded = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (loaded, vhost) = (loaded.clone(), env.name.clone());
        let proxy = Arc::new(proxy);
        let p = proxy.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut closed, mut cuts, mut round) = (0, 0, 0);
            // On until the load is in and each fault happened at least once,
            // but not forever: the test then fails on the counts.
            while (closed == 0 || cuts == 0 || !loaded.load(Ordering::SeqCst)) && round < 400 {
                // The management API lists a connection only once the
                // broker has emitted its stats (every few seconds), so most
                // rounds look for connections to close, and every twentieth
                // cuts the proxy for a while instead.
                if round % 20 == 19 {
                    p.cut().await;
                    cuts += 1;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    p.restore();
                } else {
                    closed += close_connections(&http, &vhost).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                round += 1;
            }
            (closed, cuts)
        });
        (task, proxy)
    };

    let answers = file_all(
        &services.http,
        &services.base,
        keys("broker", BROKER_LOAD),
        32,
    )
    .await;
    loaded.store(true, Ordering::SeqCst);
    let (closed, cuts) = chaos.0.await.unwrap();
    eprintln!("broker fault: {closed} connections closed by the broker, {cuts} proxy cuts");
    assert!(closed > 0 && cuts > 0, "the faults happened");

    // The person never saw the broker's trouble.
    assert_eq!(statuses(&answers), BTreeMap::from([(201, BROKER_LOAD)]));
    let accepted = accepted_references(&answers);
    assert_eq!(accepted.len(), BROKER_LOAD);

    let instruction = env.db("instruction").await;
    let intake = env.db("intake_web").await;
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once("rabbitmq going away", &tally);
    outbox_drained(&intake).await;
    assert_eq!(
        count(&intake, "SELECT count(*) FROM filings").await,
        BROKER_LOAD as i64
    );

    services.stop().await;
    drop(chaos.1);
    env.cleanup().await;
}

/// A broker that stops answering without closing anything (a network that
/// drops packets) costs each caller a bounded wait, never a hang: the method
/// goes unanswered, the link is dropped, and the next call connects anew.
/// lapin leaves a method sent as its connection's I/O loop exits waiting
/// for ever, which once stopped instruction's consumer for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_costs_a_bounded_wait_and_a_new_connection() {
    use guichet_kit::bus::{Bus, BusError, INSTRUCTION_QUEUE};

    let env = TestEnv::new().await;
    let proxy = Proxy::to_broker().await;
    let bus = AmqpBus::new(&proxy.amqp_url(&env), "frozen", env.config().delivery_limit)
        .with_rpc_timeout(Duration::from_secs(1));
    assert_eq!(bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 0);

    proxy.freeze();
    // The bound is on a hang, far above the one-second timeout.
    let unanswered =
        tokio::time::timeout(Duration::from_secs(60), bus.queue_depth(INSTRUCTION_QUEUE))
            .await
            .expect("an unanswered method ends with an error, not a hang");
    assert!(
        matches!(
            unanswered,
            Err(BusError::NoAnswer {
                operation: "create channel"
            })
        ),
        "{unanswered:?}"
    );
    assert!(!bus.is_connected().await, "the silent link is dropped");

    proxy.thaw();
    assert_eq!(bus.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 0);
    assert!(bus.is_connected().await, "a new link");
    bus.close().await;
    env.cleanup().await;
}

// ---- 2. the consumer killed mid-batch -------------------------------------------

const KILL_LOAD: usize = 2000;

/// A child process that is killed when the test lets go of it, even by a
/// failed assertion: no stray consumer outlives its test.
pub(crate) struct Process(Child);

impl Process {
    /// SIGKILL: no drain, no goodbye to the broker.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `guichet serve instruction` as its own process, on this test's database and vhost.
pub(crate) fn spawn_instruction(env: &TestEnv, prefetch: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["serve", "instruction"])
        .env("GUICHET_DATABASE_URL", env.database_url.as_deref().unwrap())
        .env("GUICHET_AMQP_URL", env.amqp_url.as_deref().unwrap())
        .env(
            "GUICHET_INSTRUCTION_ADDR",
            format!("127.0.0.1:{}", common::free_port()),
        )
        // Its own /metrics port: tests that spawn one run side by side.
        .env(
            "GUICHET_METRICS_ADDR",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env(
            "GUICHET_DELIVERY_LIMIT",
            env.config().delivery_limit.to_string(),
        )
        .env("GUICHET_CONSUMER_PREFETCH", prefetch.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start guichet serve instruction");
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instruction_consumer_killed_mid_batch_records_each_filing_once() {
    let env = TestEnv::new().await;
    let config = env.config();
    // Intake and the gateway here; instruction is a separate process, started
    // once the queue holds the whole load so that it is killed while busy.
    let app = common::App::builder(&config)
        .only(&["gateway", "intake-web"])
        .start()
        .await;
    let bus = app.mesh.bus.clone();
    let answers = file_all(&app.http, &app.base, keys("kill", KILL_LOAD), 32).await;
    assert_eq!(statuses(&answers), BTreeMap::from([(201, KILL_LOAD)]));
    let accepted = accepted_references(&answers);
    let intake_db = env.db("intake_web").await;
    outbox_drained(&intake_db).await;
    assert_eq!(
        bus.queue_depth(guichet_kit::bus::INSTRUCTION_QUEUE)
            .await
            .unwrap(),
        KILL_LOAD as u32
    );

    // SIGKILL three times while it consumes, each time after more is in: no
    // drain, no goodbye to the broker; whatever it held unacked comes back.
    let instruction = env.db("instruction").await;
    // Zero until the first process has created its tables.
    let dossiers = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dossiers")
            .fetch_one(instruction.postgres().unwrap())
            .await
            .unwrap_or(0)
    };
    let mut kills = Vec::new();
    for step in 1..=3 {
        let mut consumer = spawn_instruction(&env, 64);
        let target = (KILL_LOAD * step / 4) as i64;
        eventually(DRAIN, "the consumer to get going", || async {
            (dossiers().await >= target).then_some(())
        })
        .await;
        consumer.kill();
        kills.push(dossiers().await);
    }
    eprintln!("consumer killed with {kills:?} dossiers recorded");
    assert!(
        kills.iter().all(|&n| n < KILL_LOAD as i64),
        "every kill came before the end: {kills:?}"
    );

    let mut consumer = spawn_instruction(&env, 64);
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once("consumer killed mid-batch (3 times)", &tally);
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM inbox").await,
        KILL_LOAD as i64,
        "one inbox claim per message"
    );
    consumer.kill();

    common::stop(app, env).await;
}

// ---- 3. the instruction database cut under load ---------------------------------

const DB_CUT_LOAD: usize = 1500;

/// Terminates the backends instruction holds in this test's database only;
/// returns how many.
async fn terminate_instruction_backends(admin: &sqlx::PgPool, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .bind(guichet_kit::db::application_name(
        guichet_instruction::server::SCHEMA,
    ))
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruction_recovers_by_itself_when_its_database_connections_are_cut() {
    let env = TestEnv::new().await;
    let config = env.config();
    let services = Services::start(
        (&config, Arc::new(env.amqp_bus())),
        (&config, Arc::new(env.amqp_bus())),
        &config,
    )
    .await;
    let admin = sqlx::PgPool::connect(&common::database_admin_url())
        .await
        .unwrap();

    let loaded = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicUsize::new(0));
    let cutter = {
        let (loaded, terminated, name) = (loaded.clone(), terminated.clone(), env.name.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while rounds < 2 || !loaded.load(Ordering::SeqCst) {
                let n = terminate_instruction_backends(&admin, &name).await;
                terminated.fetch_add(n as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(250)).await;
                rounds += 1;
            }
        })
    };
    let answers = file_all(
        &services.http,
        &services.base,
        keys("pgcut", DB_CUT_LOAD),
        32,
    )
    .await;
    loaded.store(true, Ordering::SeqCst);
    cutter.await.unwrap();
    let terminated = terminated.load(Ordering::SeqCst);
    eprintln!("instruction database fault: {terminated} backends terminated");
    assert!(terminated > 0, "the fault happened");

    assert_eq!(statuses(&answers), BTreeMap::from([(201, DB_CUT_LOAD)]));
    let accepted = accepted_references(&answers);
    let instruction = env.db("instruction").await;
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once("instruction database connections cut", &tally);

    services.stop().await;
    env.cleanup().await;
}

// ---- 5. intake without its database ----------------------------------------------

const INTAKE_LOAD: usize = 1000;

/// A 503 the person can act on: `Retry-After` and the JSON error body.
fn assert_clear_503(a: &Answer) {
    assert_eq!(a.status, 503, "{}: {} {}", a.key, a.status, a.body);
    assert!(
        a.retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u32>().is_ok()),
        "{}: Retry-After {:?}",
        a.key,
        a.retry_after
    );
    let problem = a.body["errors"][0]["problem"].as_str().unwrap_or("");
    assert!(!problem.is_empty(), "{}: JSON error body {}", a.key, a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_without_its_database_answers_503_and_never_half_records_a_filing() {
    let env = TestEnv::new().await;
    let proxy = Proxy::to_database().await;
    let mut intake_config = env.config();
    intake_config.database_url = Some(proxy.database_url(&env));
    let config = env.config();
    let services = Services::start(
        (&intake_config, Arc::new(env.amqp_bus())),
        (&config, Arc::new(env.amqp_bus())),
        &config,
    )
    .await;
    let all = keys("intake-db", INTAKE_LOAD);

    // A third goes in; then the database becomes unreachable in the middle of
    // the next third (the proxy cut: open connections die, new ones fail);
    // then it refuses connections outright (ALTER DATABASE), for the last.
    let first = file_all(&services.http, &services.base, all[..333].to_vec(), 16).await;
    assert_eq!(statuses(&first), BTreeMap::from([(201, 333)]));
    let second = {
        let load = file_all(&services.http, &services.base, all[333..666].to_vec(), 16);
        let cut = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            proxy.cut().await;
        };
        let (answers, ()) = tokio::join!(load, cut);
        answers
    };
    proxy.restore();
    let admin = sqlx::PgPool::connect(&common::database_admin_url())
        .await
        .unwrap();
    let name = &env.name;
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&admin)
        .await
        .unwrap();
    let third = file_all(&services.http, &services.base, all[666..].to_vec(), 16).await;
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();

    // Never a 500: either the receipt, or a clear 503 to come back later.
    let mut refused = Vec::new();
    for a in second.iter().chain(&third) {
        if a.status != 201 {
            assert_clear_503(a);
            refused.push(a.key.clone());
        }
    }
    eprintln!(
        "intake database fault: cut {:?}, refused connections {:?}",
        statuses(&second),
        statuses(&third)
    );
    assert!(
        third.iter().all(|a| a.status == 503),
        "no filing recorded while the database refuses connections"
    );

    // Not one filing half-recorded: every receipt has its outbox row, every
    // outbox row its receipt.
    let intake = env.db("intake_web").await;
    let orphans = "SELECT count(*) FROM filings f WHERE NOT EXISTS \
        (SELECT 1 FROM outbox o WHERE o.headers->>'x-guichet-reference' = f.reference)";
    let strays = "SELECT count(*) FROM outbox o WHERE NOT EXISTS \
        (SELECT 1 FROM filings f WHERE o.headers->>'x-guichet-reference' = f.reference)";
    assert_eq!(
        count(&intake, orphans).await,
        0,
        "a receipt without its outbox row"
    );
    assert_eq!(
        count(&intake, strays).await,
        0,
        "an outbox row without its receipt"
    );
    assert_eq!(
        count(&intake, "SELECT count(*) FROM filings").await,
        count(&intake, "SELECT count(*) FROM outbox").await
    );

    // The people told to come back do, with the same key: each gets one
    // receipt, and each filing reaches instruction once.
    let retried = file_all(&services.http, &services.base, refused.clone(), 16).await;
    assert_eq!(statuses(&retried), BTreeMap::from([(201, refused.len())]));
    // A 503 can come after the commit went through (the answer was lost with
    // the connection): the retry then gets the saved receipt.
    eprintln!(
        "intake database fault: {} filed again, {} of them already recorded before their 503",
        retried.len(),
        retried.iter().filter(|a| a.replayed).count()
    );
    let answers: Vec<Answer> = first
        .into_iter()
        .chain(second)
        .chain(third)
        .chain(retried)
        .collect();
    let accepted = accepted_references(&answers);
    assert_eq!(accepted.len(), INTAKE_LOAD, "one receipt per key");
    assert_eq!(
        count(&intake, "SELECT count(*) FROM filings").await,
        INTAKE_LOAD as i64
    );
    assert_eq!(count(&intake, orphans).await, 0);
    let instruction = env.db("instruction").await;
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once("intake database gone", &tally);

    services.stop().await;
    env.cleanup().await;
}

// ---- 6. a lock held for ever, a database gone silent ------------------------------

/// A transaction of a session outside Guichet that holds `table` (an
/// operator's forgotten transaction, a migration run by hand) until
/// released.
pub(crate) struct TableLock(sqlx::PgConnection);

impl TableLock {
    pub(crate) async fn take(env: &TestEnv, table: &str) -> Self {
        use sqlx::Connection;
        let url = env.database_url.as_deref().expect("a PostgreSQL test");
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self(conn)
    }

    pub(crate) async fn release(mut self) {
        use sqlx::Connection;
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// Waits until a connection of the service of `schema` waits on a lock:
/// its statement is then under way on the server.
async fn until_waiting_on_a_lock(env: &TestEnv, schema: &str) {
    until_waiting_on_the_lock(env, schema, 1).await;
}

/// Waits until `connections` of the service of `schema` wait on a lock.
async fn until_waiting_on_the_lock(env: &TestEnv, schema: &str, connections: i64) {
    let admin = sqlx::PgPool::connect(&common::database_admin_url())
        .await
        .unwrap();
    eventually(DRAIN, &format!("{schema} waiting on the lock"), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND application_name = $2 AND wait_event_type = 'Lock'",
        )
        .bind(&env.name)
        .bind(guichet_kit::db::application_name(schema))
        .fetch_one(&admin)
        .await
        .unwrap();
        (waiting >= connections).then_some(())
    })
    .await;
    admin.close().await;
}

/// Intake with a statement bound of 1 s, and `gateway`'s configuration.
async fn with_a_short_statement_bound(
    env: &TestEnv,
    intake_database: Option<String>,
    gateway: &guichet::Settings,
) -> Services {
    let mut intake_config = env.config();
    intake_config.db_statement_timeout_ms = 1_000;
    if intake_database.is_some() {
        intake_config.database_url = intake_database;
    }
    Services::start(
        (&intake_config, Arc::new(env.amqp_bus())),
        (gateway, Arc::new(env.amqp_bus())),
        gateway,
    )
    .await
}

/// Every filing of `refused` (all answered a clear 503) filed again with its
/// key: each is accepted, and with those of `before` reaches instruction
/// exactly once.
async fn filed_again_once(
    services: &Services,
    env: &TestEnv,
    fault: &str,
    before: Vec<Answer>,
    refused: &[Answer],
) {
    for a in refused {
        assert_clear_503(a);
    }
    let keys: Vec<String> = refused.iter().map(|a| a.key.clone()).collect();
    let after = file_all(&services.http, &services.base, keys, 8).await;
    assert_eq!(statuses(&after), BTreeMap::from([(201, refused.len())]));
    let expected = before.len() + refused.len();
    let answers: Vec<Answer> = before.into_iter().chain(after).collect();
    let accepted = accepted_references(&answers);
    assert_eq!(accepted.len(), expected, "one receipt per key");
    let instruction = env.db("instruction").await;
    let tally = tally(&instruction, &accepted).await;
    assert_exactly_once(fault, &tally);
}

/// A lock held on intake's table: the filings that wait on it are cancelled
/// at intake's statement bound and answered a clear 503, long before the
/// gateway's own bound (its 504) or the person's patience; once the lock
/// goes, the same keys are filed, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filing_held_up_by_a_lock_is_refused_at_the_statement_bound_then_filed_once() {
    let env = TestEnv::new().await;
    let services = with_a_short_statement_bound(&env, None, &env.config()).await;
    let all = keys("db-lock", 40);
    let before = file_all(&services.http, &services.base, all[..8].to_vec(), 8).await;
    assert_eq!(statuses(&before), BTreeMap::from([(201, 8)]));

    let lock = TableLock::take(&env, "intake_web.filings").await;
    // All at once, as a queue forms at a counter: one statement bound for
    // the lot, where trying each alone in turn waited a bound per filing,
    // past the gateway's own (a 504).
    let during = file_all(&services.http, &services.base, all[8..].to_vec(), 32).await;
    lock.release().await;
    filed_again_once(
        &services,
        &env,
        "a lock held on intake's table",
        before,
        &during,
    )
    .await;

    services.stop().await;
    env.cleanup().await;
}

/// Intake's database falls silent while a statement is under way, its
/// connections still open (a host gone without a reset, a network dropping
/// packets): the server's statement bound acts, but its answer never comes
/// back, and sqlx alone would wait for ever. Intake's one writer gives up
/// at its answer bound (1 s of statement bound and 5 s for the answer), so
/// the filings get a clear 503 instead of the gateway's 504, and the writer
/// goes on once the database answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filing_whose_database_falls_silent_is_refused_at_the_answer_bound_then_filed_once() {
    let env = TestEnv::new().await;
    let proxy = Proxy::to_database().await;
    let mut gateway = env.config();
    // Far above intake's answer bound, and the batches queued behind it.
    gateway.request_timeout_ms = 60_000;
    let services =
        with_a_short_statement_bound(&env, Some(proxy.database_url(&env)), &gateway).await;
    let all = keys("db-silent", 40);
    let before = file_all(&services.http, &services.base, all[..8].to_vec(), 8).await;
    assert_eq!(statuses(&before), BTreeMap::from([(201, 8)]));

    // A lock holds the writer's statement on the server, so that the
    // database falls silent with the statement under way, not between two.
    let lock = TableLock::take(&env, "intake_web.filings").await;
    let during = tokio::spawn({
        let (http, base, keys) = (
            services.http.clone(),
            services.base.clone(),
            all[8..].to_vec(),
        );
        async move { file_all(&http, &base, keys, 32).await }
    });
    until_waiting_on_a_lock(&env, "intake_web").await;
    proxy.freeze();
    let during = during.await.unwrap();
    proxy.thaw();
    lock.release().await;
    filed_again_once(&services, &env, "intake's database silent", before, &during).await;

    services.stop().await;
    env.cleanup().await;
}

/// The outbox relay's database falls silent with its pick under way: the
/// round ends at the relay's answer bound (then its backoff), where it
/// waited for ever and the service published nothing more; once the
/// database answers again, the row goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_relay_whose_database_falls_silent_gives_up_at_its_answer_bound() {
    use guichet_kit::db::{Migrations, Pool};
    use guichet_kit::outbox::{self, OutboxRelay, RelayError};
    static KIT_ONLY: Migrations = Migrations {
        postgres: &[],
        sqlite: &[],
    };
    let env = TestEnv::new().await;
    let proxy = Proxy::to_database().await;
    let db = Database::open(
        Some(&proxy.database_url(&env)),
        &env.data_dir,
        "relay",
        Pool::sized(2),
        &KIT_ONLY,
    )
    .await
    .unwrap();
    let bus: SharedBus = Arc::new(env.amqp_bus());
    bus.ensure_ready().await.unwrap();
    let (_, message) = dossier_message();
    let mut tx = db.postgres().unwrap().begin().await.unwrap();
    outbox::enqueue_postgres(&mut tx, &message).await.unwrap();
    tx.commit().await.unwrap();
    // The relay waits 1 s for an answer, not the pool's 35 s.
    let pool = db.postgres().unwrap().clone();
    let db = Database::Postgres(pool, Duration::from_secs(1));
    let relay = Arc::new(OutboxRelay::new(db.clone(), bus.clone(), 10));

    // A lock holds the pick on the server, so that the database falls
    // silent with it under way (the pool's own bound covers a silence met
    // while taking a connection).
    let lock = TableLock::take(&env, "relay.outbox").await;
    let round = tokio::spawn({
        let relay = relay.clone();
        async move { relay.relay_once().await }
    });
    until_waiting_on_a_lock(&env, "relay").await;
    proxy.freeze();
    // A bound on a hang, far above the relay's 1 s: not a measure.
    let ended = tokio::time::timeout(Duration::from_secs(60), round)
        .await
        .expect("the round ends at the relay's answer bound")
        .unwrap();
    match ended {
        Err(RelayError::Db(sqlx::Error::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("the round should end unanswered: {other:?}"),
    }
    proxy.thaw();
    lock.release().await;

    eventually(DRAIN, "the row sent once the database answers", || async {
        match relay.relay_once().await {
            Ok(outcome) if outcome.sent == 1 => Some(()),
            _ => None,
        }
    })
    .await;
    assert_eq!(outbox::backlog(&db).await.unwrap(), 0);
    assert_eq!(
        bus.queue_depth("instruction.dossiers").await.unwrap(),
        1,
        "published once"
    );
    bus.close().await;
    db.close().await;
    env.cleanup().await;
}

/// A configuration whose database is reached through a new proxy (to make
/// it fall silent), with a statement bound of `statement_bound_ms`.
async fn through_a_proxy(env: &TestEnv, statement_bound_ms: u64) -> (Proxy, guichet::Settings) {
    let proxy = Proxy::to_database().await;
    let mut config = env.config();
    config.database_url = Some(proxy.database_url(env));
    config.db_statement_timeout_ms = statement_bound_ms;
    (proxy, config)
}

/// Instruction's connection falls silent for good in the middle of a batch
/// (lost without a reset), while the database itself stays fine: the
/// consumer gives up on it at its answer bound and records the batch on
/// another connection, where it waited for ever, holding every delivery in
/// hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_connection_falls_silent_records_its_batch_on_another() {
    let env = TestEnv::new().await;
    let (proxy, instruction_config) = through_a_proxy(&env, 1_000).await;
    let config = env.config();
    let services = Services::start(
        (&config, Arc::new(env.amqp_bus())),
        (&instruction_config, Arc::new(env.amqp_bus())),
        &config,
    )
    .await;
    let all = keys("consumer-silent", 16);
    let before = file_all(&services.http, &services.base, all[..8].to_vec(), 8).await;
    assert_eq!(statuses(&before), BTreeMap::from([(201, 8)]));
    let instruction = env.db("instruction").await;
    tally(&instruction, &accepted_references(&before)).await;

    // A lock holds the batch's first statement on the server, so that its
    // connection falls silent with the statement under way.
    let lock = TableLock::take(&env, "instruction.inbox").await;
    let during = file_all(&services.http, &services.base, all[8..].to_vec(), 8).await;
    assert_eq!(statuses(&during), BTreeMap::from([(201, 8)]));
    until_waiting_on_a_lock(&env, "instruction").await;
    proxy.silence_open();
    lock.release().await;

    let answers: Vec<Answer> = before.into_iter().chain(during).collect();
    let tally = tally(&instruction, &accepted_references(&answers)).await;
    assert_exactly_once("instruction's connection silent", &tally);

    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The notifier's database falls silent while its consumer records events
/// and its sender leases messages: each gives up at its answer bound and
/// goes on with a new connection, and every e-mail goes, once.
async fn a_notifier_whose_database_falls_silent_sends_every_mail_once() {
    use common::notify::{SmtpInbox, daytime_clock};
    let env = TestEnv::new().await;
    let inbox = SmtpInbox::start().await;
    // Long enough for the silence to come while the server still holds
    // the statements behind the lock.
    let (proxy, mut config) = through_a_proxy(&env, 3_000).await;
    config.notifier.smtp_url = Some(inbox.url());
    let app = common::App::builder(&config)
        .only(&["notifier"])
        .clock(daytime_clock())
        .start()
        .await;
    let publish = |range: std::ops::Range<usize>| {
        let events: Vec<_> = range
            .map(|i| {
                crate::notices::case_event(
                    "found_complete",
                    &format!("W26-SILENT-{i:04}-X"),
                    &format!("silent-{i}@example.org"),
                )
            })
            .collect();
        let bus = app.mesh.bus.clone();
        async move {
            for r in bus.publish(&events).await {
                r.unwrap();
            }
        }
    };
    let mails = || async { inbox.messages().len() };
    publish(0..4).await;
    eventually(DRAIN, "the first 4 e-mails", || async {
        (mails().await == 4).then_some(())
    })
    .await;

    // A lock holds the consumer's insert and the sender's lease on the
    // server, so that the silence comes with both under way.
    let lock = TableLock::take(&env, "notifier.notices").await;
    publish(4..12).await;
    until_waiting_on_the_lock(&env, "notifier", 2).await;
    proxy.silence_open();
    lock.release().await;

    let db = env.db("notifier").await;
    eventually(STALL, "12 e-mails sent", || async {
        let sent = count(&db, "SELECT count(*) FROM notices WHERE state = 'sent'").await;
        (sent == 12 && mails().await == 12).then_some(())
    })
    .await;
    let recipients: BTreeSet<_> = inbox.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(recipients.len(), 12, "one e-mail each: {recipients:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM notices").await, 12);
    db.close().await;
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Instruction's sweep reads the cases due while its database falls
/// silent: the statement gives up at the answer bound, and a later round
/// issues the attestation the person is owed.
async fn a_sweep_whose_database_falls_silent_issues_the_attestation_later() {
    use chrono::Days;
    let env = TestEnv::new().await;
    let (proxy, config) = through_a_proxy(&env, 3_000).await;
    let (app, clock) = sweeping_online_mesh(config).await;
    // Cover until 40 days from now: no attestation owed on arrival.
    let mut renewal = common::example("renewal-employee.json");
    let expires = guichet_dossier::calendar::paris_date(chrono::Utc::now()) + Days::new(40);
    renewal["current_title"]["expires_on"] = expires.to_string().into();
    let reference = app.file_accepted(&renewal).await;
    let attestations = || attestations_of(&app, &reference);
    eventually(DRAIN, "the dossier in instruction", || async {
        attestations().await
    })
    .await;
    assert_eq!(attestations().await, Some(0));

    // A lock holds the sweep's read of the cases on the server, so that
    // the silence comes with it under way; then the cover is due.
    let lock = TableLock::take(&env, "instruction.dossiers").await;
    clock.advance(chrono::Duration::days(30));
    until_waiting_on_a_lock(&env, "instruction").await;
    proxy.silence_open();
    lock.release().await;

    eventually(STALL, "the attestation issued by a later sweep", || async {
        (attestations().await == Some(1)).then_some(())
    })
    .await;
    common::stop(app, env).await;
}

/// The attestations the status page shows for `reference` (an example
/// renewal's holder), `None` until it can be read.
async fn attestations_of(app: &common::App, reference: &str) -> Option<usize> {
    let r = app
        .get(&format!(
            "/api/v1/dossiers/{reference}/status?birth_date=1991-03-02"
        ))
        .await;
    let status: Value = r.json().await.ok()?;
    Some(status["attestations"].as_array()?.len())
}

/// The online channel and instruction on `config`, the sweep every second
/// with an attestation horizon of 15 days, on a clock the test moves.
async fn sweeping_online_mesh(
    mut config: guichet::Settings,
) -> (common::App, Arc<common::ShiftedClock>) {
    config.sweep_interval_s = 1;
    config.instruction.attestation_horizon_days = 15;
    let clock = Arc::new(common::ShiftedClock::default());
    let app = common::App::builder(&config)
        .only(common::ONLINE)
        .clock(clock.clone())
        .start()
        .await;
    (app, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A dossier whose stored filing the rules cannot read (a title kind no
/// version knows) is left out of the sweep, logged; the dossiers after it
/// still get the attestations they are owed; so is one whose stored bytes
/// do not decode at all. The damaged ones are recorded first, so the
/// sweep's read meets them before the others.
async fn a_damaged_dossier_does_not_stop_the_sweep_for_the_others() {
    use chrono::Days;
    use guichet_proto::v1 as pb;
    use prost::Message;
    let env = TestEnv::new().await;
    let (app, clock) = sweeping_online_mesh(env.config()).await;
    // Covers until 40 days from now: no attestation owed on arrival.
    let expires = guichet_dossier::calendar::paris_date(chrono::Utc::now()) + Days::new(40);
    let renewal = |n: usize| {
        let mut r = common::example("renewal-employee.json");
        r["current_title"]["expires_on"] = expires.to_string().into();
        r["applicant"]["family_name"] = format!("Benali{}", "x".repeat(n)).into();
        r["applicant"]["foreigner_number"] = format!("75031234{n:02}").into();
        r["contact"]["email"] = format!("samira{n}@example.org").into();
        r
    };
    let attestations = |reference: String| {
        let app = &app;
        async move { attestations_of(app, &reference).await }
    };
    let damaged = app.file_accepted(&renewal(0)).await;
    // A second one whose stored bytes are no dossier at all: its row does
    // not decode.
    let garbled = app.file_accepted(&renewal(4)).await;
    for reference in [&damaged, &garbled] {
        eventually(DRAIN, "a damaged-to-be dossier in instruction", || {
            attestations(reference.clone())
        })
        .await;
    }
    let instruction = env.db("instruction").await;
    let Database::Postgres(pool, _) = &instruction else {
        panic!("a PostgreSQL test")
    };
    let stored: Vec<u8> = sqlx::query_scalar("SELECT dossier FROM dossiers WHERE reference = $1")
        .bind(&damaged)
        .fetch_one(pool)
        .await
        .unwrap();
    let mut dossier = pb::Dossier::decode(stored.as_slice()).unwrap();
    let title = dossier
        .filing
        .as_mut()
        .and_then(|f| f.current_title.as_mut())
        .expect("a renewal names its title");
    title.kind = 999;
    sqlx::query("UPDATE dossiers SET dossier = $2 WHERE reference = $1")
        .bind(&damaged)
        .bind(dossier.encode_to_vec())
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE dossiers SET dossier = $2 WHERE reference = $1")
        .bind(&garbled)
        .bind(vec![0xffu8; 16])
        .execute(pool)
        .await
        .unwrap();

    let mut sound = Vec::new();
    for n in 1..=3 {
        sound.push(app.file_accepted(&renewal(n)).await);
    }
    for reference in &sound {
        let seen = eventually(DRAIN, "the dossier in instruction", || {
            attestations(reference.clone())
        })
        .await;
        assert_eq!(seen, 0);
    }

    clock.advance(chrono::Duration::days(30));
    for reference in &sound {
        eventually(STALL, "the attestation of a sound dossier", || async {
            (attestations(reference.clone()).await == Some(1)).then_some(())
        })
        .await;
    }
    // The damaged one has none (its status page cannot be drawn: a stored
    // dossier the rules cannot read is the server's fault, answered 500).
    // Both are counted, for the alert that someone mend them.
    let labels = guichet_kit::metrics::ServiceLabels {
        service: guichet_instruction::server::SCHEMA,
    };
    let unreadable = app
        .metrics
        .sweep_dossiers_unreadable
        .get_or_create(&labels)
        .clone();
    app.two_more_sweeps().await;
    assert_eq!(unreadable.get(), 2);
    for reference in [&damaged, &garbled] {
        let issued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM attestations WHERE reference = $1")
                .bind(reference)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(issued, 0, "{reference}");
    }
    common::stop(app, env).await;
}

// ---- 4. poison messages, and `guichet dlq` ------------------------------------

const POISON_LOAD: usize = 200;

/// A valid web dossier, as intake would publish it.
pub(crate) fn dossier_message() -> (String, guichet_kit::bus::OutgoingMessage) {
    use guichet_dossier::filing::RawProvenance;
    use guichet_dossier::{Channel, Dossier, Filing, RawFiling, Reference};
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let mut raw: RawFiling =
        serde_json::from_value(common::example("renewal-employee.json")).unwrap();
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let filing = Filing::parse(&raw, &RawProvenance::Web { account_id: None }, today).unwrap();
    let now = chrono::Utc::now();
    let reference = Reference::generate(Channel::Web, 2026, &mut rand::rng());
    let dossier = Dossier::new(reference.clone(), filing, now, now);
    (
        reference.to_string(),
        guichet_intake::ledger::dossier_message(&dossier),
    )
}

/// The three kinds of poison: bytes that are no dossier, a dossier of a
/// schema version nobody reads, and a dossier that breaks a domain rule
/// (its reference fails its check character).
fn poisons() -> Vec<guichet_kit::bus::OutgoingMessage> {
    use guichet_proto::v1 as pb;
    use prost::Message;
    let (_, mut undecodable) = dossier_message();
    undecodable.message_id = "poison-undecodable".into();
    undecodable.body = vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad];

    let (_, mut future) = dossier_message();
    let mut wire = pb::Dossier::decode(future.body.as_slice()).unwrap();
    wire.schema_version = 99;
    future.message_id = "poison-schema".into();
    future.body = wire.encode_to_vec();

    let (_, mut broken) = dossier_message();
    let mut wire = pb::Dossier::decode(broken.body.as_slice()).unwrap();
    let check = wire.reference.pop().unwrap();
    wire.reference.push(if check == 'A' { 'B' } else { 'A' });
    broken.message_id = "poison-rule".into();
    broken.body = wire.encode_to_vec();
    vec![undecodable, future, broken]
}

/// `guichet dlq ...` on this test's bus; its exit status and standard output.
fn dlq(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_guichet"));
    command
        .arg("dlq")
        .args(args)
        .env_remove("GUICHET_DATABASE_URL")
        .env_remove("GUICHET_AMQP_URL")
        .env("GUICHET_DATA_DIR", &env.data_dir)
        .env(
            "GUICHET_DELIVERY_LIMIT",
            env.config().delivery_limit.to_string(),
        )
        .env("RUST_LOG", "warn,lapin=off")
        .stderr(Stdio::inherit());
    if let Some(url) = &env.amqp_url {
        command.env("GUICHET_AMQP_URL", url);
    }
    let out = command.output().expect("run guichet dlq");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The dead letters by message id, as `guichet dlq list --json` gives them.
fn dead_letters(env: &TestEnv) -> BTreeMap<String, Value> {
    let (ok, out) = dlq(env, &["list", "--json"]);
    assert!(ok, "guichet dlq list: {out}");
    let letters: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let n = letters.len();
    let by_id: BTreeMap<String, Value> = letters
        .into_iter()
        .map(|l| (l["message_id"].as_str().unwrap().to_string(), l))
        .collect();
    assert_eq!(by_id.len(), n, "one copy of each dead letter: {by_id:#?}");
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A paper kit offered to a report with no whole address cannot be posted;
/// it goes to the dead letters for an operator, not acked away (the person
/// would wait for a kit nobody sends).
async fn a_paper_kit_without_a_whole_address_is_dead_lettered_not_dropped() {
    use guichet_kit::bus::{DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, OutgoingMessage};
    use guichet_proto::v1 as pb;
    use prost::Message;
    let env = TestEnv::new().await;
    let app = common::App::builder(&env.config())
        .only(&["intake-postal"])
        .start()
        .await;
    let report = pb::Report {
        id: "report-no-address".into(),
        alternative: Some(pb::Alternative {
            kind: pb::AlternativeKind::PaperKit as i32,
            kit_sent_to: Some(pb::PostalAddress {
                line1: "12 rue Solférino".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let message = OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        "report.alternative_offered.59".into(),
        report.encode_to_vec(),
    );
    let bus = app.mesh.bus.clone();
    assert!(bus.publish(std::slice::from_ref(&message)).await[0].is_ok());
    eventually(DRAIN, "the kit in the dead letters", || async {
        (bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 1).then_some(())
    })
    .await;
    let letters = env.db("intake_postal").await;
    assert_eq!(
        count(&letters, "SELECT count(*) FROM postal_letters").await,
        0
    );
    common::stop(app, env).await;
}

on_both_backends!(poison_messages_are_dead_lettered_with_their_reason_and_guichet_dlq_replays_them);
async fn poison_messages_are_dead_lettered_with_their_reason_and_guichet_dlq_replays_them(
    backend: common::Backend,
) {
    use guichet_kit::bus::{DEAD_LETTER_QUEUE, INSTRUCTION_QUEUE};
    let env = TestEnv::on(backend).await;
    let config = env.config();

    // A good dossier caught in a crash loop: a consumer that falls over on
    // it every time, until the delivery limit sends it to the dead letters.
    let (crashed_reference, crashed) = dossier_message();
    {
        let bus = env.open_bus().await;
        assert!(bus.publish(std::slice::from_ref(&crashed)).await[0].is_ok());
        let mut stream = bus
            .consume(INSTRUCTION_QUEUE, "crash-loop", 1)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + DRAIN;
        while bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the crash loop never ended in the dead letters"
            );
            if let Ok(Some(Ok(d))) =
                tokio::time::timeout(Duration::from_millis(500), stream.next()).await
            {
                d.retry_later().await.unwrap();
            }
        }
        drop(stream);
        bus.close().await;
    }

    // Poison in the middle of a load: each goes to the dead letters with its
    // reason, and every good filing around it is recorded.
    let app = common::App::builder(&config)
        .only(common::ONLINE)
        .start()
        .await;
    let load = file_all(&app.http, &app.base, keys("poison", POISON_LOAD), 16);
    let poison = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for result in app.mesh.bus.publish(&poisons()).await {
            assert!(result.is_ok(), "{result:?}");
        }
    };
    let (answers, ()) = tokio::join!(load, poison);
    assert_eq!(statuses(&answers), BTreeMap::from([(201, POISON_LOAD)]));
    let accepted = accepted_references(&answers);
    let instruction = env.db("instruction").await;
    let bus = app.mesh.bus.clone();
    eventually(DRAIN, "four dead letters", || async {
        (bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 4).then_some(())
    })
    .await;
    let filed = match &instruction {
        Database::Postgres(..) => tally(&instruction, &accepted).await,
        Database::Sqlite(_) => {
            let n = accepted.len() as i64;
            eventually(DRAIN, "every good filing in instruction", || async {
                (count(&instruction, "SELECT count(*) FROM dossiers").await == n).then_some(())
            })
            .await;
            let distinct = count(
                &instruction,
                "SELECT count(DISTINCT reference) FROM dossier_events WHERE kind = 'filed'",
            )
            .await as usize;
            let events = count(
                &instruction,
                "SELECT count(*) FROM dossier_events WHERE kind = 'filed'",
            )
            .await as usize;
            Tally {
                accepted: accepted.len(),
                delivered: distinct,
                lost: accepted.len() - distinct,
                doubled: events - distinct,
            }
        }
    };
    assert_exactly_once(&format!("poison messages ({backend:?})"), &filed);
    // The consumer counted each poison by its reason; the crash-looped one
    // was dead-lettered by the delivery limit, not by the consumer.
    for reason in ["undecodable", "unknown_schema", "breaks_rule"] {
        let series = format!(
            "guichet_dead_letters_total{{queue=\"{INSTRUCTION_QUEUE}\",reason=\"{reason}\"}}"
        );
        assert_eq!(app.metric(&series).await, 1.0, "{series}");
    }
    eventually(DRAIN, "the dead-letter depth on /metrics", || async {
        let series = format!("guichet_queue_messages{{queue=\"{DEAD_LETTER_QUEUE}\"}}");
        (app.metric(&series).await == 4.0).then_some(())
    })
    .await;
    app.stop().await;

    // What an operator sees.
    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 4, "{letters:?}");
    let reason = |id: &str| letters[id]["reason"].as_str().unwrap().to_string();
    assert!(reason("poison-undecodable").starts_with("undecodable"));
    assert_eq!(reason("poison-schema"), "unknown schema version 99");
    assert!(
        reason("poison-rule").starts_with("breaks a domain rule: reference"),
        "{}",
        reason("poison-rule")
    );
    let crash = reason(&crashed.message_id);
    assert!(
        crash == "broker: delivery_limit" || crash.starts_with("delivery limit reached"),
        "{crash}"
    );
    assert_eq!(letters["poison-undecodable"]["size"], 6);
    for (id, l) in &letters {
        assert_eq!(l["routing_key"], "dossier.submitted.web", "{id}");
        assert_eq!(l["original_exchange"], "guichet.dossiers", "{id}");
        assert_eq!(l["queue"], INSTRUCTION_QUEUE, "{id}");
        assert!(
            l["first_death"].as_str().is_some_and(|t| t.len() >= 20),
            "{id}: {l}"
        );
    }
    let (ok, table) = dlq(&env, &["list"]);
    assert!(ok && table.contains("4 dead letters"), "{table}");
    assert!(!table.contains("more not shown"), "{table}");
    eprintln!("guichet dlq list ({backend:?}):\n{table}");

    // Replay: an unknown id changes nothing; the crash-looped dossier goes back.
    let (ok, out) = dlq(&env, &["replay", "no-such-message", &crashed.message_id]);
    assert!(!ok, "{out}");
    assert_eq!(dead_letters(&env).len(), 4);
    let (ok, out) = dlq(&env, &["replay", &crashed.message_id]);
    assert!(ok && out.contains("1 replayed, 0 kept"), "{out}");

    // Drop: only with --yes.
    let (ok, out) = dlq(&env, &["drop", "poison-undecodable"]);
    assert!(!ok && out.contains("poison-undecodable"), "{out}");
    let after_replay = dead_letters(&env);
    assert_eq!(after_replay.len(), 3, "{after_replay:#?}");
    let (ok, out) = dlq(&env, &["drop", "poison-undecodable", "--yes"]);
    assert!(ok && out.contains("1 dropped"), "{out}");
    let left: BTreeSet<String> = dead_letters(&env).into_keys().collect();
    assert_eq!(
        left,
        BTreeSet::from(["poison-rule".to_string(), "poison-schema".to_string()])
    );

    // The replayed dossier is recorded, once; the consumer is still there.
    let app = common::App::builder(&config)
        .only(common::ONLINE)
        .start()
        .await;
    eventually(DRAIN, "the replayed dossier in instruction", || async {
        (app.dossier(&crashed_reference).await.status() == 200).then_some(())
    })
    .await;
    let once = format!(
        "SELECT count(*) FROM dossier_events WHERE kind = 'filed' AND reference = '{crashed_reference}'"
    );
    assert_eq!(count(&instruction, &once).await, 1);
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM dossiers").await,
        POISON_LOAD as i64 + 1
    );
    app.stop().await;

    let (ok, out) = dlq(&env, &["drop", "--all", "--yes"]);
    assert!(ok && out.contains("2 dropped"), "{out}");
    assert!(dead_letters(&env).is_empty());
    env.cleanup().await;
}

/// RabbitMQ 3.x counts a delivery given back by a lost connection towards the
/// delivery limit, so a good dossier held through that many connection losses
/// in a row is dead-lettered. It is not lost: it waits in the dead letters,
/// and a replay records it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_dead_lettered_by_lost_connections_is_replayed_and_recorded_once() {
    use guichet_kit::bus::{Bus, DEAD_LETTER_QUEUE, INSTRUCTION_QUEUE};
    let env = TestEnv::new().await;
    let config = env.config();
    let (reference, message) = dossier_message();
    let bus = env.amqp_bus();
    assert!(bus.publish(std::slice::from_ref(&message)).await[0].is_ok());
    bus.close().await;

    // Each round: a consumer takes the dossier, and its connection is lost
    // before it can ack.
    let mut losses = 0;
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let bus = env.amqp_bus();
        if bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 1 {
            bus.close().await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        let mut stream = bus.consume(INSTRUCTION_QUEUE, "doomed", 1).await.unwrap();
        if let Ok(Some(Ok(_held))) =
            tokio::time::timeout(Duration::from_secs(2), stream.next()).await
        {
            losses += 1;
        }
        drop(stream);
        bus.close().await;
    }
    eprintln!("dead-lettered after {losses} lost connections");
    assert_eq!(losses, config.delivery_limit + 1);
    let letters = dead_letters(&env);
    assert_eq!(
        letters[&message.message_id]["reason"],
        "broker: delivery_limit"
    );

    let (ok, out) = dlq(&env, &["replay", "--all"]);
    assert!(ok && out.contains("1 replayed, 0 kept"), "{out}");
    let app = common::App::builder(&config)
        .only(common::ONLINE)
        .start()
        .await;
    eventually(DRAIN, "the replayed dossier in instruction", || async {
        (app.dossier(&reference).await.status() == 200).then_some(())
    })
    .await;
    let instruction = env.db("instruction").await;
    assert_eq!(
        count(&instruction, "SELECT count(*) FROM dossiers").await,
        1
    );
    assert!(dead_letters(&env).is_empty());
    common::stop(app, env).await;
}
