//! What every service does first: open its database (own schema or own
//! file) and run its migrations, and bind its gRPC listener, so start-up reads
//! the same everywhere and tests can pass port 0. The bus is made once per
//! process (`open_bus`) and shared by the services in it.

use std::net::SocketAddr;
use std::sync::Arc;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinError, JoinSet};

use crate::shutdown::Shutdown;

use crate::bus::{AmqpBus, LocalBus, SharedBus};
use crate::db::{Database, DbError, Migrations};
use crate::{Config, grpc};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot open the in-process bus")]
    Bus(#[from] crate::bus::BusError),
    #[error("cannot open the document store")]
    Documents(#[from] crate::documents::OpenError),
    #[error("cannot create the data folder {0}")]
    DataDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a usable service URL: {1}")]
    Target(String, String),
    #[error(
        "`serve {0}` runs one service per process, which needs a shared broker: set GUICHET_AMQP_URL (or use `guichet up`)"
    )]
    NeedsBroker(String),
}

/// RabbitMQ when `GUICHET_AMQP_URL` is set; otherwise the in-process bus in
/// `<data_dir>/bus.sqlite`, which only one process may open. A service
/// (`name` one of the services) with a broker user of its own
/// (`GUICHET_AMQP_USER_<SERVICE>`) logs in as that user.
pub async fn open_bus(config: &Config, name: &str) -> Result<SharedBus, StartError> {
    match &config.amqp_url {
        Some(url) => {
            if !config.amqp_allow_plaintext && crate::bus::amqp::plaintext_to_another_host(url) {
                return Err(StartError::Target(
                    "GUICHET_AMQP_URL".into(),
                    "amqp:// sends passwords and personal data without TLS to a broker on \
                     another host: use amqps:// (with GUICHET_AMQP_CA_FILE for a private \
                     authority), or set GUICHET_AMQP_ALLOW_PLAINTEXT=true on a private network"
                        .into(),
                ));
            }
            let mut bus = AmqpBus::new(url, name, config.delivery_limit);
            if let Some(path) = &config.amqp_ca_file {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Target(
                        "GUICHET_AMQP_CA_FILE".into(),
                        format!("{}: {e}", path.display()),
                    )
                })?;
                bus = bus.with_ca(pem);
            }
            Ok(Arc::new(match config.bus_users.credentials(name) {
                Some(own) => bus.as_service(own, name == crate::bus::users::TOPOLOGY_OWNER),
                None => bus,
            }))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
            let bus =
                LocalBus::open(&config.data_dir.join("bus.sqlite"), config.delivery_limit).await?;
            Ok(Arc::new(bus))
        }
    }
}

/// Where a service takes its gRPC calls: an address to bind now, or a
/// listener bound already, so that a peer started before it can be told its
/// address (the call centre and the desk each call the other).
pub enum Listen {
    Addr(SocketAddr),
    Bound(TcpListener),
}

impl Listen {
    /// The listener, bound now if it was not yet, and its address; the
    /// address asked for with the error when it cannot be had.
    pub async fn open(self) -> Result<(TcpListener, SocketAddr), (SocketAddr, std::io::Error)> {
        match self {
            Listen::Addr(addr) => grpc::bind(addr).await.map_err(|e| (addr, e)),
            Listen::Bound(listener) => {
                let addr = listener
                    .local_addr()
                    .map_err(|e| (SocketAddr::from(([0, 0, 0, 0], 0)), e))?;
                Ok((listener, addr))
            }
        }
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Addr(addr)
    }
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Self {
        Listen::Bound(listener)
    }
}

/// A service's database and listener, ready to build on.
pub struct Foundations {
    pub db: Database,
    pub listener: TcpListener,
    pub grpc_addr: SocketAddr,
    /// The most calls in flight (`GUICHET_GRPC_MAX_IN_FLIGHT`), the latency
    /// the bound under it keeps to (`GUICHET_LATENCY_TARGET_MS`), and the
    /// process's figures, where refusals and the bound are shown.
    capacity: (usize, std::time::Duration, crate::Metrics),
}

impl Foundations {
    /// Serves `routes` (the gRPC service `name`, with health and reflection)
    /// on the prepared listener, beside the service's own `tasks`: the
    /// service is ready once this returns.
    pub async fn serve(
        self,
        tasks: Tasks,
        routes: tonic::service::Routes,
        name: &'static str,
        shutdown: &Shutdown,
    ) -> Running {
        self.serve_with_limit(
            tasks,
            routes,
            name,
            crate::grpc_check::DEFAULT_MAX_MESSAGE_BYTES,
            shutdown,
        )
        .await
    }

    /// The same, for a service that takes messages larger than tonic's
    /// default (scanned pages).
    pub async fn serve_with_limit(
        self,
        mut tasks: Tasks,
        routes: tonic::service::Routes,
        name: &'static str,
        max_message_bytes: usize,
        shutdown: &Shutdown,
    ) -> Running {
        let (ceiling, target, metrics) = self.capacity;
        let refused = metrics
            .requests_shed
            .get_or_create(&crate::metrics::ServiceLabels { service: name })
            .clone();
        let limit = crate::capacity::adaptive(name, (ceiling, target), &metrics);
        let health = grpc::spawn_server(
            &mut tasks,
            self.listener,
            routes,
            name,
            grpc::Limits {
                max_message_bytes,
                capacity: crate::capacity::CapacityLayer::new(limit, name, refused),
            },
            shutdown.clone(),
        )
        .await;
        tracing::info!(grpc_addr = %self.grpc_addr, service = name, "ready");
        Running {
            grpc_addr: self.grpc_addr,
            db: self.db,
            tasks,
            health,
        }
    }
}

/// A client of another service, at a URL the configuration names.
pub fn client_channel(url: &str) -> Result<grpc::TracedChannel, StartError> {
    grpc::channel(url).map_err(|e| StartError::Target(url.to_string(), e.to_string()))
}

pub async fn prepare(
    config: &Config,
    schema: &str,
    migrations: &Migrations,
    listen: impl Into<Listen>,
    metrics: &crate::Metrics,
) -> Result<Foundations, StartError> {
    let db = Database::open(
        config.database_url.as_deref(),
        &config.data_dir,
        schema,
        config.db_pool(),
        migrations,
    )
    .await?;
    let (listener, grpc_addr) = listen
        .into()
        .open()
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })?;
    Ok(Foundations {
        db,
        listener,
        grpc_addr,
        capacity: (
            config.grpc_max_in_flight,
            config.latency_target(),
            metrics.clone(),
        ),
    })
}

/// What the services of one process share: the bus, the clock, the shutdown
/// signal and the figures for `/metrics`.
#[derive(Clone)]
pub struct Shared {
    pub bus: SharedBus,
    pub clock: crate::clock::SharedClock,
    pub shutdown: crate::shutdown::Shutdown,
    pub metrics: crate::Metrics,
}

/// A started service: its real gRPC address, its database, its tasks and
/// the health it reports.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub db: Database,
    pub tasks: Tasks,
    pub health: Health,
}

/// A service's tasks, each with a name: the supervisor says which one
/// stopped, and an operator (or a test) can stop one by name.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
    handles: Vec<(&'static str, AbortHandle)>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
        self.handles.push((name, handle));
    }

    /// Aborts the tasks called `name`; whether there were any.
    pub fn abort(&self, name: &str) -> bool {
        let mut found = false;
        for (n, h) in &self.handles {
            if *n == name {
                h.abort();
                found = true;
            }
        }
        found
    }

    /// Every task's name and abort handle, for whoever must be able to stop
    /// one after the tasks are handed to `supervise`.
    pub fn abort_handles(&self) -> impl Iterator<Item = (&'static str, AbortHandle)> + '_ {
        self.handles.iter().map(|(n, h)| (*n, h.clone()))
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The next task to finish: its name, and whether it returned or
    /// panicked (or was aborted).
    pub async fn join_next(&mut self) -> Option<(&'static str, Result<(), JoinError>)> {
        let (id, result) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, Ok(())),
            Err(e) => (e.id(), Err(e)),
        };
        Some((self.names.get(&id).copied().unwrap_or("unnamed"), result))
    }

    /// Waits for every task to finish.
    pub async fn join_all(&mut self) {
        while self.join_next().await.is_some() {}
    }
}

/// What a service tells the gRPC health protocol (and through it, the
/// gateway's `/readyz`): serving until one of its tasks stops.
#[derive(Clone)]
pub struct Health {
    reporter: tonic_health::server::HealthReporter,
    services: Vec<&'static str>,
}

impl Health {
    pub fn new(
        reporter: tonic_health::server::HealthReporter,
        services: Vec<&'static str>,
    ) -> Self {
        Self { reporter, services }
    }

    /// Every service name this process answers for, and the overall "",
    /// turns NOT_SERVING.
    pub async fn set_not_serving(&self) {
        for name in self.services.iter().copied().chain([""]) {
            self.reporter
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    }
}

/// A service that stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("{service}: task {task} {how} before shutdown")]
pub struct TaskEnded {
    pub service: &'static str,
    pub task: &'static str,
    pub how: &'static str,
}

/// Waits for a process's supervised services: until `shutdown` (then for
/// them to drain, at most `grace`), or until one fails (it stops the process
/// itself). Returns the first failure, for the process to exit non-zero.
pub async fn wait_supervised(
    mut services: JoinSet<Result<(), TaskEnded>>,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<(), TaskEnded> {
    let mut failure = None;
    let mut note = |outcome: Option<Result<Result<(), TaskEnded>, JoinError>>| match outcome {
        Some(Ok(Err(e))) => {
            failure.get_or_insert(e);
        }
        Some(Err(e)) => {
            failure.get_or_insert(TaskEnded {
                service: "guichet",
                task: "supervisor",
                how: if e.is_panic() {
                    "panicked"
                } else {
                    "was aborted"
                },
            });
        }
        _ => {}
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = services.join_next() => {
                if next.is_none() {
                    break;
                }
                note(next);
            }
        }
    }
    let drained = tokio::time::timeout(grace, async {
        while let Some(next) = services.join_next().await {
            note(Some(next));
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(?grace, "shutdown grace period over, stopping anyway");
    }
    failure.map_or(Ok(()), Err)
}

/// How long a failed service reports itself not ready before the process
/// stops: long enough for `/readyz` and health checks to see it.
pub const UNREADY_BEFORE_EXIT: Duration = Duration::from_secs(1);

impl Running {
    /// `supervise`, for this service's tasks and health.
    pub async fn supervise(
        self,
        service: &'static str,
        service_stop: Shutdown,
        shutdown: Shutdown,
    ) -> Result<(), TaskEnded> {
        supervise(
            service,
            self.tasks,
            Some(self.health),
            service_stop,
            shutdown,
        )
        .await
    }
}

/// Watches a service's tasks until `shutdown`. A task that ends (or panics)
/// before then is a failure: the service turns NOT_SERVING and stops taking
/// work (`service_stop`, its own shutdown, is cancelled); after
/// `UNREADY_BEFORE_EXIT` the whole process is asked to stop (`shutdown`),
/// and the error names the task, so the process exits non-zero and its
/// supervisor (systemd, Kubernetes, compose) starts it again. Returns once
/// every task has finished.
pub async fn supervise(
    service: &'static str,
    mut tasks: Tasks,
    health: Option<Health>,
    service_stop: Shutdown,
    shutdown: Shutdown,
) -> Result<(), TaskEnded> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                tasks.join_all().await;
                return Ok(());
            }
            next = tasks.join_next() => {
                let Some((task, result)) = next else {
                    // Nothing left to watch: wait for the end.
                    shutdown.cancelled().await;
                    return Ok(());
                };
                if shutdown.is_cancelled() || service_stop.is_cancelled() {
                    continue;
                }
                let how = match &result {
                    Ok(()) => "ended",
                    Err(e) if e.is_panic() => "panicked",
                    Err(_) => "was aborted",
                };
                tracing::error!(service, task, how, "a task stopped before shutdown: the service stops taking work");
                if let Some(health) = &health {
                    health.set_not_serving().await;
                }
                service_stop.cancel();
                tokio::time::sleep(UNREADY_BEFORE_EXIT).await;
                shutdown.cancel();
                tasks.join_all().await;
                return Err(TaskEnded { service, task, how });
            }
        }
    }
}
