//! What every intake channel shares. A channel service (web, call centre,
//! desk, post) states its own provenance; from there the path is the same
//! for all: the domain's checks, a reference, the receipt and the outbox row
//! in one transaction (`ledger`), and the same figures on `/metrics`.
#![forbid(unsafe_code)]

mod group_commit;
pub mod ledger;

use std::sync::Arc;

use guichet_dossier::filing::RawProvenance;
use guichet_dossier::{Channel, Filing, RawFiling, Violations};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::metrics::{ChannelLabels, ValidationLabels, field_label};
use guichet_kit::outbox::OutboxRelay;
use guichet_kit::service::{self, Foundations, Shared, StartError, Tasks};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, Metrics, ServiceError};
use tokio::sync::Notify;

pub use ledger::{Accepted, Ledger};

/// The `filings` table, the same in each channel's own schema: what a channel
/// service with no table of its own runs.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&POSTGRES],
    sqlite: &[&SQLITE],
};
/// The ledger's migrations alone, for a channel service that adds its own.
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// What a channel service starts from: its database (migrated with the
/// ledger's tables and its own), its gRPC listener, its outbox relay (not yet
/// running) and its `Intake`.
pub struct ChannelFoundations {
    pub db: guichet_kit::db::Database,
    pub intake: Intake,
    relay: OutboxRelay,
    base: Foundations,
}

impl ChannelFoundations {
    /// The kit's foundations to serve on, the channel's outbox relay
    /// spawned among its `tasks` first.
    pub fn with_relay(self, tasks: &mut Tasks, shutdown: &Shutdown) -> Foundations {
        tasks.spawn("outbox relay", self.relay.run(shutdown.clone()));
        self.base
    }
}

/// Opens what every channel service needs, the same way for all of them.
pub async fn prepare_channel(
    config: &Config,
    schema: &'static str,
    migrations: &Migrations,
    listen: impl Into<service::Listen>,
    shared: &Shared,
    channel: Channel,
) -> Result<ChannelFoundations, StartError> {
    let base = service::prepare(config, schema, migrations, listen, &shared.metrics).await?;
    let db = base.db.clone();
    let relay = OutboxRelay::new(db.clone(), shared.bus.clone(), config.outbox_batch)
        .with_metrics(shared.metrics.clone(), schema);
    let intake = Intake {
        channel,
        ledger: Ledger::new(db.clone(), shared.clock.clone()),
        clock: shared.clock.clone(),
        metrics: shared.metrics.clone(),
        wake: relay.waker(),
    };
    Ok(ChannelFoundations {
        db,
        intake,
        relay,
        base,
    })
}

/// One channel's intake: checks a filing with that channel's provenance,
/// records it once, and wakes the outbox relay.
#[derive(Clone)]
pub struct Intake {
    pub channel: Channel,
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub metrics: Metrics,
    /// The outbox relay's waker: a new receipt is published at once.
    pub wake: Arc<Notify>,
}

impl Intake {
    /// Parses and records `raw` as filed through this channel. Bad input is
    /// refused with every field at fault, and counted per field.
    pub async fn accept(
        &self,
        raw: &RawFiling,
        provenance: &RawProvenance,
    ) -> Result<Accepted, ServiceError> {
        let started = std::time::Instant::now();
        let filing = Filing::parse(raw, provenance, self.clock.today()).map_err(|v| {
            self.count_refusal(&v);
            ServiceError::invalid(v)
        })?;
        if filing.provenance.channel() != self.channel {
            return Err(ServiceError::invalid(Violations::one(
                "filing.provenance",
                format!("this service takes {} filings only", self.channel),
            )));
        }
        let accepted = self.ledger.accept(filing).await?;
        if accepted.created {
            self.wake.notify_one();
            let labels = ChannelLabels {
                channel: self.channel.as_str(),
            };
            self.metrics.filings_accepted.get_or_create(&labels).inc();
            self.metrics
                .time_to_receipt
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(accepted)
    }

    fn count_refusal(&self, violations: &Violations) {
        for v in violations.iter() {
            self.metrics
                .validation_failures
                .get_or_create(&ValidationLabels {
                    channel: self.channel.as_str(),
                    field: field_label(&v.field),
                })
                .inc();
        }
    }
}
