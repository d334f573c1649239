//! Start-up and the gRPC face of the online intake service.

use std::net::SocketAddr;
use std::sync::Arc;

use guichet_dossier::Filing;
use guichet_dossier::filing::RawProvenance;
use guichet_kit::bus::SharedBus;
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::outbox::OutboxRelay;
use guichet_kit::service::{self, Foundations, Running, StartError};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, ServiceError, grpc};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::online_intake_server::{OnlineIntake, OnlineIntakeServer};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::ledger::Ledger;

static MIGRATIONS: Migrations = Migrations {
    postgres: &POSTGRES,
    sqlite: &SQLITE,
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "intake_web";

pub async fn start(
    config: &Config,
    addr: SocketAddr,
    bus: SharedBus,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let Foundations {
        db,
        listener,
        grpc_addr,
    } = service::prepare(config, SCHEMA, &MIGRATIONS, addr).await?;
    let relay = OutboxRelay::new(db.clone(), bus, config.outbox_batch);
    let wake = relay.waker();

    let service = IntakeService {
        ledger: Ledger::new(db.clone(), clock.clone()),
        clock,
        wake,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(relay.run(shutdown.clone()));
    let routes = tonic::service::Routes::new(OnlineIntakeServer::new(service));
    grpc::spawn_server(
        &mut tasks,
        listener,
        routes,
        "guichet.v1.OnlineIntake",
        shutdown.clone(),
    )
    .await;
    tracing::info!(%grpc_addr, "online intake service ready");
    Ok(Running {
        grpc_addr,
        db,
        tasks,
    })
}

struct IntakeService {
    ledger: Ledger,
    clock: SharedClock,
    wake: Arc<Notify>,
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
        let filing =
            Filing::parse(&raw, &provenance, self.clock.today()).map_err(ServiceError::invalid)?;
        let accepted = self.ledger.accept(filing).await?;
        if accepted.created {
            self.wake.notify_one();
        }
        Ok(tonic::Response::new(pb::SubmitFilingResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }
}
