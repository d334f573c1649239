//! The whole mesh in one process (`guichet up`), or one service alone
//! (`guichet serve <service>`): the same library code either way.
#![forbid(unsafe_code)]

pub mod dlq;
pub mod simulate;

use std::net::SocketAddr;

use guichet_kit::Config;
use guichet_kit::clock::SharedClock;
use guichet_kit::shutdown::Shutdown;
use tokio::task::JoinSet;

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
    pub instruction_addr: SocketAddr,
    pub tasks: JoinSet<()>,
}

/// Starts instruction, intake and the gateway over one bus: RabbitMQ when
/// configured, else the in-process bus. Services listen on free loopback
/// ports (they are reached through the gateway); the gateway on `http_addr`.
pub async fn start_mesh(
    config: &Config,
    http_addr: SocketAddr,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<Mesh, MeshError> {
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let bus = guichet_kit::service::open_bus(config, "guichet").await?;
    let instruction = guichet_instruction::start(
        config,
        any_port,
        bus.clone(),
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let intake = guichet_intake_web::start(
        config,
        any_port,
        bus.clone(),
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let targets = guichet_gateway::Targets {
        intake_web: guichet_kit::grpc::url_of(intake.grpc_addr),
        instruction: guichet_kit::grpc::url_of(instruction.grpc_addr),
    };
    let gateway = guichet_gateway::start(config, http_addr, targets, clock, shutdown).await?;
    let mut tasks = JoinSet::new();
    for set in [instruction.tasks, intake.tasks, gateway.tasks] {
        tasks.spawn(async move {
            let mut set = set;
            while set.join_next().await.is_some() {}
        });
    }
    Ok(Mesh {
        bus,
        http_addr: gateway.http_addr,
        intake_web_addr: intake.grpc_addr,
        instruction_addr: instruction.grpc_addr,
        tasks,
    })
}
