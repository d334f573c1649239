//! Start-up of the instruction service: the consumer of submitted dossiers,
//! the relay of its case events, the rights sweeper, and the gRPC API.

use std::sync::Arc;
use std::time::Duration;

use guichet_kit::bus::{INSTRUCTION_QUEUE, Subscription, consume_batches};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::lease;
use guichet_kit::metrics::ServiceLabels;
use guichet_kit::outbox::OutboxRelay;
use guichet_kit::service::{self, Listen, Running, Shared, StartError, Tasks};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, Metrics};
use guichet_proto::v1::instruction_desk_server::InstructionDeskServer;
use guichet_proto::v1::instruction_reader_server::InstructionReaderServer;

use crate::api::Api;
use crate::consumer::Consumer;
use crate::equity::{EquitySettings, observe_forever};
use crate::settings::InstructionSettings;
use crate::store::Store;

/// Both backends' migrations, in order (the schema parity test compares them).
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&POSTGRES],
    sqlite: &[&SQLITE],
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "instruction";

/// The instruction database, migrated: for tools such as the titles import.
pub async fn open_database(config: &Config) -> Result<guichet_kit::db::Database, StartError> {
    Ok(guichet_kit::db::Database::open(
        config.database_url.as_deref(),
        &config.data_dir,
        SCHEMA,
        config.db_pool().with_size(2),
        &MIGRATIONS,
    )
    .await?)
}

pub async fn start(
    config: &Config,
    settings: &InstructionSettings,
    listen: impl Into<Listen>,
    shared: &Shared,
) -> Result<Running, StartError> {
    let Shared {
        bus,
        clock,
        shutdown,
        metrics,
    } = shared.clone();
    let base = service::prepare(config, SCHEMA, &MIGRATIONS, listen, &metrics).await?;
    let db = base.db.clone();
    let store = Store::new(db.clone(), settings.attestation_horizon_days);
    let relay = OutboxRelay::new(db.clone(), bus.clone(), config.outbox_batch)
        .with_metrics(metrics.clone(), SCHEMA);
    let equity = EquitySettings {
        margin: settings.equity_margin,
        min_sample: settings.equity_min_sample,
    };
    let wake = relay.waker();
    let mut tasks = Tasks::new();
    tasks.spawn("outbox relay", relay.run(shutdown.clone()));

    let consumer = Arc::new(Consumer {
        store: store.clone(),
        bus: bus.clone(),
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        wake: wake.clone(),
        metrics: metrics.clone(),
        // Only the broker checks `user_id`: the in-process bus has no users.
        publishers: config
            .amqp_url
            .as_ref()
            .and_then(|_| config.bus_users.publishers()),
    });
    let prefetch = config.consumer_prefetch;
    let batches_at_once = settings.dossier_batches_at_once;
    let consume_shutdown = shutdown.clone();
    tasks.spawn(
        "figures",
        observe_forever(
            store.clone(),
            bus.clone(),
            clock.clone(),
            metrics.clone(),
            equity,
            shutdown.clone(),
        ),
    );
    tasks.spawn("consumer", async move {
        consume_batches(
            bus,
            Subscription {
                batches_at_once,
                ..Subscription::one_batch_at_a_time(INSTRUCTION_QUEUE, "instruction", prefetch)
            },
            consume_shutdown,
            |batch| {
                let consumer = consumer.clone();
                async move { consumer.handle(batch).await }
            },
        )
        .await;
    });

    tasks.spawn(
        "sweep",
        sweep_forever(
            store.clone(),
            clock.clone(),
            wake.clone(),
            Sweeps {
                alert_offsets: settings.alert_offsets_days.clone(),
                hold_idle: chrono::Duration::minutes(i64::from(settings.hold_idle_minutes.max(1))),
                every: Duration::from_secs(config.sweep_interval_s.max(1)),
            },
            metrics.clone(),
            shutdown.clone(),
        ),
    );

    let api = Api {
        store,
        clock,
        wake,
        equity,
        open_data_min_count: settings.open_data_min_count.max(1),
        evaluations: Arc::default(),
    };
    let routes = tonic::service::Routes::new(InstructionReaderServer::new(api.clone()))
        .add_service(InstructionDeskServer::new(api));
    Ok(base
        .serve(tasks, routes, "guichet.v1.InstructionReader", &shutdown)
        .await)
}

/// What the sweep does and how often.
struct Sweeps {
    /// Days before a title's expiry at which its holder is warned.
    alert_offsets: Vec<i64>,
    /// A held case with no act for this long goes back to the queue.
    hold_idle: chrono::Duration,
    every: Duration,
}

/// Issues every attestation that falls due, closes files whose deadline
/// passed, warns holders whose title nears expiry and puts cases held idle
/// back in the queue, at start and then every
/// `every`: nobody has to ask for any of it.
async fn sweep_forever(
    store: Store,
    clock: SharedClock,
    wake: Arc<tokio::sync::Notify>,
    Sweeps {
        alert_offsets,
        hold_idle,
        every,
    }: Sweeps,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    // Several instances share the database: one sweeps at a time, and
    // another starts as soon as the lease comes to it.
    let (store, clock, wake, alert_offsets, metrics) =
        (&store, &clock, &*wake, &alert_offsets[..], &metrics);
    lease::in_rounds(
        store.db().clone(),
        "instruction-sweep",
        every,
        shutdown,
        |held| async move {
            if held {
                sweep_once(store, clock, wake, alert_offsets, hold_idle, metrics).await;
            }
        },
    )
    .await;
}

/// One round of the sweep. Every step is safe to repeat: an alert is marked
/// sent in the transaction that queues it, an attestation is issued under
/// the case's row lock, a case moved meanwhile is left alone.
async fn sweep_once(
    store: &Store,
    clock: &SharedClock,
    wake: &tokio::sync::Notify,
    alert_offsets: &[i64],
    hold_idle: chrono::Duration,
    metrics: &Metrics,
) {
    let mut failed = false;
    match crate::titles::send_due_alerts(store.db(), alert_offsets, clock.now(), clock.today())
        .await
    {
        Ok(0) => {}
        Ok(sent) => {
            tracing::info!(sent, "expiry alerts");
            wake.notify_one();
        }
        Err(e) => {
            failed = true;
            tracing::warn!(error = %e, "expiry alerts failed, will retry");
        }
    }
    match store.sweep(clock.now(), clock.today()).await {
        Ok(round) => {
            metrics
                .sweep_dossiers_unreadable
                .get_or_create(&ServiceLabels { service: SCHEMA })
                .set(round.unreadable as i64);
            if round.issued + round.closed > 0 {
                tracing::info!(round.issued, round.closed, "rights sweep");
                wake.notify_one();
            }
        }
        Err(e) => {
            failed = true;
            tracing::warn!(error = %e, "rights sweep failed, will retry");
        }
    }
    match store
        .release_idle(clock.now() - hold_idle, clock.now())
        .await
    {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "idle held cases back in the queue"),
        Err(e) => {
            failed = true;
            tracing::warn!(error = %e, "releasing idle cases failed, will retry");
        }
    }
    if !failed {
        metrics
            .sweeps_completed
            .get_or_create(&ServiceLabels { service: SCHEMA })
            .inc();
    }
}
