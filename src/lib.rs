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
    /// One supervisor per service (see `guichet_kit::service::supervise`).
    pub tasks: JoinSet<Result<(), TaskEnded>>,
    /// (service, task, handle), to stop one task by hand.
    pub handles: Vec<(&'static str, &'static str, AbortHandle)>,
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
    config: &Config,
    http_addr: SocketAddr,
    shared: &Shared,
) -> Result<Mesh, MeshError> {
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
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
    let (instruction_stop, mine) = own();
    let instruction = guichet_instruction::start(config, any_port, &mine).await?;
    let instruction_url = guichet_kit::grpc::url_of(instruction.grpc_addr);
    let (intake_stop, mine) = own();
    let intake = guichet_intake_web::start(config, any_port, &mine).await?;
    // The call centre and the desk each ask the other (an appointment offered
    // to a report, a report named by a booking): the desk's listener is bound
    // first, so the call centre is told where it is.
    let (pan_listener, pan_addr) = guichet_kit::grpc::bind(any_port).await.map_err(|source| {
        guichet_kit::service::StartError::Bind {
            addr: any_port,
            source,
        }
    })?;
    let pan_url = guichet_kit::grpc::url_of(pan_addr);
    let (ccc_stop, mine) = own();
    let ccc =
        guichet_intake_ccc::start(config, any_port, &instruction_url, &pan_url, &mine).await?;
    let ccc_url = guichet_kit::grpc::url_of(ccc.grpc_addr);
    let (pan_stop, mine) = own();
    let pan = guichet_intake_pan::start(config, pan_listener, &ccc_url, &mine).await?;
    let (postal_stop, mine) = own();
    let postal = guichet_intake_postal::start(config, any_port, &mine).await?;
    let targets = guichet_gateway::Targets {
        intake_web: guichet_kit::grpc::url_of(intake.grpc_addr),
        instruction: instruction_url,
        intake_ccc: ccc_url,
        intake_pan: pan_url,
        intake_postal: guichet_kit::grpc::url_of(postal.grpc_addr),
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
    let mesh_addrs = (
        instruction.grpc_addr,
        intake.grpc_addr,
        ccc.grpc_addr,
        pan.grpc_addr,
        postal.grpc_addr,
    );
    let mut tasks = JoinSet::new();
    let mut handles = Vec::new();
    for (service, stop, running) in [
        ("instruction", instruction_stop, instruction),
        ("intake-web", intake_stop, intake),
        ("intake-ccc", ccc_stop, ccc),
        ("intake-pan", pan_stop, pan),
        ("intake-postal", postal_stop, postal),
    ] {
        handles.extend(
            running
                .tasks
                .abort_handles()
                .map(|(task, h)| (service, task, h)),
        );
        tasks.spawn(running.supervise(service, stop, shared.shutdown.clone()));
    }
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
    let (instruction_addr, intake_web_addr, intake_ccc_addr, intake_pan_addr, intake_postal_addr) =
        mesh_addrs;
    Ok(Mesh {
        bus: shared.bus.clone(),
        http_addr: gateway.http_addr,
        intake_web_addr,
        intake_ccc_addr,
        intake_pan_addr,
        intake_postal_addr,
        instruction_addr,
        tasks,
        handles,
    })
}
