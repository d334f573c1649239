//! The instruction service's own rules around a case, above the pure domain:
//! what a dossier's facts are, what happens on arrival, and the event each
//! change publishes on `guichet.events`.

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::requirements;
use guichet_dossier::rights::{self, Attestation, CaseFacts, Cover};
use guichet_dossier::{CaseState, Channel, DocumentKind, Dossier, Procedure, TitleKind};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_proto::{convert, v1 as pb};
use prost::Message;

/// What the rules need, read from the dossier as received.
pub fn facts_of(dossier: &pb::Dossier, state: CaseState) -> CaseFacts {
    let filing = dossier.filing.clone().unwrap_or_default();
    let procedure = pb::Procedure::try_from(filing.procedure)
        .ok()
        .and_then(|p| {
            let name = p
                .as_str_name()
                .strip_prefix("PROCEDURE_")?
                .to_ascii_lowercase();
            Procedure::parse(&name)
        })
        .unwrap_or(Procedure::FirstApplication);
    let title = filing.current_title.as_ref().and_then(|t| {
        let kind = pb::TitleKind::try_from(t.kind).ok()?;
        let kind = TitleKind::parse(
            &kind
                .as_str_name()
                .strip_prefix("TITLE_KIND_")?
                .to_ascii_lowercase(),
        )?;
        let expires = convert::date_from_pb(t.expires_on.as_ref()?)?;
        Some((kind, expires))
    });
    CaseFacts {
        procedure,
        state,
        title,
    }
}

/// A dossier's state as it arrives: complete or not, and its first cover.
pub struct Arrival {
    pub state: CaseState,
    pub missing: Vec<DocumentKind>,
    pub cover: Cover,
}

pub fn on_arrival(dossier: &Dossier, today: NaiveDate) -> Arrival {
    let received: Vec<DocumentKind> = dossier.filing.documents.iter().map(|d| d.kind).collect();
    let missing = requirements::missing(dossier.filing.procedure, dossier.filing.motif, &received);
    let state = if missing.is_empty() {
        CaseState::Complete
    } else {
        CaseState::Incomplete
    };
    let facts = CaseFacts {
        procedure: dossier.filing.procedure,
        state,
        title: dossier
            .filing
            .current_title
            .as_ref()
            .map(|t| (t.kind, t.expires_on)),
    };
    Arrival {
        state,
        missing,
        cover: rights::cover(&facts, &[], today),
    }
}

/// Comma-separated document kinds, as the `missing` column keeps them.
pub fn join_kinds(kinds: &[DocumentKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn split_kinds(text: &str) -> Vec<DocumentKind> {
    text.split(',').filter_map(DocumentKind::parse).collect()
}

/// Everything a case event says.
pub struct EventFacts<'a> {
    pub reference: &'a str,
    pub kind: &'a str,
    pub dossier: &'a pb::Dossier,
    pub state: CaseState,
    pub at: DateTime<Utc>,
    pub reason: &'a str,
    pub attestation: Option<pb::AttestationView>,
    pub missing: &'a [DocumentKind],
    pub documents_deadline: Option<NaiveDate>,
}

/// The message announcing a change on `guichet.events`, routed by kind and
/// by the channel the person used, so that channel answers them.
pub fn event_message(e: EventFacts<'_>) -> OutgoingMessage {
    let channel = pb::Channel::try_from(e.dossier.channel)
        .ok()
        .and_then(convert::channel_from_pb)
        .unwrap_or(Channel::Web);
    let answer_channel = e
        .dossier
        .filing
        .as_ref()
        .and_then(|f| f.contact.as_ref())
        .map(|c| c.answer_channel)
        .unwrap_or(0);
    let body = pb::CaseEvent {
        reference: e.reference.to_string(),
        kind: e.kind.to_string(),
        channel: e.dossier.channel,
        answer_channel,
        state: state_to_pb(e.state) as i32,
        at: Some(convert::timestamp_to_pb(e.at)),
        reason: e.reason.to_string(),
        attestation: e.attestation,
        missing: e
            .missing
            .iter()
            .map(|k| convert::document_kind_to_pb(*k))
            .collect(),
        documents_deadline: e.documents_deadline.map(convert::date_to_pb),
    };
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("case.{}.{}", e.kind, channel.as_str()),
        body.encode_to_vec(),
    )
    .with_header("x-guichet-reference", e.reference)
}

pub fn state_to_pb(state: CaseState) -> pb::CaseState {
    pb::CaseState::from_str_name(&format!(
        "CASE_STATE_{}",
        state.as_str().to_ascii_uppercase()
    ))
    .unwrap_or(pb::CaseState::Unspecified)
}

pub fn cover_to_pb(cover: Cover) -> pb::Cover {
    match cover {
        Cover::None => pb::Cover::default(),
        Cover::Until { date, basis } => pb::Cover {
            basis: basis.as_str().to_string(),
            until: Some(convert::date_to_pb(date)),
            open_ended: false,
        },
        Cover::Open { basis } => pb::Cover {
            basis: basis.as_str().to_string(),
            until: None,
            open_ended: true,
        },
    }
}

/// Eight characters an employer or a benefits office types to check an
/// attestation.
pub fn verification_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn attestation_from_row(
    kind: &str,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
) -> Option<Attestation> {
    Some(Attestation {
        kind: rights::AttestationKind::parse(kind)?,
        valid_from,
        valid_until,
    })
}

/// The cover as the `cover_until` and `cover_basis` columns keep it.
pub fn cover_from_columns(until: Option<NaiveDate>, basis: Option<&str>) -> pb::Cover {
    match (until, basis) {
        (_, None) => pb::Cover::default(),
        (Some(date), Some(basis)) => pb::Cover {
            basis: basis.to_string(),
            until: Some(convert::date_to_pb(date)),
            open_ended: false,
        },
        (None, Some(basis)) => pb::Cover {
            basis: basis.to_string(),
            until: None,
            open_ended: true,
        },
    }
}

/// The nearest-rank percentile `p` (0-100) of `values`; `None` when empty.
pub fn percentile(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (u64::from(p.min(100)) * sorted.len() as u64)
        .div_ceil(100)
        .max(1) as usize;
    sorted.get(rank - 1).copied()
}

/// Fewer decisions than this and no delay estimate is given: a figure from
/// two cases would mislead more than it informs.
pub const MIN_DECISIONS_FOR_ESTIMATE: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let table: &[(&[i64], u32, Option<i64>)] = &[
            (&[], 80, None),
            (&[7], 80, Some(7)),
            (&[1, 2, 3, 4, 5], 80, Some(4)),
            (&[5, 1, 4, 2, 3], 50, Some(3)),
            (&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 80, Some(80)),
            (&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 81, Some(90)),
            (&[3, 3, 3], 100, Some(3)),
        ];
        for (values, p, expected) in table {
            assert_eq!(percentile(values, *p), *expected, "{values:?} p{p}");
        }
    }

    #[test]
    fn kinds_round_trip_through_the_column() {
        let kinds = vec![DocumentKind::Photo, DocumentKind::TaxStamp];
        assert_eq!(split_kinds(&join_kinds(&kinds)), kinds);
        assert!(split_kinds("").is_empty());
    }

    #[test]
    fn covers_read_back_from_columns() {
        let d = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
        assert_eq!(cover_from_columns(None, None), pb::Cover::default());
        let c = cover_from_columns(Some(d), Some("prolongation"));
        assert_eq!((c.basis.as_str(), c.open_ended), ("prolongation", false));
        assert!(cover_from_columns(None, Some("favourable_decision")).open_ended);
    }
}
