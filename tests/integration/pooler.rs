//! PostgreSQL through PgBouncer in transaction mode, as a deployment with
//! many instances puts it: each service connects to its own pooler database,
//! whose `connect_query` sets the service's schema, and a handful of server
//! connections carry every instance's transactions. PgBouncer 1.21 or later
//! (`scripts/install-pgbouncer.sh`, which `.ci/run` runs); each test starts
//! its own on a free port, and fails loudly when there is none to start.

use crate::common;
use crate::faults::{
    accepted_references, assert_exactly_once, file_all_answered, keys, outbox_drained, statuses,
    tally,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Services, TestEnv, count, eventually};
use guichet_kit::db::{Database, DbError, Migrations, Pool};
use guichet_kit::lease::Lease;

/// Server connections per pooler database: far fewer than the instances'
/// client connections, so transactions share them.
const SERVER_CONNECTIONS: u32 = 4;

/// The statement bound a pooler database sets, as the README's example does
/// (PgBouncer drops the one the service sends at connect).
const BOUND_MS: u32 = 30_000;

/// A PgBouncer of the test's own, stopped when the test lets go of it.
struct Pooler {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The test's database, behind the pooler.
    database: String,
}

impl Pooler {
    /// A pooler database `<database>_<schema>` for each of `schemas`, whose
    /// server connections are set to that schema; and `<database>_public`,
    /// whose connections are set to nothing.
    fn start(env: &TestEnv, schemas: &[&str]) -> Self {
        let binary = std::env::var("GUICHET_PGBOUNCER").unwrap_or_else(|_| "pgbouncer".into());
        let version = Command::new(&binary).arg("--version").output();
        let version = match version {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).to_string(),
            _ => panic!(
                "PgBouncer ({binary}) does not run: install 1.21 or later with \
                 `bash scripts/install-pgbouncer.sh` (.ci/run does) or set GUICHET_PGBOUNCER"
            ),
        };
        eprintln!("pooler: {}", version.lines().next().unwrap_or_default());

        let admin = admin_options();
        let (host, pg_port, user) = (
            admin.get_host().to_string(),
            admin.get_port(),
            admin.get_username().to_string(),
        );
        let database = env.name.clone();
        let dir = env.data_dir.join("pgbouncer");
        std::fs::create_dir_all(&dir).unwrap();
        let server = format!("host={host} port={pg_port} dbname={database} user={user}");
        let mut databases = format!("{database}_public = {server}\n");
        for schema in schemas {
            databases.push_str(&format!(
                "{database}_{schema} = {server} connect_query='SET search_path = {schema}; \
                 SET statement_timeout = {BOUND_MS}; \
                 SET idle_in_transaction_session_timeout = {BOUND_MS}'\n"
            ));
        }
        let port = common::free_port();
        let users = dir.join("users.txt");
        std::fs::write(&users, format!("\"{user}\" \"\"\n")).unwrap();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n{databases}\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\nadmin_users = {user}\n\
                 pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n\
                 max_client_conn = 1000\nmax_prepared_statements = 200\n\
                 ignore_startup_parameters = options, extra_float_digits\n",
                users = users.display()
            ),
        )
        .unwrap();
        let mut command = Command::new(&binary);
        // PgBouncer will not run as root; the machine's PostgreSQL user will do.
        if is_root() {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pgbouncer.log")).unwrap())
            .spawn()
            .expect("start pgbouncer");
        let pooler = Self {
            child,
            port,
            dir,
            database,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return pooler;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PgBouncer did not listen on {port}:\n{}", pooler.log());
    }

    /// The URL a service of `schema` is given.
    fn url(&self, schema: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}_{schema}",
            admin_options().get_username(),
            self.port,
            self.database
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// The rows of one of the admin console's tables (`SHOW POOLS`, `SHOW
    /// STATS`, `SHOW CLIENTS`) about pooler database `<database>_<schema>`,
    /// by column name.
    fn show(&self, what: &str, schema: &str) -> Vec<BTreeMap<String, String>> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", admin_options().get_username(), "-d", "pgbouncer"])
            .args(["--csv", "-c"])
            .arg(format!("SHOW {what}"))
            .output()
            .expect("psql to the pooler's admin console");
        assert!(
            out.status.success(),
            "SHOW {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let name = format!("{}_{schema}", self.database);
        lines
            .map(|line| {
                header
                    .iter()
                    .zip(line.split(','))
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            })
            .filter(|row| row.get("database") == Some(&name))
            .collect()
    }

    /// The one row of `SHOW <what>` about `schema`'s pooler database.
    fn row(&self, what: &str, schema: &str) -> BTreeMap<String, String> {
        let mut rows = self.show(what, schema);
        assert_eq!(rows.len(), 1, "SHOW {what} about {schema}: {rows:?}");
        rows.remove(0)
    }
}

/// A service's database opened through the pooler database of `schema`, as
/// an instance opens it at start.
async fn open_through(
    pooler: &Pooler,
    env: &TestEnv,
    schema: &str,
    migrations: &Migrations,
) -> Result<Database, DbError> {
    Database::open(
        Some(&pooler.url(schema)),
        &env.data_dir,
        schema,
        Pool::sized(2),
        migrations,
    )
    .await
}

/// A column of a row of the admin console, as a number.
fn number(row: &BTreeMap<String, String>, column: &str) -> u64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {column} in {row:?}"))
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the tests' PostgreSQL is, and as whom they connect.
fn admin_options() -> sqlx::postgres::PgConnectOptions {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(&common::database_admin_url())
        .expect("the tests' PostgreSQL URL")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

const LOAD: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_each_service_through_pgbouncer_in_transaction_mode_lose_and_double_nothing()
 {
    let env = TestEnv::new().await;
    let pooler = Pooler::start(&env, &["intake_web", "instruction", "gateway"]);
    let through = |schema: &str| {
        let mut config = env.config();
        config.database_url = Some(pooler.url(schema));
        config
    };
    let (intake, instruction, gateway) = (
        through("intake_web"),
        through("instruction"),
        through("gateway"),
    );
    // The two stacks start together on a database with nothing in it yet:
    // their migrations meet, and take turns (or one stack fails to start).
    let (first, second) = tokio::join!(
        async {
            Services::start(
                (&intake, env.open_bus().await),
                (&instruction, env.open_bus().await),
                &gateway,
            )
            .await
        },
        async {
            Services::start(
                (&intake, env.open_bus().await),
                (&instruction, env.open_bus().await),
                &gateway,
            )
            .await
        },
    );

    let (half_a, half_b) = {
        let all = keys("pooler", LOAD);
        let (a, b) = all.split_at(LOAD / 2);
        (a.to_vec(), b.to_vec())
    };
    let (answers_a, answers_b) = tokio::join!(
        file_all_answered(&first.http, &first.base, half_a, 16),
        file_all_answered(&second.http, &second.base, half_b, 16),
    );
    let mut answers = answers_a;
    answers.extend(answers_b);
    assert_eq!(statuses(&answers), BTreeMap::from([(201, LOAD)]));
    let accepted = accepted_references(&answers);
    assert_eq!(accepted.len(), LOAD);

    // Read back directly, not through the pooler.
    let recorded = env.db("instruction").await;
    let tally = tally(&recorded, &accepted).await;
    assert_exactly_once("two instances of each through PgBouncer", &tally);
    let filed = env.db("intake_web").await;
    outbox_drained(&filed).await;
    assert_eq!(
        count(&filed, "SELECT count(*) FROM filings").await,
        LOAD as i64
    );
    // Each service's tables are in its own schema, none in public.
    assert_eq!(
        count(
            &recorded,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        .await,
        0
    );
    // The pooler carried it all: many client connections on a few server
    // connections.
    for schema in ["intake_web", "instruction"] {
        let transactions = number(&pooler.row("STATS", schema), "total_xact_count");
        let pool = pooler.row("POOLS", schema);
        let servers: u64 = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
            .iter()
            .map(|c| number(&pool, c))
            .sum();
        let clients = pooler.show("CLIENTS", schema).len();
        eprintln!(
            "pooler: {schema}: {transactions} transactions from {clients} client connections \
             on {servers} server connections"
        );
        assert!(
            transactions > 0,
            "{schema}: nothing went through the pooler"
        );
        assert!(
            (1..=u64::from(SERVER_CONNECTIONS)).contains(&servers),
            "{schema}: {servers} server connections: {pool:?}"
        );
        // Both instances' pools, at least one connection each, share them.
        assert!(clients >= 2, "{schema}: {clients} client connections");
        assert_eq!(pool["pool_mode"], "transaction");
    }

    first.stop().await;
    second.stop().await;
    recorded.close().await;
    filed.close().await;
    drop(pooler);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_through_pgbouncer_has_one_holder_and_is_given_up_on_a_clean_stop() {
    let env = TestEnv::new().await;
    let pooler = Pooler::start(&env, &["leases"]);
    let kit_only = Migrations {
        postgres: &[],
        sqlite: &[],
    };
    let open = || async {
        open_through(&pooler, &env, "leases", &kit_only)
            .await
            .expect("open through the pooler")
    };
    let (a_db, b_db) = tokio::join!(open(), open());
    let ttl = Duration::from_secs(30);
    let a = Lease::new(a_db.clone(), "sweep", ttl);
    let b = Lease::new(b_db.clone(), "sweep", ttl);
    for round in 0..20 {
        let (ha, hb) = tokio::join!(a.hold(), b.hold());
        let (ha, hb) = (ha.unwrap(), hb.unwrap());
        assert!(ha ^ hb, "round {round}: one holder, not {ha} and {hb}");
    }
    let (holder, other) = if a.hold().await.unwrap() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert!(!other.hold().await.unwrap());
    holder.release().await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the lease free once given up",
        || async { other.hold().await.unwrap().then_some(()) },
    )
    .await;
    a_db.close().await;
    b_db.close().await;
    drop(pooler);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_starting_at_once_through_pgbouncer_migrate_one_at_a_time() {
    let env = TestEnv::new().await;
    let pooler = Pooler::start(&env, &["instruction"]);
    let open = || {
        open_through(
            &pooler,
            &env,
            "instruction",
            &guichet_instruction::server::MIGRATIONS,
        )
    };
    let opened = futures_util::future::join_all((0..4).map(|_| open())).await;
    for (i, db) in opened.iter().enumerate() {
        assert!(db.is_ok(), "instance {i}: {:?}", db.as_ref().err());
    }
    // The pooler's connections carry the statement bound its
    // connect_query sets, which the service's own startup option cannot.
    let bounds: Vec<String> = futures_util::future::join_all(opened.iter().flatten().map(|db| {
        sqlx::query_scalar("SELECT current_setting('statement_timeout')")
            .fetch_one(db.postgres().expect("PostgreSQL"))
    }))
    .await
    .into_iter()
    .map(|bound| bound.expect("read the statement bound"))
    .collect();
    assert_eq!(
        bounds,
        vec!["30s"; 4],
        "each instance's statements are bound"
    );
    let direct = env.db("instruction").await;
    let expected = guichet_instruction::server::MIGRATIONS.postgres[0]
        .iter()
        .count() as i64;
    assert!(
        count(&direct, "SELECT count(*) FROM _sqlx_migrations").await >= expected,
        "the instruction migrations all recorded"
    );
    for db in opened.into_iter().flatten() {
        db.close().await;
    }
    direct.close().await;
    drop(pooler);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_database_that_does_not_set_the_schema_is_refused_before_any_table_is_made() {
    let env = TestEnv::new().await;
    let pooler = Pooler::start(&env, &[]);
    let refused = Database::open(
        Some(&pooler.url("public")),
        &env.data_dir,
        "instruction",
        Pool::sized(4),
        &guichet_instruction::server::MIGRATIONS,
    )
    .await
    .expect_err("a pooler database that leaves the schema to public");
    assert!(
        matches!(&refused, DbError::WrongSchema { schema, found }
            if schema == "instruction" && found == "public"),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("search_path") && message.contains("instruction"),
        "{message}"
    );
    let direct = env.db("instruction").await;
    assert_eq!(
        count(
            &direct,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        .await,
        0,
        "nothing made in public"
    );
    direct.close().await;
    drop(pooler);
    env.cleanup().await;
}
