//! The mailroom's own figures on `/metrics`: pages read, envelopes by
//! state, letters produced.

use guichet_kit::Metrics;
use guichet_kit::metrics::StateLabels;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LetterLabels {
    pub kind: String,
}

pub struct PostalFigures {
    /// Scanned pages read, by what their code said (form, separator, none,
    /// forged, damaged).
    pub pages_read: Family<PageLabels, Counter>,
    /// Envelopes by state (keying, filed, routed), sampled.
    pub envelopes: Family<StateLabels, Gauge>,
    /// Letters produced for postal filers, by kind.
    pub letters: Family<LetterLabels, Counter>,
}

impl PostalFigures {
    pub fn of(m: &Metrics) -> Self {
        PostalFigures {
            pages_read: m.family(
                "postal_pages_read",
                "Scanned pages read, by what their code said",
                None,
            ),
            envelopes: m.family(
                "postal_envelopes",
                "Scanned envelopes by state (keying, filed, routed)",
                None,
            ),
            letters: m.family(
                "postal_letters",
                "Letters produced for postal filers, by kind",
                None,
            ),
        }
    }
}
