//! The whole mesh in one process (`guichet up`), or one service alone
//! (`guichet serve <service>`): the same library code either way.
#![forbid(unsafe_code)]

pub mod dev;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use guichet_gateway::Targets;
use guichet_kit::Config;
use guichet_kit::service::{Health, Running, Shared, TaskEnded, Tasks, supervise};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    Service(#[from] guichet_kit::service::StartError),
    #[error("gateway")]
    Gateway(#[from] guichet_gateway::server::StartError),
    #[error("no service is called {0:?} (one of {SERVICE_NAMES:?})")]
    UnknownService(String),
}

/// Everything Guichet reads from `GUICHET_*` variables or flags: the kit's
/// common settings, and each service's own section. Reads as the common
/// settings where those are what is asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[command(flatten)]
    pub common: Config,
    #[command(flatten)]
    pub instruction: guichet_instruction::settings::InstructionSettings,
    #[command(flatten)]
    pub call_centre: guichet_intake_ccc::settings::CallCentreSettings,
    #[command(flatten)]
    pub mailroom: guichet_intake_postal::settings::MailroomSettings,
    #[command(flatten)]
    pub notifier: guichet_notifier::settings::NotifierSettings,
    #[command(flatten)]
    pub access: guichet_gateway::AccessSettings,
}

impl Settings {
    /// From the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }
}

impl std::ops::Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.common
    }
}

impl std::ops::DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.common
    }
}

/// A service once it listens: its address, its tasks, and (for the services
/// behind the gateway) the health it reports over gRPC.
pub struct Started {
    pub addr: SocketAddr,
    pub tasks: Tasks,
    pub health: Option<Health>,
}

impl From<Running> for Started {
    fn from(r: Running) -> Self {
        Started {
            addr: r.grpc_addr,
            tasks: r.tasks,
            health: Some(r.health),
        }
    }
}

pub type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<Started, MeshError>> + Send + 'a>>;

/// One row of the table of services: everything `guichet up` and
/// `guichet serve <name>` need to know of a service.
pub struct Service {
    pub name: &'static str,
    /// The name its logs and traces carry.
    pub log_name: &'static str,
    /// Where `serve <name>` listens, from the settings.
    pub listen_on: fn(&Settings) -> SocketAddr,
    /// Where `serve <name>` answers `/metrics` unless `GUICHET_METRICS_ADDR`
    /// says otherwise; `None` for the gateway, which serves its own.
    pub metrics_port: Option<u16>,
    /// Whether it publishes or consumes on the bus.
    pub uses_bus: bool,
    /// Starts it on `listener`, reaching the others at `peers`.
    pub start: for<'a> fn(&'a Settings, TcpListener, &'a Targets, &'a Shared) -> StartFuture<'a>,
}

/// Every service, in the order the mesh starts them.
pub const SERVICES: [Service; 7] = [
    Service {
        name: "instruction",
        log_name: "guichet-instruction",
        listen_on: |c| c.instruction_addr,
        metrics_port: Some(9162),
        uses_bus: true,
        start: |c, listener, _, shared| {
            Box::pin(async move {
                let r = guichet_instruction::start(c, &c.instruction, listener, shared).await?;
                Ok(r.into())
            })
        },
    },
    Service {
        name: "intake-web",
        log_name: "guichet-intake-web",
        listen_on: |c| c.intake_web_addr,
        metrics_port: Some(9161),
        uses_bus: true,
        start: |c, listener, _, shared| {
            Box::pin(
                async move { Ok(guichet_intake_web::start(c, listener, shared).await?.into()) },
            )
        },
    },
    Service {
        name: "intake-ccc",
        log_name: "guichet-intake-ccc",
        listen_on: |c| c.intake_ccc_addr,
        metrics_port: Some(9163),
        uses_bus: true,
        start: |c, listener, peers, shared| {
            Box::pin(async move {
                let r = guichet_intake_ccc::start(
                    c,
                    &c.call_centre,
                    listener,
                    &peers.instruction,
                    &peers.intake_pan,
                    shared,
                )
                .await?;
                Ok(r.into())
            })
        },
    },
    Service {
        name: "intake-pan",
        log_name: "guichet-intake-pan",
        listen_on: |c| c.intake_pan_addr,
        metrics_port: Some(9164),
        uses_bus: true,
        start: |c, listener, peers, shared| {
            Box::pin(async move {
                let r = guichet_intake_pan::start(c, listener, &peers.intake_ccc, shared).await?;
                Ok(r.into())
            })
        },
    },
    Service {
        name: "intake-postal",
        log_name: "guichet-intake-postal",
        listen_on: |c| c.intake_postal_addr,
        metrics_port: Some(9165),
        uses_bus: true,
        start: |c, listener, _, shared| {
            Box::pin(async move {
                let r = guichet_intake_postal::start(c, &c.mailroom, listener, shared).await?;
                Ok(r.into())
            })
        },
    },
    Service {
        name: "notifier",
        log_name: "guichet-notifier",
        listen_on: |c| c.notifier_addr,
        metrics_port: Some(9166),
        uses_bus: true,
        start: |c, listener, _, shared| {
            Box::pin(async move {
                let r = guichet_notifier::start(c, &c.notifier, listener, shared).await?;
                Ok(r.into())
            })
        },
    },
    Service {
        name: "gateway",
        log_name: "guichet-gateway",
        listen_on: |c| c.http_addr,
        metrics_port: None,
        uses_bus: false,
        start: |c, listener, peers, shared| {
            Box::pin(async move {
                let g = guichet_gateway::start(
                    c,
                    &c.access,
                    listener,
                    peers.clone(),
                    shared.clock.clone(),
                    shared.metrics.clone(),
                    shared.shutdown.clone(),
                )
                .await?;
                Ok(Started {
                    addr: g.http_addr,
                    tasks: g.tasks,
                    health: None,
                })
            })
        },
    },
];

/// The services' names, in the table's order.
pub const SERVICE_NAMES: [&str; 7] = [
    SERVICES[0].name,
    SERVICES[1].name,
    SERVICES[2].name,
    SERVICES[3].name,
    SERVICES[4].name,
    SERVICES[5].name,
    SERVICES[6].name,
];

/// The row of the service called `name`.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// Where each service is, from the settings (`GUICHET_*_URL`): what a
/// service run alone is told of the others.
pub fn configured_peers(c: &Settings) -> Targets {
    Targets {
        intake_web: c.intake_web_url.clone(),
        instruction: c.instruction_url.clone(),
        intake_ccc: c.intake_ccc_url.clone(),
        intake_pan: c.intake_pan_url.clone(),
        intake_postal: c.intake_postal_url.clone(),
        notifier: c.notifier_url.clone(),
    }
}

/// Every service and the gateway, started in this process.
pub struct Mesh {
    pub bus: guichet_kit::bus::SharedBus,
    pub http_addr: SocketAddr,
    pub intake_web_addr: SocketAddr,
    pub intake_ccc_addr: SocketAddr,
    pub intake_pan_addr: SocketAddr,
    pub intake_postal_addr: SocketAddr,
    pub instruction_addr: SocketAddr,
    pub notifier_addr: SocketAddr,
    /// One supervisor per service (see `guichet_kit::service::supervise`).
    pub tasks: JoinSet<Result<(), TaskEnded>>,
    /// (service, task, handle), to stop one task by hand.
    pub handles: Vec<(&'static str, &'static str, AbortHandle)>,
    /// Bound and never listening: the address of a service not started
    /// (`start_mesh_of`), where every connection is refused, as if it were down.
    _not_started: Option<tokio::net::TcpSocket>,
}

impl Mesh {
    /// Aborts the task `task` of `service`, as a crash would end it; whether
    /// there was one. The supervisor then stops the process.
    pub fn abort(&self, service: &str, task: &str) -> bool {
        let mut found = false;
        for (s, t, h) in &self.handles {
            if *s == service && *t == task {
                h.abort();
                found = true;
            }
        }
        found
    }
}

/// Starts instruction, intake and the gateway over the shared bus (RabbitMQ
/// or the in-process bus, see `guichet_kit::service::open_bus`). Services
/// listen on free loopback ports (they are reached through the gateway); the
/// gateway on `http_addr`, where its `/metrics` shows every service's figures.
pub async fn start_mesh(
    config: &Settings,
    http_addr: SocketAddr,
    shared: &Shared,
) -> Result<Mesh, MeshError> {
    start_mesh_of(config, http_addr, shared, &SERVICE_NAMES).await
}

/// `start_mesh` with only the services named in `only` (of `SERVICES`), for
/// tests that need part of the mesh: the others are not started, and their
/// address refuses every connection.
///
/// Every listener is bound first, so each service is told where the others
/// are (the call centre and the desk each call the other) before any starts.
pub async fn start_mesh_of(
    config: &Settings,
    http_addr: SocketAddr,
    shared: &Shared,
    only: &[&str],
) -> Result<Mesh, MeshError> {
    if let Some(unknown) = only.iter().find(|s| service(s).is_none()) {
        return Err(MeshError::UnknownService(unknown.to_string()));
    }
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let bind_error = |addr| move |source| guichet_kit::service::StartError::Bind { addr, source };
    let wanted: Vec<&'static Service> =
        SERVICES.iter().filter(|s| only.contains(&s.name)).collect();
    let (not_started, nowhere) = if wanted.len() == SERVICES.len() {
        (None, any_port)
    } else {
        let socket = tokio::net::TcpSocket::new_v4().map_err(bind_error(any_port))?;
        socket.bind(any_port).map_err(bind_error(any_port))?;
        let addr = socket.local_addr().map_err(bind_error(any_port))?;
        (Some(socket), addr)
    };
    let mut bound = Vec::new();
    for s in wanted {
        let addr = if s.name == "gateway" {
            http_addr
        } else {
            any_port
        };
        let (listener, at) = guichet_kit::grpc::bind(addr)
            .await
            .map_err(bind_error(addr))?;
        bound.push((s, listener, at));
    }
    let addr_of = |name: &str| {
        bound
            .iter()
            .find(|(s, _, _)| s.name == name)
            .map_or(nowhere, |(_, _, at)| *at)
    };
    let url_of = |name: &str| guichet_kit::grpc::url_of(addr_of(name));
    let peers = Targets {
        intake_web: url_of("intake-web"),
        instruction: url_of("instruction"),
        intake_ccc: url_of("intake-ccc"),
        intake_pan: url_of("intake-pan"),
        intake_postal: url_of("intake-postal"),
        notifier: url_of("notifier"),
    };
    let mut mesh = Mesh {
        bus: shared.bus.clone(),
        http_addr: addr_of("gateway"),
        intake_web_addr: addr_of("intake-web"),
        intake_ccc_addr: addr_of("intake-ccc"),
        intake_pan_addr: addr_of("intake-pan"),
        intake_postal_addr: addr_of("intake-postal"),
        instruction_addr: addr_of("instruction"),
        notifier_addr: addr_of("notifier"),
        tasks: JoinSet::new(),
        handles: Vec::new(),
        _not_started: not_started,
    };
    for (s, listener, _) in bound {
        // Each service stops on a token of its own, child of the process's,
        // so a failed one stops taking work at once and the process stops
        // them all.
        let stop = shared.shutdown.child_token();
        let mut mine = Shared {
            shutdown: stop.clone(),
            ..shared.clone()
        };
        // A service with a broker user of its own logs in as itself, not
        // over the process's shared connection.
        if config.amqp_url.is_some() && config.bus_users.credentials(s.name).is_some() {
            mine.bus = guichet_kit::service::open_bus(config, s.name).await?;
        }
        let started = (s.start)(config, listener, &peers, &mine).await?;
        mesh.handles.extend(
            started
                .tasks
                .abort_handles()
                .map(|(task, h)| (s.name, task, h)),
        );
        mesh.tasks.spawn(supervise(
            s.name,
            started.tasks,
            started.health,
            stop,
            shared.shutdown.clone(),
        ));
    }
    Ok(mesh)
}
