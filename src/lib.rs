//! The whole mesh in one process (`guichet up`), or one service alone
//! (`guichet serve <service>`): the same library code either way.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use guichet_kit::Config;
use guichet_kit::service::{Shared, TaskEnded, supervise};
use tokio::task::{AbortHandle, JoinSet};

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    Service(#[from] guichet_kit::service::StartError),
    #[error("gateway")]
    Gateway(#[from] guichet_gateway::server::StartError),
    #[error("no service is called {0:?} (one of {SERVICES:?})")]
    UnknownService(String),
}

/// What `start_mesh` starts, by the names the supervisor gives them.
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

pub const SERVICES: [&str; 6] = [
    "instruction",
    "intake-web",
    "intake-ccc",
    "intake-pan",
    "intake-postal",
    "gateway",
];

/// Every service and the gateway, started in this process.
pub struct Mesh {
    pub bus: guichet_kit::bus::SharedBus,
    pub http_addr: SocketAddr,
    pub intake_web_addr: SocketAddr,
    pub intake_ccc_addr: SocketAddr,
    pub intake_pan_addr: SocketAddr,
    pub intake_postal_addr: SocketAddr,
    pub instruction_addr: SocketAddr,
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
    start_mesh_of(config, http_addr, shared, &SERVICES).await
}

/// `start_mesh` with only the services named in `only` (of `SERVICES`), for
/// tests that need part of the mesh: the others are not started, and their
/// address refuses every connection.
pub async fn start_mesh_of(
    config: &Settings,
    http_addr: SocketAddr,
    shared: &Shared,
    only: &[&str],
) -> Result<Mesh, MeshError> {
    if let Some(unknown) = only.iter().find(|s| !SERVICES.contains(s)) {
        return Err(MeshError::UnknownService(unknown.to_string()));
    }
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let bind_error = |source| guichet_kit::service::StartError::Bind {
        addr: any_port,
        source,
    };
    let wanted = |service: &str| only.contains(&service);
    let (not_started, nowhere) = if SERVICES.iter().all(|s| wanted(s)) {
        (None, any_port)
    } else {
        let socket = tokio::net::TcpSocket::new_v4().map_err(bind_error)?;
        socket.bind(any_port).map_err(bind_error)?;
        let addr = socket.local_addr().map_err(bind_error)?;
        (Some(socket), addr)
    };
    // Each service stops on a token of its own, child of the process's, so
    // a failed one stops taking work at once and the process stops them all.
    let own = || {
        let stop = shared.shutdown.child_token();
        let mine = Shared {
            shutdown: stop.clone(),
            ..shared.clone()
        };
        (stop, mine)
    };
    let mut started = Vec::new();
    let mut instruction_addr = nowhere;
    if wanted("instruction") {
        let (stop, mine) = own();
        let running =
            guichet_instruction::start(config, &config.instruction, any_port, &mine).await?;
        instruction_addr = running.grpc_addr;
        started.push(("instruction", stop, running));
    }
    let instruction_url = guichet_kit::grpc::url_of(instruction_addr);
    let mut intake_web_addr = nowhere;
    if wanted("intake-web") {
        let (stop, mine) = own();
        let running = guichet_intake_web::start(config, any_port, &mine).await?;
        intake_web_addr = running.grpc_addr;
        started.push(("intake-web", stop, running));
    }
    // The call centre and the desk each ask the other (an appointment offered
    // to a report, a report named by a booking): the desk's listener is bound
    // first, so the call centre is told where it is.
    let (pan_listener, intake_pan_addr) = if wanted("intake-pan") {
        let (listener, addr) = guichet_kit::grpc::bind(any_port)
            .await
            .map_err(bind_error)?;
        (Some(listener), addr)
    } else {
        (None, nowhere)
    };
    let pan_url = guichet_kit::grpc::url_of(intake_pan_addr);
    let mut intake_ccc_addr = nowhere;
    if wanted("intake-ccc") {
        let (stop, mine) = own();
        let running = guichet_intake_ccc::start(
            config,
            &config.call_centre,
            any_port,
            &instruction_url,
            &pan_url,
            &mine,
        )
        .await?;
        intake_ccc_addr = running.grpc_addr;
        started.push(("intake-ccc", stop, running));
    }
    let ccc_url = guichet_kit::grpc::url_of(intake_ccc_addr);
    if let Some(listener) = pan_listener {
        let (stop, mine) = own();
        let running = guichet_intake_pan::start(config, listener, &ccc_url, &mine).await?;
        started.push(("intake-pan", stop, running));
    }
    let mut intake_postal_addr = nowhere;
    if wanted("intake-postal") {
        let (stop, mine) = own();
        let running =
            guichet_intake_postal::start(config, &config.mailroom, any_port, &mine).await?;
        intake_postal_addr = running.grpc_addr;
        started.push(("intake-postal", stop, running));
    }
    let mut tasks = JoinSet::new();
    let mut handles = Vec::new();
    let mut gateway_addr = nowhere;
    if wanted("gateway") {
        let targets = guichet_gateway::Targets {
            intake_web: guichet_kit::grpc::url_of(intake_web_addr),
            instruction: instruction_url,
            intake_ccc: ccc_url,
            intake_pan: pan_url,
            intake_postal: guichet_kit::grpc::url_of(intake_postal_addr),
        };
        let gateway_stop = shared.shutdown.child_token();
        let gateway = guichet_gateway::start(
            config,
            http_addr,
            targets,
            shared.clock.clone(),
            shared.metrics.clone(),
            gateway_stop.clone(),
        )
        .await?;
        gateway_addr = gateway.http_addr;
        handles.extend(
            gateway
                .tasks
                .abort_handles()
                .map(|(task, h)| ("gateway", task, h)),
        );
        tasks.spawn(supervise(
            "gateway",
            gateway.tasks,
            None,
            gateway_stop,
            shared.shutdown.clone(),
        ));
    }
    for (service, stop, running) in started {
        handles.extend(
            running
                .tasks
                .abort_handles()
                .map(|(task, h)| (service, task, h)),
        );
        tasks.spawn(running.supervise(service, stop, shared.shutdown.clone()));
    }
    Ok(Mesh {
        bus: shared.bus.clone(),
        http_addr: gateway_addr,
        intake_web_addr,
        intake_ccc_addr,
        intake_pan_addr,
        intake_postal_addr,
        instruction_addr,
        tasks,
        handles,
        _not_started: not_started,
    })
}
