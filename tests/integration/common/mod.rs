//! What every end-to-end test needs: a fresh PostgreSQL database and a fresh
//! RabbitMQ vhost of its own (so tests run in parallel and share nothing),
//! the mesh started in-process on free ports, and `eventually`.
#![allow(dead_code)]

pub mod clamd;
pub mod notify;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use guichet::Settings;
use guichet_kit::Config;
use guichet_kit::db::Database;
use guichet_kit::shutdown::Shutdown;
use sqlx::PgPool;

pub fn database_admin_url() -> String {
    std::env::var("GUICHET_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn amqp_base_url() -> String {
    std::env::var("GUICHET_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into())
}

/// The development issuer every test's gateway checks tokens against: one
/// per test binary, on its own thread and runtime (each test has its own
/// runtime, which ends with the test).
pub fn dev_issuer() -> &'static guichet_identity::dev::DevIssuer {
    static ISSUER: std::sync::OnceLock<guichet_identity::dev::DevIssuer> =
        std::sync::OnceLock::new();
    ISSUER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the issuer");
            runtime.block_on(async move {
                // Tests move their meshes' clocks days ahead: the tokens
                // must outlive that (the expiry check is the clock's).
                let mut config =
                    guichet_identity::dev::DevConfig::standard(guichet_kit::clock::system());
                config.token_ttl = Duration::from_secs(400 * 24 * 3600);
                let issuer = guichet_identity::dev::DevIssuer::start(
                    ([127, 0, 0, 1], 0).into(),
                    config,
                    Shutdown::new(),
                )
                .await
                .expect("start the development issuer");
                tx.send(issuer).expect("hand the issuer over");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the development issuer started")
    })
}

/// Agents the tests act as, with their roles: the development ones
/// (`guichet::dev::STANDARD_GRANTS`) and these, instructors wherever the
/// tests' files are filed.
pub const TEST_AGENTS: &[&str] = &[
    "agent-0", "agent-1", "agent-2", "agent-3", "agent-4", "agent-5", "agent-6", "agent-7",
    "agent-8", "agent-9", "agent-10", "pref-59", "agent-59",
];
pub const TEST_PREFECTURES: &[&str] = &["59", "62", "75"];
/// Mailroom operators of the postal tests (with `mailroom-1`).
pub const MAILROOM_OPERATORS: &[&str] = &["mailroom-ana", "mailroom-ben", "mailroom-3"];
/// Every role, in the test prefectures: for tests about inputs, not rights.
pub const EVERY_ROLE: &str = "test-every-role";
/// Supervisor of the test prefectures and call-centre agent too.
pub const PREFECTURE_AGENT: &str = "pref-59";

/// Gives the test agents their roles in the gateway's store of `config`.
pub async fn grant_test_roles(config: &Settings) {
    use guichet_access::Role;
    use guichet_gateway::directory::{ChangedBy, Directory};
    let directory = Directory::open(
        config.database_url.as_deref(),
        &config.data_dir,
        config.db_pool(),
    )
    .await
    .expect("open the gateway's store");
    let now = chrono::Utc::now();
    guichet::dev::grant_standard_roles(&directory, now)
        .await
        .expect("grant the development roles");
    let by = ChangedBy {
        actor: "test".into(),
        agent: None,
        client: "test".into(),
    };
    for uid in TEST_AGENTS {
        for p in TEST_PREFECTURES {
            for role in [Role::Instructor, Role::DeskAgent] {
                directory
                    .grant(uid, role, Some(p), &by, now)
                    .await
                    .expect("grant a test role");
            }
        }
    }
    // The prefectures' all-rounder of the channel tests: their sites, their
    // desks, and the call centre's calls.
    for p in TEST_PREFECTURES {
        directory
            .grant(PREFECTURE_AGENT, Role::Supervisor, Some(p), &by, now)
            .await
            .expect("grant a test role");
    }
    directory
        .grant(PREFECTURE_AGENT, Role::CallCentreAgent, None, &by, now)
        .await
        .expect("grant a test role");
    for operator in MAILROOM_OPERATORS {
        directory
            .grant(operator, Role::MailroomOperator, None, &by, now)
            .await
            .expect("grant a test role");
    }
    for role in Role::ALL {
        if role.is_national() {
            directory.grant(EVERY_ROLE, role, None, &by, now).await
        } else {
            directory
                .grant(EVERY_ROLE, role, Some("59"), &by, now)
                .await
        }
        .expect("grant a test role");
    }
    directory.db().close().await;
}

/// A gRPC channel whose every call carries an agent's (or a client's)
/// `authorization`.
#[derive(Clone)]
pub struct SignedIn(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for SignedIn {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, SignedIn>;

/// `channel`, signed in as the agent `uid`.
pub fn signed_in(channel: tonic::transport::Channel, uid: &str) -> AuthChannel {
    tonic::service::interceptor::InterceptedService::new(
        channel,
        SignedIn(bearer(uid).parse().expect("a header value")),
    )
}

/// `Authorization` for the agent `uid`.
pub fn bearer(uid: &str) -> String {
    format!("Bearer {}", dev_issuer().agent_token(uid))
}

/// `Authorization` for the machine client `client_id`.
pub fn client_bearer(client_id: &str) -> String {
    format!("Bearer {}", dev_issuer().client_token(client_id))
}

pub fn rabbitmq_api() -> String {
    std::env::var("GUICHET_TEST_RABBITMQ_API").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

/// Queue `queue` of vhost `vhost` as the broker's management API describes
/// it (consumers, messages ready and unacknowledged; sampled every few
/// seconds); `None` while it cannot say.
pub async fn management_queue(
    http: &reqwest::Client,
    vhost: &str,
    queue: &str,
) -> Option<serde_json::Value> {
    http.get(format!("{}/api/queues/{vhost}/{queue}", rabbitmq_api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Which backends a test runs on: the production servers, or the embedded
/// default (SQLite files and the in-process bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Servers,
    Embedded,
}

/// Runs one async test body on both backends, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_servers() {
                super::$name($crate::common::Backend::Servers).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::common::Backend::Embedded).await;
            }
        }
    };
}

/// What belongs to one test: a database and a vhost (servers), or a data
/// folder (embedded).
pub struct TestEnv {
    pub backend: Backend,
    pub name: String,
    pub data_dir: std::path::PathBuf,
    pub database_url: Option<String>,
    pub amqp_url: Option<String>,
    admin: Option<PgPool>,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::on(Backend::Servers).await
    }

    pub async fn on(backend: Backend) -> Self {
        let _ = guichet_kit::telemetry::init_with(
            guichet_kit::config::LogFormat::Text,
            None,
            "guichet-tests",
        );
        let name = format!("guichet_t_{}", uuid::Uuid::new_v4().simple());
        let data_dir = std::env::temp_dir().join(&name);
        if backend == Backend::Embedded {
            return Self {
                backend,
                name,
                data_dir,
                database_url: None,
                amqp_url: None,
                admin: None,
            };
        }
        let admin_url = database_admin_url();
        let admin = PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). Start it (bash .ci/run does) \
                 or set GUICHET_TEST_DATABASE_URL."
            )
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create the test database");
        let database_url = guichet_kit::db::with_database(&admin_url, &name);

        let api = rabbitmq_api();
        let http = reqwest::Client::new();
        let put = |path: String, body: serde_json::Value| {
            http.put(format!("{api}{path}"))
                .basic_auth("guest", Some("guest"))
                .json(&body)
                .send()
        };
        let created = put(format!("/api/vhosts/{name}"), serde_json::json!({}))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the RabbitMQ management API is not reachable at {api} ({e}). Run \
                     `rabbitmq-plugins enable rabbitmq_management` (bash .ci/run does) or set \
                     GUICHET_TEST_RABBITMQ_API."
                )
            });
        assert!(
            created.status().is_success(),
            "create vhost: {}",
            created.status()
        );
        let granted = put(
            format!("/api/permissions/{name}/guest"),
            serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
        .expect("grant vhost permissions");
        assert!(
            granted.status().is_success(),
            "grant permissions: {}",
            granted.status()
        );
        let amqp_url = format!("{}/{name}", amqp_base_url());
        Self {
            backend,
            name,
            data_dir,
            database_url: Some(database_url),
            amqp_url: Some(amqp_url),
            admin: Some(admin),
        }
    }

    pub fn config(&self) -> Settings {
        let mut config = Settings::from_env().expect("default configuration");
        config.access.oidc_issuer = Some(dev_issuer().issuer().to_string());
        config.access.oidc_client_secret = Some(guichet::dev::GATEWAY_SECRET.to_string());
        config.database_url = self.database_url.clone();
        config.amqp_url = self.amqp_url.clone();
        config.data_dir = self.data_dir.clone();
        config.delivery_limit = 3;
        config.db_pool_size = 5;
        config.documents.clamd = Some(format!("unix:{}", clamd::socket().display()));
        // A debug build on a 2-core machine running the whole suite answers
        // in hundreds of milliseconds, and a fault test's calls wait for a
        // database that is gone: with the production target the bounds
        // would shed the load of tests that are about something else. Ten
        // minutes is longer than any call lasts, so here the bounds stay at
        // their maxima; the adaptive bound has tests of its own, which set
        // the target.
        config.latency_target_ms = 600_000;
        config
    }

    /// This test's database for `schema` (its PostgreSQL schema, or its file).
    pub async fn db(&self, schema: &str) -> Database {
        match &self.database_url {
            Some(url) => {
                let pool = guichet_kit::db::Pool::sized(2);
                Database::Postgres(
                    guichet_kit::db::postgres_pool(url, schema, pool)
                        .await
                        .expect("connect to the test database"),
                    pool.answer_bound(),
                )
            }
            None => {
                std::fs::create_dir_all(&self.data_dir).expect("create the data folder");
                Database::Sqlite(
                    guichet_kit::db::sqlite_pool(
                        &self.data_dir.join(format!("{schema}.sqlite")),
                        2,
                    )
                    .await
                    .expect("open the test database"),
                )
            }
        }
    }

    /// A new bus of this test's backend: RabbitMQ on its vhost, or the
    /// in-process bus in its data folder.
    pub async fn open_bus(&self) -> guichet_kit::bus::SharedBus {
        self.open_bus_with_bounds(guichet_kit::bus::Bounds::default())
            .await
    }

    /// The same, with its queues bounded by `bounds` (lowered, so a test
    /// fills a queue with a few messages).
    pub async fn open_bus_with_bounds(
        &self,
        bounds: guichet_kit::bus::Bounds,
    ) -> guichet_kit::bus::SharedBus {
        match self.backend {
            Backend::Servers => std::sync::Arc::new(self.amqp_bus().with_bounds(bounds)),
            Backend::Embedded => {
                std::fs::create_dir_all(&self.data_dir).expect("create the data folder");
                std::sync::Arc::new(
                    guichet_kit::bus::LocalBus::open_with_bounds(
                        &self.data_dir.join("bus.sqlite"),
                        3,
                        bounds,
                    )
                    .await
                    .expect("open the in-process bus"),
                )
            }
        }
    }

    /// A new RabbitMQ bus on this test's vhost (servers only).
    pub fn amqp_bus(&self) -> guichet_kit::bus::AmqpBus {
        let url = self.amqp_url.as_deref().expect("an AMQP test");
        guichet_kit::bus::AmqpBus::new(url, "test", 3)
    }

    pub async fn cleanup(mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let Some(admin) = self.admin.take() else {
            return;
        };
        drop_servers_side(&admin, &self.name).await;
    }
}

/// The test's vhost and database, gone.
async fn drop_servers_side(admin: &PgPool, name: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{}/api/vhosts/{name}", rabbitmq_api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await;
}

/// A test that fails unwinds through here without reaching `cleanup`: its
/// database, vhost and data folder go all the same, so failing runs do not
/// pile up leftovers on the servers. The async work runs on a runtime of its
/// own, in a thread of its own, since this may run inside the test's.
impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let Some(admin) = self.admin.take() else {
            return;
        };
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                // The pool belongs to the test's runtime: connect anew here.
                let Ok(admin_here) = PgPool::connect(&database_admin_url()).await else {
                    return;
                };
                drop(admin);
                drop_servers_side(&admin_here, &name).await;
                admin_here.close().await;
            });
        })
        .join();
    }
}

/// The mesh running in this test, and a client for its gateway.
pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    pub mesh: guichet::Mesh,
    /// This mesh's figures alone: each test's mesh counts its own.
    pub metrics: guichet_kit::Metrics,
    /// Where `file_by_post` publishes, as the postal service would: its own
    /// broker user when it has one, else the mesh's bus.
    pub postal_bus: guichet_kit::bus::SharedBus,
}

/// A clock the test moves forward: deadlines can pass without waiting days.
#[derive(Default)]
pub struct ShiftedClock {
    ahead_seconds: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, by: chrono::Duration) {
        self.ahead_seconds
            .fetch_add(by.num_seconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl guichet_kit::Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::seconds(
                self.ahead_seconds.load(std::sync::atomic::Ordering::SeqCst),
            )
    }
}

/// Which part of the mesh a test starts, on which clock (`App::builder`).
pub struct AppBuilder<'a> {
    config: &'a Settings,
    only: &'a [&'a str],
    clock: guichet_kit::clock::SharedClock,
    bus: Option<guichet_kit::bus::SharedBus>,
    /// 0: any free port.
    gateway_port: u16,
}

impl<'a> AppBuilder<'a> {
    /// Only these services (names of `guichet::SERVICE_NAMES`); the others are
    /// not started and refuse every connection.
    pub fn only(mut self, services: &'a [&'a str]) -> Self {
        self.only = services;
        self
    }

    pub fn clock(mut self, clock: guichet_kit::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The bus the mesh shares, instead of one opened from the settings
    /// (a bus with lowered bounds).
    pub fn bus(mut self, bus: guichet_kit::bus::SharedBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The gateway on this loopback port (where a provider sends the
    /// browser back), instead of any free one.
    pub fn gateway_port(mut self, port: u16) -> Self {
        self.gateway_port = port;
        self
    }

    pub async fn start(self) -> App {
        let shutdown = Shutdown::new();
        let any: SocketAddr = ([127, 0, 0, 1], self.gateway_port).into();
        let shared = guichet_kit::service::Shared {
            bus: match self.bus {
                Some(bus) => bus,
                None => guichet_kit::service::open_bus(self.config, "guichet")
                    .await
                    .expect("open the bus"),
            },
            clock: self.clock,
            shutdown: shutdown.clone(),
            metrics: guichet_kit::Metrics::new(),
        };
        let mesh = guichet::start_mesh_of(self.config, any, &shared, self.only)
            .await
            .expect("start the mesh");
        if self.only.contains(&"gateway") {
            grant_test_roles(self.config).await;
        }
        let postal = self.config.bus_users.credentials("intake-postal");
        let postal_bus = match (&self.config.amqp_url, postal) {
            (Some(_), Some(_)) => guichet_kit::service::open_bus(self.config, "intake-postal")
                .await
                .expect("open the postal bus"),
            _ => shared.bus.clone(),
        };
        App {
            postal_bus,
            base: format!("http://{}", mesh.http_addr),
            http: reqwest::Client::new(),
            shutdown,
            mesh,
            metrics: shared.metrics,
        }
    }
}

/// Targets for a gateway in front of services a test started by hand: each
/// left as this is one nobody listens on (port 9, discard), so a call to it
/// fails at once, as if the service were down.
pub fn not_started() -> guichet_gateway::Targets {
    let nowhere = || "http://127.0.0.1:9".to_string();
    guichet_gateway::Targets {
        intake_web: nowhere(),
        instruction: nowhere(),
        intake_ccc: nowhere(),
        intake_pan: nowhere(),
        intake_postal: nowhere(),
        notifier: nowhere(),
    }
}

/// What services started by hand share: the bus of `config`, the system's
/// clock, `shutdown` and fresh metrics.
pub async fn shared(config: &Settings, shutdown: &Shutdown) -> guichet_kit::service::Shared {
    guichet_kit::service::Shared {
        bus: guichet_kit::service::open_bus(config, "guichet")
            .await
            .expect("open the bus"),
        clock: guichet_kit::clock::system(),
        shutdown: shutdown.clone(),
        metrics: guichet_kit::Metrics::new(),
    }
}

/// The gateway alone on a free port, in front of `targets`, stopping with
/// `shared`'s shutdown.
pub async fn start_gateway(
    config: &Settings,
    targets: guichet_gateway::Targets,
    shared: &guichet_kit::service::Shared,
) -> guichet_gateway::server::Running {
    guichet_gateway::start(
        config,
        &config.access,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        targets,
        shared.clock.clone(),
        shared.metrics.clone(),
        shared.shutdown.clone(),
    )
    .await
    .expect("start the gateway")
}

/// Web intake, instruction and the gateway, each with its own configuration
/// and bus, as separate processes would have (a fault test cuts one bus or
/// one database and not the other).
pub struct Services {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: Shutdown,
    tasks: Vec<guichet_kit::service::Tasks>,
}

impl Services {
    pub async fn start(
        intake: (&Config, guichet_kit::bus::SharedBus),
        instruction: (&Settings, guichet_kit::bus::SharedBus),
        gateway: &Settings,
    ) -> Self {
        let shutdown = Shutdown::new();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let clock = guichet_kit::clock::system();
        let metrics = guichet_kit::Metrics::new();
        let shared = |bus| guichet_kit::service::Shared {
            bus,
            clock: clock.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
        };
        let instruction = guichet_instruction::start(
            instruction.0,
            &instruction.0.instruction,
            any,
            &shared(instruction.1),
        )
        .await
        .expect("start instruction");
        let intake_shared = shared(intake.1);
        let intake = guichet_intake_web::start(intake.0, any, &intake_shared)
            .await
            .expect("start web intake");
        let targets = guichet_gateway::Targets {
            intake_web: guichet_kit::grpc::url_of(intake.grpc_addr),
            instruction: guichet_kit::grpc::url_of(instruction.grpc_addr),
            // Not started: these tests file online only.
            ..not_started()
        };
        let gateway = start_gateway(gateway, targets, &intake_shared).await;
        Self {
            base: format!("http://{}", gateway.http_addr),
            http: reqwest::Client::new(),
            shutdown,
            tasks: vec![instruction.tasks, intake.tasks, gateway.tasks],
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            for set in &mut self.tasks {
                set.join_all().await;
            }
        })
        .await;
    }
}

/// The online route alone: the gateway, web intake and instruction.
pub const ONLINE: &[&str] = &["gateway", "intake-web", "instruction"];

impl App {
    /// The whole mesh on the system clock.
    pub async fn start(config: &Settings) -> Self {
        Self::builder(config).start().await
    }

    /// The whole mesh on the system clock, unless told otherwise.
    pub fn builder(config: &Settings) -> AppBuilder<'_> {
        AppBuilder {
            config,
            only: &guichet::SERVICE_NAMES,
            clock: guichet_kit::clock::system(),
            bus: None,
            gateway_port: 0,
        }
    }

    /// A request to the gateway as the agent `uid` (signed in).
    pub fn as_agent(
        &self,
        method: reqwest::Method,
        uid: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", bearer(uid))
    }

    /// `GET` as the mailroom's operator.
    pub async fn mailroom_get(&self, path: &str) -> reqwest::Response {
        self.as_agent(reqwest::Method::GET, "mailroom-1", path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET` as the mailroom's operator, and its JSON body.
    pub async fn mailroom_get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.mailroom_get(path)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: JSON body: {e}"))
    }

    /// `POST` JSON as a mailroom operator: the one the body names as
    /// `operator_id` (who keys signs in as themselves), else `mailroom-1`.
    pub async fn mailroom_post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        let operator = body["operator_id"].as_str().unwrap_or("mailroom-1");
        self.as_agent(reqwest::Method::POST, operator, path)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET` a path of the gateway (`/api/v1/...`).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET` a path of the gateway and read its JSON body, whatever the status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: JSON body: {e}"))
    }

    /// `POST` a JSON body to a path of the gateway.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST` a JSON body to an agent's route, as `agent` (signed in).
    pub async fn agent_post(
        &self,
        agent: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("Authorization", bearer(agent))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} as {agent}: {e}"))
    }

    /// `GET` an agent's route, as `agent` (signed in).
    pub async fn agent_get(&self, agent: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("Authorization", bearer(agent))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} as {agent}: {e}"))
    }

    /// Waits until instruction's sweep has completed two more rounds: one
    /// whole round, at least, began after this call. A test that asserts a
    /// sweep did nothing waits for this, not for a while.
    pub async fn two_more_sweeps(&self) {
        let labels = guichet_kit::metrics::ServiceLabels {
            service: guichet_instruction::server::SCHEMA,
        };
        let rounds = self.metrics.sweeps_completed.get_or_create(&labels).clone();
        let from = rounds.get();
        eventually(
            Duration::from_secs(20),
            "two more rounds of instruction's sweep",
            || async { (rounds.get() >= from + 2).then_some(()) },
        )
        .await;
    }

    /// A gRPC channel to the gateway, connected, signed in as `uid`.
    pub async fn grpc_as(&self, uid: &str) -> AuthChannel {
        signed_in(self.grpc().await, uid)
    }

    /// A gRPC channel to the gateway, connected.
    pub async fn grpc(&self) -> tonic::transport::Channel {
        grpc_channel(&self.base).await
    }

    pub async fn file(&self, body: &serde_json::Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/api/v1/dossiers", self.base))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST /api/v1/dossiers")
    }

    /// Files `body` online, which must be accepted: the new dossier's reference.
    pub async fn file_accepted(&self, body: &serde_json::Value) -> String {
        let r = self.file(body, None).await;
        assert_eq!(r.status(), 201);
        r.json::<serde_json::Value>().await.expect("a JSON answer")["reference"]
            .as_str()
            .expect("a reference in the answer")
            .to_string()
    }

    /// A dossier's state and history, as the call centre (which may see
    /// every prefecture's) reads it.
    pub async fn dossier(&self, reference: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/v1/dossiers/{reference}", self.base))
            .header("Authorization", bearer("ccc-1"))
            .send()
            .await
            .expect("GET /api/v1/dossiers/{reference}")
    }

    /// A postal dossier for tests about the queue, not about paper: put
    /// straight on the bus as the postal service publishes it, postmarked
    /// and received on the dates given; waits until instruction has it. The
    /// paper route itself (scans, reading, keying) is `tests/integration/postal.rs`.
    pub async fn file_by_post(
        &self,
        body: &serde_json::Value,
        postmarked: chrono::NaiveDate,
        received: chrono::NaiveDate,
    ) -> String {
        use guichet_dossier::filing::RawProvenance;
        use guichet_dossier::{Channel, Dossier, Filing, RawFiling, Reference};
        let mut raw: RawFiling = serde_json::from_value(body.clone()).expect("a filing body");
        raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
        let provenance = RawProvenance::Postal {
            station_id: Some("station-59-1".into()),
            envelope_id: Some(uuid::Uuid::new_v4().to_string()),
            postmark_date: Some(postmarked.to_string()),
            reception_date: Some(received.to_string()),
        };
        let filing = Filing::parse(&raw, &provenance, received).expect("a valid postal filing");
        let now = chrono::Utc::now();
        let reference = Reference::generate(Channel::Postal, 2026, &mut rand::rng());
        let dossier = Dossier::new(reference.clone(), filing, now, now);
        let message = guichet_intake::ledger::dossier_message(&dossier);
        assert!(self.postal_bus.publish(&[message]).await[0].is_ok());
        let reference = reference.to_string();
        eventually(
            Duration::from_secs(20),
            "the postal dossier in instruction",
            || async { (self.dossier(&reference).await.status() == 200).then_some(()) },
        )
        .await;
        reference
    }

    /// The value of one series on the gateway's `/metrics` (`name{labels}`), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(series)?;
                rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
            })
            .unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.mesh.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// A test's own database and vhost (or data folder) on `backend`, and the
/// whole mesh on them.
pub async fn mesh_on(backend: Backend) -> (TestEnv, App) {
    let env = TestEnv::on(backend).await;
    let app = App::start(&env.config()).await;
    (env, app)
}

/// The end of a test: the mesh stopped, then its database and vhost dropped.
pub async fn stop(app: App, env: TestEnv) {
    app.stop().await;
    env.cleanup().await;
}

/// A gRPC channel to `url` (`http://host:port`), connected.
pub async fn grpc_channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("a gRPC URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The fields a gRPC refusal names, in its order.
pub fn refused_fields(status: &tonic::Status) -> Vec<String> {
    guichet_kit::ServiceError::from_status(status)
        .violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// A loopback port free now, for a child process to listen on.
///
/// Taken below the kernel's ephemeral range: a port the kernel picked for a
/// bind to port 0 and that was released could be handed to a client's
/// connection, or to another bind to port 0, before the child binds it.
/// Nothing picks from below that range on its own; within this process each
/// call takes the next port, and each process starts at an offset of its own.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_from: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let first = ephemeral_from.checked_sub(SPAN).filter(|f| *f >= 1_024).unwrap_or_else(|| {
        panic!("the ephemeral range starts at {ephemeral_from}: no room below it for the tests' ports")
    });
    let offset = std::process::id() * 7_919 % SPAN;
    for _ in 0..SPAN {
        let port = first + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).expect("a port");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {first} to {}", first + SPAN - 1)
}

/// The fields a JSON error body names, in its order.
pub fn error_fields(body: &serde_json::Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("an error body: {body}"))
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_string))
        .collect()
}

/// What the first error of a JSON error body says.
pub fn first_problem(body: &serde_json::Value) -> &str {
    body["errors"][0]["problem"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body: {body}"))
}

/// Polls `check` until it gives `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every example filing shipped in `examples/filings/`, by file name.
pub fn example_filings() -> Vec<(String, serde_json::Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/filings");
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(&dir)
        .expect("examples/filings exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable example");
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, serde_json::from_str(&text).expect("example is JSON"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn example(name: &str) -> serde_json::Value {
    example_filings()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no example {name}"))
}

/// A desk open Monday to Friday from `opens` to noon: two desks, slots of
/// 30 minutes with two places each.
pub fn weekday_site(
    id: &str,
    name: &str,
    prefecture: &str,
    opens: &str,
) -> guichet_proto::v1::Site {
    use guichet_proto::v1 as pb;
    pb::Site {
        id: id.into(),
        name: name.into(),
        prefecture: prefecture.into(),
        kind: pb::SiteKind::Prefecture as i32,
        address: None,
        opening_hours: (1..=5)
            .map(|d| pb::OpeningHours {
                weekday: d,
                opens: opens.into(),
                closes: "12:00".into(),
            })
            .collect(),
        desks: 2,
        slot_minutes: 30,
        places_per_slot: 2,
        places_for_reports: 0,
    }
}

/// A one-page PDF as Guichet prints them, saying `text`.
pub fn letter_pdf(text: &str) -> Vec<u8> {
    guichet_kit::pdf::letter_pdf(&guichet_kit::pdf::LetterText {
        addressee: vec!["Mme Amina Benali".into()],
        place_and_date: "Lille, le 2 mars 2027".into(),
        subject: text.into(),
        paragraphs: vec![text.into()],
        reference: "scan".into(),
    })
}

/// A 4 × 4 white PNG: a page with nothing on it.
pub fn tiny_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(4, 4, image::Luma([255]))
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// Every file under `dir`, however deep (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// One number from either backend (plain SQL both understand).
pub async fn count(db: &Database, sql: &str) -> i64 {
    match db {
        Database::Postgres(p, _) => sqlx::query_scalar(sql).fetch_one(p).await.expect(sql),
        Database::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect(sql),
    }
}

/// The text of a PDF, through `pdftotext` (poppler-utils), words joined by
/// single spaces.
pub fn pdf_text(pdf: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) runs");
    child
        .stdin
        .take()
        .expect("pdftotext's input")
        .write_all(pdf)
        .expect("the PDF written to pdftotext");
    let out = child.wait_with_output().expect("pdftotext's output");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8(out.stdout)
        .expect("pdftotext writes UTF-8")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
