//! Start-up and the gRPC face of the online intake service.

use std::net::SocketAddr;
use std::sync::Arc;

use guichet_dossier::Filing;
use guichet_dossier::filing::RawProvenance;
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::metrics::{ChannelLabels, ValidationLabels, field_label};
use guichet_kit::outbox::OutboxRelay;
use guichet_kit::service::{self, Foundations, Running, Shared, StartError};
use guichet_kit::{Config, Metrics, ServiceError, grpc};
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
    shared: &Shared,
) -> Result<Running, StartError> {
    let Foundations {
        db,
        listener,
        grpc_addr,
    } = service::prepare(config, SCHEMA, &MIGRATIONS, addr).await?;
    let relay = OutboxRelay::new(db.clone(), shared.bus.clone(), config.outbox_batch)
        .with_metrics(shared.metrics.clone(), SCHEMA);
    let wake = relay.waker();
    let shutdown = &shared.shutdown;

    let service = IntakeService {
        ledger: Ledger::new(db.clone(), shared.clock.clone()),
        clock: shared.clock.clone(),
        metrics: shared.metrics.clone(),
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
    metrics: Metrics,
    wake: Arc<Notify>,
}

const WEB: ChannelLabels = ChannelLabels { channel: "web" };

impl IntakeService {
    fn count_refusal(&self, violations: &guichet_dossier::Violations) {
        for v in violations.iter() {
            self.metrics
                .validation_failures
                .get_or_create(&ValidationLabels {
                    channel: WEB.channel,
                    field: field_label(&v.field),
                })
                .inc();
        }
    }
}

#[tonic::async_trait]
impl OnlineIntake for IntakeService {
    async fn submit_filing(
        &self,
        request: tonic::Request<pb::SubmitFilingRequest>,
    ) -> Result<tonic::Response<pb::SubmitFilingResponse>, tonic::Status> {
        let started = std::time::Instant::now();
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
        let filing = Filing::parse(&raw, &provenance, self.clock.today()).map_err(|v| {
            self.count_refusal(&v);
            ServiceError::invalid(v)
        })?;
        let accepted = self.ledger.accept(filing).await?;
        if accepted.created {
            self.wake.notify_one();
            self.metrics.filings_accepted.get_or_create(&WEB).inc();
            self.metrics
                .time_to_receipt
                .get_or_create(&WEB)
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(tonic::Response::new(pb::SubmitFilingResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }
}
