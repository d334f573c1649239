//! The JSON forms the areas share: dates and times as text, a dossier's
//! state and history without personal data, cover and attestations.

use guichet_proto::{convert, v1 as pb};
use serde::Serialize;

pub fn date_text(d: &Option<pb::CalendarDate>) -> String {
    d.as_ref()
        .and_then(convert::date_from_pb)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

pub fn time_text(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(convert::timestamp_from_pb)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn channel_text(c: i32) -> &'static str {
    pb::Channel::try_from(c)
        .ok()
        .and_then(convert::channel_from_pb)
        .map(|c| c.as_str())
        .unwrap_or("")
}

#[derive(Debug, Serialize)]
pub struct DossierView {
    pub reference: String,
    pub channel: &'static str,
    pub procedure: String,
    pub motif: String,
    pub prefecture: String,
    pub state: String,
    pub urgency: String,
    pub legal_filing_date: String,
    pub filed_at: String,
    pub recorded_at: String,
    pub title_expires_on: Option<String>,
    pub documents: usize,
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub kind: String,
    pub actor: String,
    pub at: String,
    pub reason: String,
    pub trace_id: String,
}

/// The JSON form of a dossier's state and history, without personal data.
pub fn dossier_view(view: pb::DossierView) -> DossierView {
    let dossier = view.dossier.unwrap_or_default();
    let filing = dossier.filing.unwrap_or_default();
    DossierView {
        reference: dossier.reference,
        channel: channel_text(dossier.channel),
        procedure: convert::procedure_text(filing.procedure).unwrap_or_default(),
        motif: convert::motif_text(filing.motif).unwrap_or_default(),
        prefecture: dossier.prefecture,
        state: convert::case_state_text(view.state).unwrap_or_default(),
        urgency: convert::urgency_text(view.urgency).unwrap_or_default(),
        legal_filing_date: date_text(&dossier.legal_filing_date),
        filed_at: time_text(&dossier.filed_at),
        recorded_at: time_text(&view.recorded_at),
        title_expires_on: filing
            .current_title
            .as_ref()
            .map(|t| date_text(&t.expires_on)),
        documents: filing.documents.len(),
        events: view
            .events
            .into_iter()
            .map(|e| EventView {
                kind: e.kind,
                actor: e.actor,
                at: time_text(&e.at),
                reason: e.reason,
                trace_id: e.trace_id,
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
pub struct CoverView {
    /// What proves legal stay: current_title, legal_extension, prolongation,
    /// rights_creating, favourable_decision, new_card (handed over); null
    /// when nothing does.
    pub basis: Option<String>,
    pub until: Option<String>,
    pub open_ended: bool,
}

pub fn cover_view(c: Option<pb::Cover>) -> CoverView {
    let c = c.unwrap_or_default();
    CoverView {
        basis: (!c.basis.is_empty()).then_some(c.basis),
        until: c.until.as_ref().map(|d| date_text(&Some(*d))),
        open_ended: c.open_ended,
    }
}

#[derive(Debug, Serialize)]
pub struct AttestationJson {
    pub id: u64,
    pub kind: String,
    pub valid_from: String,
    /// Null: until the card is handed over.
    pub valid_until: Option<String>,
    pub issued_at: String,
    pub verification_code: String,
}

pub fn attestation_json(a: pb::AttestationView) -> AttestationJson {
    AttestationJson {
        id: a.id,
        kind: a.kind,
        valid_from: date_text(&a.valid_from),
        valid_until: a.valid_until.as_ref().map(|d| date_text(&Some(*d))),
        issued_at: time_text(&a.issued_at),
        verification_code: a.verification_code,
    }
}

pub fn kinds_text(kinds: &[i32]) -> Vec<String> {
    kinds
        .iter()
        .map(|k| convert::document_kind_text(*k).unwrap_or_default())
        .collect()
}

/// Consecutive days, both included.
#[derive(Debug, Serialize)]
pub struct PeriodJson {
    pub from: String,
    pub until: String,
}

pub fn periods_json(periods: Vec<pb::Period>) -> Vec<PeriodJson> {
    periods
        .into_iter()
        .map(|p| PeriodJson {
            from: date_text(&p.from),
            until: date_text(&p.until),
        })
        .collect()
}
