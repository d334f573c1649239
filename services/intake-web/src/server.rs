//! Start-up and the gRPC face of the online intake service.

use std::net::SocketAddr;

use guichet_dossier::Channel;
use guichet_dossier::filing::RawProvenance;
use guichet_intake::{ChannelFoundations, Intake, MIGRATIONS, prepare_channel};
use guichet_kit::service::{Running, Shared, StartError, Tasks};
use guichet_kit::{Config, ServiceError, grpc};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::online_intake_server::{OnlineIntake, OnlineIntakeServer};

pub const SCHEMA: &str = "intake_web";

pub async fn start(
    config: &Config,
    addr: SocketAddr,
    shared: &Shared,
) -> Result<Running, StartError> {
    let ChannelFoundations {
        db,
        listener,
        grpc_addr,
        relay,
        intake,
    } = prepare_channel(config, SCHEMA, &MIGRATIONS, addr, shared, Channel::Web).await?;
    let service = IntakeService { intake };
    let mut tasks = Tasks::new();
    tasks.spawn("outbox relay", relay.run(shared.shutdown.clone()));
    let routes = tonic::service::Routes::new(OnlineIntakeServer::new(service));
    let health = grpc::spawn_server(
        &mut tasks,
        listener,
        routes,
        "guichet.v1.OnlineIntake",
        shared.shutdown.clone(),
    )
    .await;
    tracing::info!(%grpc_addr, "online intake service ready");
    Ok(Running {
        grpc_addr,
        db,
        tasks,
        health,
    })
}

struct IntakeService {
    intake: Intake,
}

#[tonic::async_trait]
impl OnlineIntake for IntakeService {
    async fn submit_filing(
        &self,
        request: tonic::Request<pb::SubmitFilingRequest>,
    ) -> Result<tonic::Response<pb::SubmitFilingResponse>, tonic::Status> {
        let filing = request.into_inner().filing.ok_or_else(|| {
            ServiceError::invalid(guichet_dossier::Violations::one("filing", "is required"))
        })?;
        let (raw, provenance) = convert::raw_filing_from_pb(&filing);
        let provenance = match provenance {
            None => RawProvenance::Web { account_id: None },
            Some(p @ RawProvenance::Web { .. }) => p,
            Some(_) => {
                return Err(ServiceError::invalid(guichet_dossier::Violations::one(
                    "filing.provenance",
                    "the online intake service takes web filings only",
                ))
                .into());
            }
        };
        let accepted = self.intake.accept(&raw, &provenance).await?;
        Ok(tonic::Response::new(pb::SubmitFilingResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }
}
