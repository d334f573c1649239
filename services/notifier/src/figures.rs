//! The notifier's figures on `/metrics`: messages by medium, kind and
//! outcome; the time from an event to its message; the attestations issued
//! that reached nobody yet; the notices that reached nobody at all.

use guichet_kit::Metrics;
use guichet_kit::metrics::Buckets;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub medium: &'static str,
    pub kind: &'static str,
    /// sent, delivered, retried, failed.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediumLabels {
    pub medium: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediumStateLabels {
    pub medium: String,
    pub state: String,
}

/// 1 s to about 4.5 days: a message waits for the morning (SMS), for a
/// relay that was down, or for its appointment's eve (reminders).
fn event_to_sent_buckets() -> Vec<f64> {
    exponential_buckets(1.0, 2.0, 19).collect()
}

#[derive(Clone)]
pub struct NotifierFigures {
    pub messages: Family<MessageLabels, Counter>,
    pub event_to_sent: Family<MediumLabels, Histogram, Buckets>,
    pub by_state: Family<MediumStateLabels, Gauge>,
    pub attestations_unreached: Gauge,
    pub notices_lost: Gauge,
}

impl NotifierFigures {
    pub fn of(m: &Metrics) -> Self {
        NotifierFigures {
            messages: m.family(
                "notifier_messages",
                "Messages to people, by medium, kind and outcome of each try",
                None,
            ),
            event_to_sent: m.histogram_family(
                "notifier_event_to_sent",
                "Time from the event to its message being handed over, by medium",
                event_to_sent_buckets,
            ),
            by_state: m.family(
                "notifier_messages_by_state",
                "Messages by medium and where they stand (queued, sent, delivered, failed, cancelled)",
                None,
            ),
            attestations_unreached: m.family(
                "notifier_attestations_unreached",
                "Attestations issued that reached the person on no medium yet (e-mail or paper)",
                None,
            ),
            notices_lost: m.family(
                "notifier_notices_lost",
                "Notices every message of which failed for good: an operator must reach the person",
                None,
            ),
        }
    }
}
