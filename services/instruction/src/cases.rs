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

/// Data this service wrote that it cannot read back: damaged or written by
/// something else. Reported as an internal error, never papered over.
#[derive(Debug, thiserror::Error)]
#[error("the stored dossier {reference} cannot be read: {problem}")]
pub struct Unreadable {
    pub reference: String,
    pub problem: String,
}

impl Unreadable {
    pub fn new(reference: &str, problem: impl std::fmt::Display) -> Self {
        Self {
            reference: reference.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// What the rules need of a stored case: its procedure and filing date from
/// their columns, the title held from the dossier as received.
pub fn facts_of(
    reference: &str,
    dossier: &pb::Dossier,
    procedure: Procedure,
    state: CaseState,
    filed_on: NaiveDate,
    card_until: Option<NaiveDate>,
) -> Result<CaseFacts, Unreadable> {
    let title = match dossier
        .filing
        .as_ref()
        .and_then(|f| f.current_title.as_ref())
    {
        None => None,
        Some(t) => {
            let kind = convert::title_kind_text(t.kind)
                .and_then(|k| TitleKind::parse(&k))
                .ok_or_else(|| Unreadable::new(reference, format!("title kind {}", t.kind)))?;
            let expires = t
                .expires_on
                .as_ref()
                .and_then(convert::date_from_pb)
                .ok_or_else(|| Unreadable::new(reference, "title expiry date"))?;
            Some((kind, expires))
        }
    };
    Ok(CaseFacts {
        procedure,
        state,
        title,
        filed_on,
        card_until,
    })
}

/// A dossier's state as it arrives: complete or not, the attestation it is
/// owed at once, if any, and its first cover (that attestation included).
pub struct Arrival {
    pub state: CaseState,
    pub missing: Vec<DocumentKind>,
    pub attestation: Option<Attestation>,
    pub cover: Cover,
}

/// `horizon_days`: issue when cover ends within this many days, as the
/// sweep and every later step do, so a complete renewal near its end is
/// covered the moment it is recorded.
pub fn on_arrival(dossier: &Dossier, today: NaiveDate, horizon_days: i64) -> Arrival {
    let received: Vec<DocumentKind> = dossier.filing.documents.iter().map(|d| d.kind).collect();
    let missing = requirements::missing(dossier.filing.procedure, dossier.filing.motif, &received);
    let state = if missing.is_empty() {
        CaseState::Complete
    } else {
        CaseState::Incomplete
    };
    let facts = domain_facts(dossier, state);
    let attestation = rights::attestation_due(&facts, &[], today, horizon_days);
    let cover = rights::cover(&facts, attestation.as_slice(), today);
    Arrival {
        state,
        missing,
        attestation,
        cover,
    }
}

/// What the rules need, from a dossier as received.
fn domain_facts(dossier: &Dossier, state: CaseState) -> CaseFacts {
    CaseFacts {
        procedure: dossier.filing.procedure,
        state,
        title: dossier
            .filing
            .current_title
            .as_ref()
            .map(|t| (t.kind, t.expires_on)),
        filed_on: dossier.legal_filing_date,
        card_until: None,
    }
}

/// The cover a dossier holds from its title and the law alone.
pub fn cover_without_attestations(dossier: &Dossier, state: CaseState, today: NaiveDate) -> Cover {
    rights::cover(&domain_facts(dossier, state), &[], today)
}

/// Comma-separated document kinds, as the `missing` column keeps them.
pub fn join_kinds(kinds: &[DocumentKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The `missing` column read back; a kind this service does not know means
/// damaged data.
pub fn split_kinds(text: &str) -> Result<Vec<DocumentKind>, guichet_dossier::codes::UnknownCode> {
    text.split(',')
        .filter(|k| !k.is_empty())
        .map(|k| DocumentKind::try_from(k.to_string()))
        .collect()
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
    let filing = e.dossier.filing.as_ref();
    let applicant = filing.and_then(|f| f.applicant.as_ref());
    let answer_channel = filing
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
        contact: filing.and_then(|f| f.contact.clone()),
        given_names: applicant.map(|a| a.given_names.clone()).unwrap_or_default(),
        family_name: applicant.map(|a| a.family_name.clone()).unwrap_or_default(),
        legal_filing_date: e.dossier.legal_filing_date,
        prefecture: e.dossier.prefecture.clone(),
        procedure: filing.map_or(0, |f| f.procedure),
        documents: filing
            .map(|f| f.documents.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|d| pb::DocumentReceipt {
                kind: d.kind,
                sha256: d.sha256.clone(),
                size_bytes: d.size_bytes,
                media_type: d.media_type.clone(),
                received_at: e.dossier.filed_at,
                channel: e.dossier.channel,
            })
            .collect(),
    };
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("case.{}.{}", e.kind, channel.as_str()),
        body.encode_to_vec(),
    )
    .with_header("x-guichet-reference", e.reference)
}

pub fn state_to_pb(state: CaseState) -> pb::CaseState {
    convert::case_state_to_pb(state)
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
        assert_eq!(split_kinds(&join_kinds(&kinds)).unwrap(), kinds);
        assert!(split_kinds("").unwrap().is_empty());
        assert!(
            split_kinds("photo,shoe").is_err(),
            "damaged data is an error"
        );
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
