//! The operators' figures, in Prometheus form. One `Metrics` per process
//! (`guichet up` shares it between the services it runs), passed explicitly to
//! each service so two meshes in one test process never mix their counts.
//!
//! Names follow Prometheus conventions: a `guichet_` prefix, base units in
//! the name (`_seconds`), `_total` on counters (added by the encoder).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

/// The content type of `encode`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    pub channel: &'static str,
    /// The field path with list indexes removed (`documents[].sha256`), so
    /// the label has a bounded set of values.
    pub field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    /// `accepted`, or why the file was refused (`virus`, `type`, ...).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub exchange: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    pub queue: &'static str,
    /// `undecodable`, `unknown_schema`, `breaks_rule`, `wrong_publisher`,
    /// `no_publisher` or `rejected`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestationLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// One of the methods HTTP defines, or `other` ([`method_label`]).
    pub method: &'static str,
    /// The route template (`/api/v1/dossiers/{reference}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EquityLabels {
    pub channel: &'static str,
    pub measure: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// Histogram buckets, in seconds.
#[derive(Clone)]
pub struct Buckets(fn() -> Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new((self.0)())
    }
}

/// 1 ms to about 16 s: an answer to a person waiting at a screen.
fn receipt_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 15).collect()
}

/// 5 ms to about 45 min: from a receipt to the instruction service, which is
/// quick unless the broker or a database was away.
fn delivery_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 20).collect()
}

pub type GaugeF64 = Gauge<f64, AtomicU64>;

/// Every figure Guichet exports. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    registry: Mutex<Registry>,
    /// The families services registered for themselves, by name.
    own: Mutex<HashMap<&'static str, Box<dyn Any + Send + Sync>>>,
    /// Filings an intake service accepted (a retry of the same filing is not counted again).
    pub filings_accepted: Family<ChannelLabels, Counter>,
    /// Filings refused for bad input, by field.
    pub validation_failures: Family<ValidationLabels, Counter>,
    /// From a filing reaching intake to its receipt being committed.
    pub time_to_receipt: Family<ChannelLabels, Histogram, Buckets>,
    /// Outbox rows not yet confirmed by the broker.
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
    /// Messages the broker confirmed.
    pub messages_published: Family<ExchangeLabels, Counter>,
    /// Messages consumed and acknowledged.
    pub messages_consumed: Family<QueueLabels, Counter>,
    /// Messages waiting in a queue, sampled.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Most messages a queue holds before publishing to it is refused.
    pub queue_bound: Family<QueueLabels, Gauge>,
    /// Messages the consumer sent to the dead-letter queue, by reason.
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    /// Dossiers instruction recorded for the first time.
    pub dossiers_recorded: Family<ChannelLabels, Counter>,
    /// From the receipt to the dossier being committed in instruction.
    pub filing_to_instruction: Family<ChannelLabels, Histogram, Buckets>,
    /// Open dossiers by state, sampled.
    pub open_dossiers: Family<StateLabels, Gauge>,
    /// Attestations issued since the start, first ones and renewals, sampled
    /// from the database so every instance and every restart agree.
    pub attestations_issued: Family<AttestationLabels, Gauge>,
    pub attestations_renewed: Family<AttestationLabels, Gauge>,
    /// The equity figures per channel (see `guichet_dossier::equity`).
    pub equity: Family<EquityLabels, GaugeF64>,
    /// 1 where a channel is worse than the best by more than the margin.
    pub equity_flagged: Family<EquityLabels, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, Buckets>,
    /// Rounds of a service's periodic sweep that ran to the end without an
    /// error: what a test waits for to know a sweep has been and done nothing.
    pub sweeps_completed: Family<ServiceLabels, Counter>,
    /// Dossiers the last round of the sweep left out because they cannot
    /// be read: each is owed what the sweep gives (an attestation, a
    /// closing) and gets nothing until it is mended.
    pub sweep_dossiers_unreadable: Family<ServiceLabels, Gauge>,
    /// Requests refused at once because the service (or the gateway) was at
    /// capacity: a sign to add instances, or of a client retrying too fast.
    pub requests_shed: Family<ServiceLabels, Counter>,
    /// The bound on requests in flight now, where it adapts to latency
    /// (`GUICHET_LATENCY_TARGET_MS`): low means the machine is slow.
    pub in_flight_limit: Family<ServiceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guichet");
        let inner = Inner {
            filings_accepted: Family::default(),
            validation_failures: Family::default(),
            time_to_receipt: Family::new_with_constructor(Buckets(receipt_buckets)),
            outbox_backlog: Family::default(),
            messages_published: Family::default(),
            messages_consumed: Family::default(),
            queue_depth: Family::default(),
            queue_bound: Family::default(),
            dead_letters: Family::default(),
            dossiers_recorded: Family::default(),
            filing_to_instruction: Family::new_with_constructor(Buckets(delivery_buckets)),
            open_dossiers: Family::default(),
            attestations_issued: Family::default(),
            attestations_renewed: Family::default(),
            equity: Family::default(),
            equity_flagged: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(Buckets(receipt_buckets)),
            sweeps_completed: Family::default(),
            sweep_dossiers_unreadable: Family::default(),
            requests_shed: Family::default(),
            in_flight_limit: Family::default(),
            registry: Mutex::new(Registry::default()),
            own: Mutex::default(),
        };
        let r = &mut registry;
        r.register(
            "filings_accepted",
            "Filings accepted by an intake service",
            inner.filings_accepted.clone(),
        );
        r.register(
            "validation_failures",
            "Filings refused for bad input, by field",
            inner.validation_failures.clone(),
        );
        r.register_with_unit(
            "time_to_receipt",
            "From a filing reaching intake to its receipt being committed",
            Unit::Seconds,
            inner.time_to_receipt.clone(),
        );
        r.register(
            "outbox_backlog",
            "Outbox rows not yet confirmed by the broker",
            inner.outbox_backlog.clone(),
        );
        r.register(
            "messages_published",
            "Messages confirmed by the broker",
            inner.messages_published.clone(),
        );
        r.register(
            "messages_consumed",
            "Messages consumed and acknowledged",
            inner.messages_consumed.clone(),
        );
        r.register(
            "queue_messages",
            "Messages waiting in a queue",
            inner.queue_depth.clone(),
        );
        r.register(
            "queue_bound",
            "Most messages a queue holds before publishing to it is refused",
            inner.queue_bound.clone(),
        );
        r.register(
            "dead_letters",
            "Messages sent to the dead-letter queue by the consumer, by reason",
            inner.dead_letters.clone(),
        );
        r.register(
            "dossiers_recorded",
            "Dossiers recorded by instruction for the first time",
            inner.dossiers_recorded.clone(),
        );
        r.register_with_unit(
            "filing_to_instruction",
            "From the receipt to the dossier being committed in instruction",
            Unit::Seconds,
            inner.filing_to_instruction.clone(),
        );
        r.register(
            "open_dossiers",
            "Open dossiers by state",
            inner.open_dossiers.clone(),
        );
        r.register(
            "attestations_issued",
            "Attestations issued, first ones",
            inner.attestations_issued.clone(),
        );
        r.register(
            "attestations_renewed",
            "Attestations issued as renewals of an earlier one",
            inner.attestations_renewed.clone(),
        );
        r.register(
            "equity",
            "Per-channel figures compared for equity (days, or a share between 0 and 1)",
            inner.equity.clone(),
        );
        r.register(
            "equity_flagged",
            "1 where a channel is worse than the best channel by more than the margin",
            inner.equity_flagged.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered by the gateway",
            inner.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request at the gateway",
            Unit::Seconds,
            inner.http_duration.clone(),
        );
        r.register(
            "sweeps_completed",
            "Rounds of a periodic sweep that ran to the end without an error",
            inner.sweeps_completed.clone(),
        );
        r.register(
            "sweep_dossiers_unreadable",
            "Dossiers the last round of the sweep left out because they cannot be read",
            inner.sweep_dossiers_unreadable.clone(),
        );
        r.register(
            "requests_shed",
            "Requests refused at once because the service was at capacity",
            inner.requests_shed.clone(),
        );
        r.register(
            "in_flight_limit",
            "Requests taken at once, as the bound adapted to latency stands now",
            inner.in_flight_limit.clone(),
        );
        Metrics(Arc::new(Inner {
            registry: Mutex::new(registry),
            ..inner
        }))
    }

    /// A family of figures a service keeps for itself (reports, desks,
    /// mailroom: the kit holds only those every service shares). Registered
    /// under `name` the first time it is asked for, the same family every
    /// time after, so a service started again in one process counts on.
    pub fn family<F>(&self, name: &'static str, help: &'static str, unit: Option<Unit>) -> F
    where
        F: Metric + Clone + Default + 'static,
    {
        let mut own = lock(&self.0.own);
        if let Some(family) = own.get(name).and_then(|f| f.downcast_ref::<F>()) {
            return family.clone();
        }
        let family = F::default();
        let mut registry = lock(&self.0.registry);
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
            None => registry.register(name, help, family.clone()),
        }
        own.insert(name, Box::new(family.clone()));
        family
    }

    /// Counts an uploaded file by its outcome.
    pub fn count_upload(&self, outcome: &'static str) {
        let uploads: Family<UploadLabels, Counter> = self.family(
            "uploads",
            "Files uploaded, by outcome: accepted, or why they were refused",
            None,
        );
        uploads.get_or_create(&UploadLabels { outcome }).inc();
    }

    /// The same for a service's own histograms, with their buckets (in
    /// seconds).
    pub fn histogram_family<L>(
        &self,
        name: &'static str,
        help: &'static str,
        buckets: fn() -> Vec<f64>,
    ) -> Family<L, Histogram, Buckets>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let mut own = lock(&self.0.own);
        if let Some(family) = own
            .get(name)
            .and_then(|f| f.downcast_ref::<Family<L, Histogram, Buckets>>())
        {
            return family.clone();
        }
        let family = Family::new_with_constructor(Buckets(buckets));
        lock(&self.0.registry).register_with_unit(name, help, Unit::Seconds, family.clone());
        own.insert(name, Box::new(family.clone()));
        family
    }

    /// The text exposition, for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &lock(&self.0.registry));
        out
    }
}

/// A lock a panic elsewhere left poisoned still guards whole figures.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A request method as a label: the standard methods by name, anything a
/// client makes up as `other`, so a caller cannot grow the series count.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// `documents[2].sha256` → `documents[].sha256`: one label value per field.
pub fn field_label(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Serves `/metrics` alone, for a service run by `guichet serve` (the gateway
/// serves its own on its HTTP address).
pub async fn serve(
    metrics: Metrics,
    listener: tokio::net::TcpListener,
    shutdown: crate::shutdown::Shutdown,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    metrics.encode(),
                )
            }
        }),
    );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_are_one_label() {
        for (method, label) in [
            ("GET", "GET"),
            ("POST", "POST"),
            ("DELETE", "DELETE"),
            ("BREW", "other"),
            ("get", "other"),
            ("X-ANYTHING-1234", "other"),
        ] {
            let m = http::Method::from_bytes(method.as_bytes()).expect("a method token");
            assert_eq!(method_label(&m), label, "{method}");
        }
    }

    #[test]
    fn field_labels_drop_list_indexes() {
        for (path, label) in [
            ("applicant.birth_date", "applicant.birth_date"),
            ("documents[2].sha256", "documents[].sha256"),
            ("documents[12].kind", "documents[].kind"),
            ("", ""),
        ] {
            assert_eq!(field_label(path), label, "{path}");
        }
    }

    #[test]
    fn a_service_family_is_registered_once_and_shared() {
        let m = Metrics::new();
        let first: Family<StateLabels, Gauge> = m.family("things", "Things by state", None);
        let again: Family<StateLabels, Gauge> = m.family("things", "Things by state", None);
        first.get_or_create(&StateLabels { state: "a" }).set(2);
        again.get_or_create(&StateLabels { state: "a" }).inc();
        let text = m.encode();
        assert!(text.contains("guichet_things{state=\"a\"} 3"), "{text}");
        assert_eq!(text.matches("# TYPE guichet_things ").count(), 1, "{text}");
    }

    #[test]
    fn counters_appear_with_their_labels() {
        let m = Metrics::new();
        m.filings_accepted
            .get_or_create(&ChannelLabels { channel: "web" })
            .inc_by(3);
        m.time_to_receipt
            .get_or_create(&ChannelLabels { channel: "web" })
            .observe(0.004);
        let text = m.encode();
        assert!(
            text.contains("guichet_filings_accepted_total{channel=\"web\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("guichet_time_to_receipt_seconds_count{channel=\"web\"} 1"),
            "{text}"
        );
    }
}
