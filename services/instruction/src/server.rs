//! Start-up and the gRPC read API of the instruction service.

use std::net::SocketAddr;
use std::sync::Arc;

use guichet_dossier::UrgencyClass;
use guichet_kit::bus::{INSTRUCTION_QUEUE, SharedBus, consume_batches};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::service::{self, Foundations, Running, StartError};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, ServiceError, db, grpc};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::instruction_reader_server::{InstructionReader, InstructionReaderServer};
use prost::Message;
use tokio::task::JoinSet;

use crate::consumer::Consumer;
use crate::store::Store;

static MIGRATIONS: Migrations = Migrations {
    postgres: &POSTGRES,
    sqlite: &SQLITE,
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "instruction";
const MAX_QUEUE_PAGE: u32 = 500;

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

    let store = Store::new(db.clone());

    let consumer = Arc::new(Consumer {
        store: store.clone(),
        bus: bus.clone(),
        clock: clock.clone(),
        shutdown: shutdown.clone(),
    });
    let mut tasks = JoinSet::new();
    let prefetch = config.consumer_prefetch;
    let consume_shutdown = shutdown.clone();
    let consume_bus = bus.clone();
    tasks.spawn(async move {
        consume_batches(
            consume_bus,
            INSTRUCTION_QUEUE,
            "instruction",
            prefetch,
            usize::from(prefetch.max(1)),
            consume_shutdown,
            |batch| {
                let consumer = consumer.clone();
                async move { consumer.handle(batch).await }
            },
        )
        .await;
    });

    let reader = Reader { store, clock };
    let routes = tonic::service::Routes::new(InstructionReaderServer::new(reader));
    grpc::spawn_server(
        &mut tasks,
        listener,
        routes,
        "guichet.v1.InstructionReader",
        shutdown.clone(),
    )
    .await;
    tracing::info!(%grpc_addr, "instruction service ready");
    Ok(Running {
        grpc_addr,
        db,
        tasks,
    })
}

struct Reader {
    store: Store,
    clock: SharedClock,
}

fn state_to_pb(state: &str) -> pb::CaseState {
    pb::CaseState::from_str_name(&format!("CASE_STATE_{}", state.to_ascii_uppercase()))
        .unwrap_or(pb::CaseState::Unspecified)
}

fn urgency_to_pb(u: UrgencyClass) -> pb::UrgencyClass {
    match u {
        UrgencyClass::Critical => pb::UrgencyClass::Critical,
        UrgencyClass::Soon => pb::UrgencyClass::Soon,
        UrgencyClass::Routine => pb::UrgencyClass::Routine,
    }
}

fn code<T>(name: &str, prefix: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
    parse(&format!("{prefix}_{}", name.to_ascii_uppercase()))
}

fn db_error(context: &str, e: &sqlx::Error) -> tonic::Status {
    if db::is_unavailable(e) {
        ServiceError::unavailable("instruction cannot reach its database; try again shortly").into()
    } else {
        ServiceError::internal(context, e).into()
    }
}

#[tonic::async_trait]
impl InstructionReader for Reader {
    async fn get_dossier(
        &self,
        request: tonic::Request<pb::GetDossierRequest>,
    ) -> Result<tonic::Response<pb::DossierView>, tonic::Status> {
        let reference = guichet_dossier::Reference::parse(&request.into_inner().reference)
            .map_err(|e| {
                ServiceError::invalid(guichet_dossier::Violations::one("reference", e.to_string()))
            })?;
        let row = self
            .store
            .dossier(reference.as_str())
            .await
            .map_err(|e| db_error("reading a dossier", &e))?
            .ok_or_else(|| {
                ServiceError::not_found(format!("no dossier {reference} in instruction"))
            })?;
        let events = self
            .store
            .events(reference.as_str())
            .await
            .map_err(|e| db_error("reading dossier events", &e))?;
        let dossier = pb::Dossier::decode(row.encoded.as_slice())
            .map_err(|e| ServiceError::internal("decoding a stored dossier", &e))?;
        let urgency = UrgencyClass::for_cover(row.cover_until, self.clock.today());
        Ok(tonic::Response::new(pb::DossierView {
            dossier: Some(dossier),
            state: state_to_pb(&row.state) as i32,
            urgency: urgency_to_pb(urgency) as i32,
            events: events
                .into_iter()
                .map(|e| pb::DossierEvent {
                    sequence: e.id as u64,
                    kind: e.kind,
                    actor: e.actor,
                    at: Some(convert::timestamp_to_pb(e.at)),
                    reason: e.reason,
                    trace_id: e.trace_id,
                })
                .collect(),
            recorded_at: Some(convert::timestamp_to_pb(row.recorded_at)),
        }))
    }

    async fn list_queue(
        &self,
        request: tonic::Request<pb::ListQueueRequest>,
    ) -> Result<tonic::Response<pb::ListQueueResponse>, tonic::Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 50,
            n => n.min(MAX_QUEUE_PAGE),
        };
        let prefecture = (!request.prefecture.is_empty()).then_some(request.prefecture.as_str());
        let rows = self
            .store
            .queue(prefecture, i64::from(limit), self.clock.today())
            .await
            .map_err(|e| db_error("reading the queue", &e))?;
        let entries = rows
            .into_iter()
            .map(|r| pb::QueueEntry {
                channel: guichet_dossier::Channel::parse(&r.channel)
                    .map(|c| convert::channel_to_pb(c) as i32)
                    .unwrap_or(0),
                procedure: code(&r.procedure, "PROCEDURE", pb::Procedure::from_str_name)
                    .map(|p| p as i32)
                    .unwrap_or(0),
                motif: code(&r.motif, "MOTIF", pb::Motif::from_str_name)
                    .map(|m| m as i32)
                    .unwrap_or(0),
                reference: r.reference,
                prefecture: r.prefecture,
                legal_filing_date: Some(convert::date_to_pb(r.legal_filing_date)),
                urgency: urgency_to_pb(UrgencyClass::from_rank(r.urgency)) as i32,
                state: state_to_pb(&r.state) as i32,
                title_expires_on: r.title_expires_on.map(convert::date_to_pb),
            })
            .collect();
        Ok(tonic::Response::new(pb::ListQueueResponse { entries }))
    }
}
