//! The whole mesh in one process (`guichet up`), or one service alone
//! (`guichet serve <service>`): the same library code either way.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use guichet_kit::Config;
use guichet_kit::service::Shared;
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
    pub intake_ccc_addr: SocketAddr,
    pub intake_pan_addr: SocketAddr,
    pub intake_postal_addr: SocketAddr,
    pub instruction_addr: SocketAddr,
    pub tasks: JoinSet<()>,
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
    let instruction = guichet_instruction::start(config, any_port, shared).await?;
    let intake = guichet_intake_web::start(config, any_port, shared).await?;
    let instruction_url = guichet_kit::grpc::url_of(instruction.grpc_addr);
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
    let ccc =
        guichet_intake_ccc::start(config, any_port, &instruction_url, &pan_url, shared).await?;
    let ccc_url = guichet_kit::grpc::url_of(ccc.grpc_addr);
    let pan = guichet_intake_pan::start(config, pan_listener, &ccc_url, shared).await?;
    let postal = guichet_intake_postal::start(config, any_port, shared).await?;
    let targets = guichet_gateway::Targets {
        intake_web: guichet_kit::grpc::url_of(intake.grpc_addr),
        instruction: instruction_url,
        intake_ccc: ccc_url,
        intake_pan: pan_url,
        intake_postal: guichet_kit::grpc::url_of(postal.grpc_addr),
    };
    let gateway = guichet_gateway::start(
        config,
        http_addr,
        targets,
        shared.clock.clone(),
        shared.metrics.clone(),
        shared.shutdown.clone(),
    )
    .await?;
    let mut tasks = JoinSet::new();
    for set in [
        instruction.tasks,
        intake.tasks,
        ccc.tasks,
        pan.tasks,
        postal.tasks,
        gateway.tasks,
    ] {
        tasks.spawn(async move {
            let mut set = set;
            while set.join_next().await.is_some() {}
        });
    }
    Ok(Mesh {
        bus: shared.bus.clone(),
        http_addr: gateway.http_addr,
        intake_web_addr: intake.grpc_addr,
        intake_ccc_addr: ccc.grpc_addr,
        intake_pan_addr: pan.grpc_addr,
        intake_postal_addr: postal.grpc_addr,
        instruction_addr: instruction.grpc_addr,
        tasks,
    })
}
