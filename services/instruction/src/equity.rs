//! The equity report (channels compared on the same measures) and the
//! operators' figures sampled from the database for `/metrics`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::equity::{self, Figure, Measure};
use guichet_kit::Metrics;
use guichet_kit::bus::SharedBus;
use guichet_kit::clock::SharedClock;
use guichet_kit::metrics::{AttestationLabels, EquityLabels, QueueLabels, StateLabels};
use guichet_kit::shutdown::Shutdown;
use guichet_proto::{convert, v1 as pb};

use crate::store::Store;

/// Dossiers received within this many days are compared.
pub const WINDOW_DAYS: i64 = 365;
/// How often the sampled figures are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
pub struct EquitySettings {
    pub margin: f64,
    pub min_sample: u32,
}

pub async fn report(
    store: &Store,
    prefecture: &str,
    settings: EquitySettings,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Result<pb::EquityReport, sqlx::Error> {
    let since = today - chrono::Duration::days(WINDOW_DAYS);
    let facts = store
        .equity_facts(prefecture, now - chrono::Duration::days(WINDOW_DAYS), today)
        .await?;
    let figures = equity::figures(&facts);
    let flags = equity::flags(&figures, settings.margin, settings.min_sample as usize);
    let figure = |f: Option<Figure>| {
        f.map(|f| pb::EquityFigure {
            value: f.value,
            sample: f.sample as u32,
        })
    };
    Ok(pb::EquityReport {
        prefecture: prefecture.to_string(),
        margin: settings.margin,
        since: Some(convert::date_to_pb(since)),
        min_sample: settings.min_sample,
        channels: figures
            .iter()
            .map(|f| pb::ChannelEquity {
                channel: convert::channel_to_pb(f.channel) as i32,
                dossiers: f.dossiers as u32,
                median_days_to_decision: figure(f.days_to_decision),
                share_complete_at_filing: figure(f.complete_at_filing),
                share_covered: figure(f.covered),
                median_days_to_receipt: figure(f.days_to_receipt),
            })
            .collect(),
        flags: flags
            .iter()
            .map(|f| pb::EquityFlag {
                channel: convert::channel_to_pb(f.channel) as i32,
                measure: f.measure.as_str().to_string(),
                value: f.value,
                best_channel: convert::channel_to_pb(f.best_channel) as i32,
                best: f.best,
            })
            .collect(),
    })
}

/// Refreshes what `/metrics` shows from the database and the broker: queue
/// depths, open dossiers by state, attestations, and the equity figures.
pub async fn observe_forever(
    store: Store,
    bus: SharedBus,
    clock: SharedClock,
    metrics: Metrics,
    settings: EquitySettings,
    shutdown: Shutdown,
) {
    loop {
        if let Err(e) = observe_once(&store, &bus, &clock, &metrics, settings).await {
            tracing::debug!(error = %e, "cannot sample the operators' figures");
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

pub async fn observe_once(
    store: &Store,
    bus: &SharedBus,
    clock: &SharedClock,
    metrics: &Metrics,
    settings: EquitySettings,
) -> Result<(), sqlx::Error> {
    // Every queue with its bound, so an alert can tell one filling up.
    for (spec, bound) in bus.bounds().iter() {
        let queue = spec.name;
        if let Ok(depth) = bus.queue_depth(queue).await {
            metrics
                .queue_depth
                .get_or_create(&QueueLabels { queue })
                .set(i64::from(depth));
        }
        metrics
            .queue_bound
            .get_or_create(&QueueLabels { queue })
            .set(i64::from(bound.max_length));
    }
    let open = store.open_by_state().await?;
    for state in guichet_dossier::CaseState::ALL
        .iter()
        .filter(|s| s.is_open())
    {
        let n = open
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        metrics
            .open_dossiers
            .get_or_create(&StateLabels {
                state: state.as_str(),
            })
            .set(n);
    }
    for (kind, all, renewals) in store.attestation_counts().await? {
        let Some(kind) = guichet_dossier::rights::AttestationKind::parse(&kind) else {
            continue;
        };
        let label = AttestationLabels {
            kind: kind.as_str(),
        };
        metrics
            .attestations_issued
            .get_or_create(&label)
            .set(all - renewals);
        metrics
            .attestations_renewed
            .get_or_create(&label)
            .set(renewals);
    }
    let report = report(store, "", settings, clock.now(), clock.today()).await?;
    for channel in &report.channels {
        let Some(name) = pb::Channel::try_from(channel.channel)
            .ok()
            .and_then(convert::channel_from_pb)
            .map(|c| c.as_str())
        else {
            continue;
        };
        for (measure, figure) in [
            (Measure::DaysToDecision, &channel.median_days_to_decision),
            (Measure::CompleteAtFiling, &channel.share_complete_at_filing),
            (Measure::Covered, &channel.share_covered),
            (Measure::DaysToReceipt, &channel.median_days_to_receipt),
        ] {
            let labels = EquityLabels {
                channel: name,
                measure: measure.as_str(),
            };
            if let Some(f) = figure {
                metrics.equity.get_or_create(&labels).set(f.value);
            }
            let flagged = report
                .flags
                .iter()
                .any(|f| f.channel == channel.channel && f.measure == measure.as_str());
            metrics
                .equity_flagged
                .get_or_create(&labels)
                .set(i64::from(flagged));
        }
    }
    Ok(())
}
