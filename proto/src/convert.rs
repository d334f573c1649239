//! Between the wire and the domain. Into the wire is total; out of it is a
//! parse that reuses the domain's own checks, so a gRPC or AMQP message is held
//! to exactly the rules of a JSON body.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use guichet_dossier::filing::{
    RawAddress, RawApplicant, RawContact, RawCurrentTitle, RawDocument, RawProvenance,
};
use guichet_dossier::{
    AnswerChannel, Applicant, Channel, Contact, DocumentKind, Dossier, Filing, Motif, Procedure,
    Provenance, RawFiling, Reference, SCHEMA_VERSION, TitleKind, Violations, reads_schema_version,
};

use guichet_dossier::desk::{AppointmentState, BookingRoute};
use guichet_dossier::signalement::{AlternativeKind, Category, ReportOutcome, ReportState};
use guichet_dossier::{CaseState, UrgencyClass};

use crate::v1 as pb;

// ---- small pieces ------------------------------------------------------------

pub fn date_to_pb(d: NaiveDate) -> pb::CalendarDate {
    pb::CalendarDate {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    }
}

/// The ISO text of a wire date, for the domain's parser; `None` when unset.
fn date_text(d: &Option<pb::CalendarDate>) -> Option<String> {
    let d = d.as_ref()?;
    if d.year == 0 && d.month == 0 && d.day == 0 {
        return None;
    }
    Some(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
}

pub fn date_from_pb(d: &pb::CalendarDate) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        d.year,
        u32::try_from(d.month).ok()?,
        u32::try_from(d.day).ok()?,
    )
}

/// A date a request may give (a filter, a bound): absent, or all zero (the
/// proto3 empty value), is `None`; one that is no calendar date (month 13,
/// 31 February) is refused naming `field`, never taken as absent.
pub fn request_date(
    field: &str,
    d: Option<&pb::CalendarDate>,
) -> Result<Option<NaiveDate>, Violations> {
    match d {
        None => Ok(None),
        Some(d) if *d == pb::CalendarDate::default() => Ok(None),
        Some(d) => date_from_pb(d).map(Some).ok_or_else(|| {
            Violations::one(
                field,
                format!(
                    "{:04}-{:02}-{:02} is not a calendar date",
                    d.year, d.month, d.day
                ),
            )
        }),
    }
}

pub fn timestamp_to_pb(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn timestamp_from_pb(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn channel_to_pb(c: Channel) -> pb::Channel {
    match c {
        Channel::Web => pb::Channel::Web,
        Channel::Ccc => pb::Channel::Ccc,
        Channel::Pan => pb::Channel::Pan,
        Channel::Postal => pb::Channel::Postal,
    }
}

pub fn channel_from_pb(c: pb::Channel) -> Option<Channel> {
    match c {
        pb::Channel::Unspecified => None,
        pb::Channel::Web => Some(Channel::Web),
        pb::Channel::Ccc => Some(Channel::Ccc),
        pb::Channel::Pan => Some(Channel::Pan),
        pb::Channel::Postal => Some(Channel::Postal),
    }
}

/// The case states and their wire values, one table read both ways.
const CASE_STATES: [(CaseState, pb::CaseState); 8] = [
    (CaseState::Filed, pb::CaseState::Filed),
    (CaseState::Incomplete, pb::CaseState::Incomplete),
    (
        CaseState::DocumentsRequested,
        pb::CaseState::DocumentsRequested,
    ),
    (CaseState::Complete, pb::CaseState::Complete),
    (CaseState::UnderReview, pb::CaseState::UnderReview),
    (CaseState::Favourable, pb::CaseState::Favourable),
    (CaseState::Unfavourable, pb::CaseState::Unfavourable),
    (CaseState::Closed, pb::CaseState::Closed),
];

/// The case state's code; `None` for unspecified, an unknown number as-is.
pub fn case_state_text(value: i32) -> Option<String> {
    (value != 0).then(|| {
        case_state_from_pb(value).map_or_else(|| value.to_string(), |s| s.as_str().to_string())
    })
}

pub fn case_state_to_pb(state: CaseState) -> pb::CaseState {
    CASE_STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(pb::CaseState::Unspecified, |(_, w)| *w)
}

/// `None` for unspecified, or a number no state has.
pub fn case_state_from_pb(value: i32) -> Option<CaseState> {
    CASE_STATES
        .iter()
        .find(|(_, w)| *w as i32 == value)
        .map(|(s, _)| *s)
}

/// A domain code list and its wire enum, variant for variant (prost names
/// `PROCEDURE_RENEWAL` as `Renewal`, like the domain). The match from the
/// domain is exhaustive: a code added to the domain without its wire value
/// does not compile. Gives `$to` (domain -> wire number), `$from` (wire
/// number -> domain, `None` for unspecified or unknown) and `$text` (the
/// domain code's text; an unknown number is passed on as-is, so the domain
/// names it in its error).
macro_rules! wire_enum {
    ($to:ident, $from:ident, $text:ident, $domain:ident, $wire:ty, [$($variant:ident),+ $(,)?]) => {
        pub fn $to(c: $domain) -> i32 {
            match c {
                $($domain::$variant => <$wire>::$variant as i32),+
            }
        }

        pub fn $from(v: i32) -> Option<$domain> {
            match <$wire>::try_from(v).ok()? {
                $(<$wire>::$variant => Some($domain::$variant),)+
                _ => None,
            }
        }

        pub fn $text(v: i32) -> Option<String> {
            if v == 0 {
                return None;
            }
            Some($from(v).map_or_else(|| v.to_string(), |c| c.as_str().to_string()))
        }
    };
}

wire_enum!(
    procedure_to_pb,
    procedure_from_pb,
    procedure_text,
    Procedure,
    pb::Procedure,
    [
        FirstApplication,
        Renewal,
        ChangeOfStatus,
        Regularisation,
        Duplicate
    ]
);
wire_enum!(
    motif_to_pb,
    motif_from_pb,
    motif_text,
    Motif,
    pb::Motif,
    [
        Student,
        Employee,
        SelfEmployed,
        Talent,
        SeasonalWorker,
        Family,
        SpouseOfFrench,
        ParentOfFrenchChild,
        PrivateAndFamilyLife,
        InternationalProtection,
        Health,
        Visitor,
        Retired,
        EuCitizenFamily,
        Other,
    ]
);
wire_enum!(
    title_kind_to_pb,
    title_kind_from_pb,
    title_kind_text,
    TitleKind,
    pb::TitleKind,
    [
        LongStayVisa,
        TemporaryCard,
        MultiYearCard,
        ResidentCard,
        AgreementTitle,
        ProvisionalAuthorisation,
        Receipt,
    ]
);
wire_enum!(
    document_kind_to_pb,
    document_kind_from_pb,
    document_kind_text,
    DocumentKind,
    pb::DocumentKind,
    [
        Passport,
        Photo,
        ProofOfAddress,
        CurrentTitle,
        BirthCertificate,
        ProofOfResources,
        EnrolmentCertificate,
        EmploymentContract,
        MarriageCertificate,
        ProtectionDecision,
        MedicalCertificate,
        TaxNotice,
        TaxStamp,
        Other,
    ]
);
wire_enum!(
    report_state_to_pb,
    report_state_from_pb,
    report_state_text,
    ReportState,
    pb::ReportState,
    [Open, Escalated, AlternativeOffered, Closed]
);
wire_enum!(
    report_category_to_pb,
    report_category_from_pb,
    report_category_text,
    Category,
    pb::ReportCategory,
    [
        CannotCreateAccount,
        UploadFails,
        AppointmentImpossible,
        TwoProceduresAtOnce,
        NoReceipt,
        Other,
    ]
);
wire_enum!(
    alternative_kind_to_pb,
    alternative_kind_from_pb,
    alternative_kind_text,
    AlternativeKind,
    pb::AlternativeKind,
    [PanAppointment, PaperKit]
);
wire_enum!(
    report_outcome_to_pb,
    report_outcome_from_pb,
    report_outcome_text,
    ReportOutcome,
    pb::ReportOutcome,
    [Filed, Declined, Unreachable]
);
wire_enum!(
    appointment_state_to_pb,
    appointment_state_from_pb,
    appointment_state_text,
    AppointmentState,
    pb::AppointmentState,
    [Booked, Cancelled, Attended, NoShow]
);
wire_enum!(
    booking_route_to_pb,
    booking_route_from_pb,
    booking_route_text,
    BookingRoute,
    pb::BookingRoute,
    [Online, Phone, FrontDesk]
);
wire_enum!(
    urgency_to_pb,
    urgency_from_pb,
    urgency_text,
    UrgencyClass,
    pb::UrgencyClass,
    [Critical, Soon, Routine]
);
wire_enum!(
    answer_channel_to_pb,
    answer_channel_from_pb,
    answer_channel_text,
    AnswerChannel,
    pb::AnswerChannel,
    [OnlineAccount, Email, Sms, Post]
);

// ---- domain -> wire ----------------------------------------------------------

pub fn provenance_to_pb(p: &Provenance) -> pb::Provenance {
    use pb::provenance::Channel as C;
    let channel = match p {
        Provenance::Web { account_id } => C::Web(pb::WebProvenance {
            account_id: account_id.clone().unwrap_or_default(),
        }),
        Provenance::Ccc {
            agent_id,
            call_id,
            consent_recorded,
        } => C::Ccc(pb::CccProvenance {
            agent_id: agent_id.clone(),
            call_id: call_id.clone(),
            consent_recorded: *consent_recorded,
        }),
        Provenance::Pan {
            site_id,
            desk_agent_id,
            appointment_id,
            identity_checked,
        } => C::Pan(pb::PanProvenance {
            site_id: site_id.clone(),
            desk_agent_id: desk_agent_id.clone(),
            appointment_id: appointment_id.clone().unwrap_or_default(),
            identity_checked: *identity_checked,
        }),
        Provenance::Postal {
            station_id,
            envelope_id,
            postmark_date,
            reception_date,
        } => C::Postal(pb::PostalProvenance {
            station_id: station_id.clone(),
            envelope_id: envelope_id.clone(),
            postmark_date: postmark_date.map(date_to_pb),
            reception_date: Some(date_to_pb(*reception_date)),
        }),
    };
    pb::Provenance {
        channel: Some(channel),
    }
}

pub fn applicant_to_pb(a: &Applicant) -> pb::Applicant {
    pb::Applicant {
        family_name: a.family_name.clone(),
        given_names: a.given_names.clone().unwrap_or_default(),
        birth_date: Some(date_to_pb(a.birth_date)),
        birth_place: a.birth_place.clone().unwrap_or_default(),
        nationality: a.nationality.clone(),
        foreigner_number: a.foreigner_number.clone().unwrap_or_default(),
    }
}

pub fn contact_to_pb(c: &Contact) -> pb::Contact {
    pb::Contact {
        email: c.email.clone().unwrap_or_default(),
        phone: c.phone.clone().unwrap_or_default(),
        address: Some(pb::PostalAddress {
            line1: c.address.line1.clone(),
            line2: c.address.line2.clone().unwrap_or_default(),
            postal_code: c.address.postal_code.clone(),
            city: c.address.city.clone(),
            country: c.address.country.clone(),
        }),
        answer_channel: answer_channel_to_pb(c.answer_channel),
        language: c.language.as_str().to_string(),
    }
}

pub fn filing_to_pb(f: &Filing) -> pb::Filing {
    pb::Filing {
        procedure: procedure_to_pb(f.procedure),
        motif: motif_to_pb(f.motif),
        applicant: Some(applicant_to_pb(&f.applicant)),
        contact: Some(contact_to_pb(&f.contact)),
        current_title: f.current_title.as_ref().map(|t| pb::CurrentTitle {
            kind: title_kind_to_pb(t.kind),
            number: t.number.clone(),
            expires_on: Some(date_to_pb(t.expires_on)),
        }),
        documents: f
            .documents
            .iter()
            .map(|d| pb::DocumentRef {
                kind: document_kind_to_pb(d.kind),
                sha256: d.sha256.clone(),
                media_type: d.media_type.clone(),
                size_bytes: d.size_bytes,
                filename: d.filename.clone().unwrap_or_default(),
            })
            .collect(),
        provenance: Some(provenance_to_pb(&f.provenance)),
        idempotency_key: f.idempotency_key.clone(),
    }
}

pub fn dossier_to_pb(d: &Dossier) -> pb::Dossier {
    pb::Dossier {
        schema_version: SCHEMA_VERSION,
        reference: d.reference.to_string(),
        channel: channel_to_pb(d.channel()) as i32,
        filing: Some(filing_to_pb(&d.filing)),
        legal_filing_date: Some(date_to_pb(d.legal_filing_date)),
        filed_at: Some(timestamp_to_pb(d.filed_at)),
        received_at: Some(timestamp_to_pb(d.received_at)),
        prefecture: d.prefecture().to_string(),
    }
}

// ---- wire -> domain ------------------------------------------------------------

/// The lenient forms of a wire filing, for `Filing::parse`.
pub fn raw_filing_from_pb(f: &pb::Filing) -> (RawFiling, Option<RawProvenance>) {
    let raw = RawFiling {
        procedure: procedure_text(f.procedure),
        motif: motif_text(f.motif),
        applicant: f.applicant.as_ref().map(|a| RawApplicant {
            family_name: opt(&a.family_name),
            given_names: opt(&a.given_names),
            birth_date: date_text(&a.birth_date),
            birth_place: opt(&a.birth_place),
            nationality: opt(&a.nationality),
            foreigner_number: opt(&a.foreigner_number),
        }),
        contact: f.contact.as_ref().map(|c| RawContact {
            email: opt(&c.email),
            phone: opt(&c.phone),
            address: c.address.as_ref().map(|a| RawAddress {
                line1: opt(&a.line1),
                line2: opt(&a.line2),
                postal_code: opt(&a.postal_code),
                city: opt(&a.city),
                country: opt(&a.country),
            }),
            answer_channel: answer_channel_text(c.answer_channel),
            language: opt(&c.language),
        }),
        current_title: f.current_title.as_ref().map(|t| RawCurrentTitle {
            kind: title_kind_text(t.kind),
            number: opt(&t.number),
            expires_on: date_text(&t.expires_on),
        }),
        documents: f
            .documents
            .iter()
            .map(|d| RawDocument {
                kind: document_kind_text(d.kind),
                sha256: opt(&d.sha256),
                media_type: opt(&d.media_type),
                size_bytes: Some(d.size_bytes),
                filename: opt(&d.filename),
            })
            .collect(),
        idempotency_key: opt(&f.idempotency_key),
    };
    let provenance = f
        .provenance
        .as_ref()
        .and_then(|p| p.channel.as_ref())
        .map(raw_provenance_from_pb);
    (raw, provenance)
}

fn raw_provenance_from_pb(p: &pb::provenance::Channel) -> RawProvenance {
    use pb::provenance::Channel as C;
    match p {
        C::Web(w) => RawProvenance::Web {
            account_id: opt(&w.account_id),
        },
        C::Ccc(c) => RawProvenance::Ccc {
            agent_id: opt(&c.agent_id),
            call_id: opt(&c.call_id),
            consent_recorded: c.consent_recorded,
        },
        C::Pan(p) => RawProvenance::Pan {
            site_id: opt(&p.site_id),
            desk_agent_id: opt(&p.desk_agent_id),
            appointment_id: opt(&p.appointment_id),
            identity_checked: p.identity_checked,
        },
        C::Postal(p) => RawProvenance::Postal {
            station_id: opt(&p.station_id),
            envelope_id: opt(&p.envelope_id),
            postmark_date: date_text(&p.postmark_date),
            reception_date: date_text(&p.reception_date),
        },
    }
}

/// Parses a dossier read off the bus at `now`: nothing in it is dated after
/// the day it is `now` in the person's department.
pub fn dossier_from_pb(
    d: &pb::Dossier,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Dossier, Violations> {
    // The filing's own dates (birth, postmark) are checked against the
    // latest date anywhere in France; the dossier's, below, against its
    // department's.
    let today = guichet_dossier::calendar::latest_date_in_france(now);
    if !reads_schema_version(d.schema_version) {
        return Err(Violations::one(
            "schema_version",
            format!(
                "version {} is not known here (this service writes version {SCHEMA_VERSION} \
                 and reads one version either side)",
                d.schema_version
            ),
        ));
    }
    let mut v = Violations::new();
    let reference = match Reference::parse(&d.reference) {
        Ok(r) => Some(r),
        Err(e) => {
            v.add("reference", e.to_string());
            None
        }
    };
    let filing = match &d.filing {
        None => {
            v.add("filing", "is required");
            None
        }
        Some(f) => {
            let (raw, provenance) = raw_filing_from_pb(f);
            match provenance {
                None => {
                    v.add("filing.provenance", "is required");
                    None
                }
                Some(p) => match Filing::parse(&raw, &p, today) {
                    Ok(f) => Some(f),
                    Err(errors) => {
                        for e in errors.into_vec() {
                            v.add(format!("filing.{}", e.field), e.problem);
                        }
                        None
                    }
                },
            }
        }
    };
    let filed_at = d.filed_at.as_ref().and_then(timestamp_from_pb);
    if filed_at.is_none() {
        v.add("filed_at", "is required");
    }
    let received_at = d.received_at.as_ref().and_then(timestamp_from_pb);
    if received_at.is_none() {
        v.add("received_at", "is required");
    }
    let (Some(reference), Some(filing), Some(filed_at), Some(received_at)) =
        (reference, filing, filed_at, received_at)
    else {
        return Err(v);
    };
    let mut dossier = Dossier::new(reference, filing, filed_at, received_at);
    let department = dossier.filing.contact.address.department.clone();
    // No dossier counts from a day still to come, whichever channel it says
    // it came from.
    if let Err(e) = dossier.filing.provenance.checked_legal_filing_date(
        dossier.filed_at,
        &department,
        guichet_dossier::calendar::local_date(now, &department),
    ) {
        let field = if e.field.starts_with("provenance.") {
            format!("filing.{}", e.field)
        } else {
            e.field
        };
        v.add(field, e.problem);
    }
    let stated_channel = pb::Channel::try_from(d.channel)
        .ok()
        .and_then(channel_from_pb);
    if stated_channel != Some(dossier.channel()) {
        v.add("channel", "does not match the provenance");
    }
    if dossier.reference.channel() != dossier.channel() {
        v.add(
            "reference",
            "was not issued by the channel of the provenance",
        );
    }
    let stated_date = d.legal_filing_date.as_ref().and_then(date_from_pb);
    let dated_by_clock = dossier.channel() != Channel::Postal;
    match stated_date {
        Some(date) if date == dossier.legal_filing_date => {}
        // A channel from before overseas filings were dated on their own
        // clock (the same schema version) dated it in Paris: kept as it was
        // stated, so its messages still queued or replayed are not
        // dead-lettered, and its receipt stays true.
        Some(date)
            if dated_by_clock
                && date == guichet_dossier::calendar::paris_date(dossier.filed_at) =>
        {
            dossier.legal_filing_date = date;
        }
        _ => v.add(
            "legal_filing_date",
            "does not follow from the provenance and filing time",
        ),
    }
    if d.prefecture != dossier.prefecture() {
        v.add("prefecture", "does not match the residence address");
    }
    v.into_result(dossier)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code's wire value is the one of the same name, and back.
    #[test]
    fn every_code_has_the_wire_value_of_its_name() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            prefix: &str,
            code: fn(T) -> &'static str,
            to: fn(T) -> i32,
            from: fn(i32) -> Option<T>,
            wire_name: fn(i32) -> Option<&'static str>,
        ) {
            for &c in all {
                let v = to(c);
                assert_eq!(from(v), Some(c));
                let expected = format!("{prefix}_{}", code(c).to_ascii_uppercase());
                assert_eq!(wire_name(v), Some(expected.as_str()));
            }
            assert_eq!(from(0), None);
            assert_eq!(from(999), None);
        }
        check(
            Procedure::ALL,
            "PROCEDURE",
            Procedure::as_str,
            procedure_to_pb,
            procedure_from_pb,
            |v| pb::Procedure::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            Motif::ALL,
            "MOTIF",
            Motif::as_str,
            motif_to_pb,
            motif_from_pb,
            |v| pb::Motif::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            TitleKind::ALL,
            "TITLE_KIND",
            TitleKind::as_str,
            title_kind_to_pb,
            title_kind_from_pb,
            |v| pb::TitleKind::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            DocumentKind::ALL,
            "DOCUMENT_KIND",
            DocumentKind::as_str,
            document_kind_to_pb,
            document_kind_from_pb,
            |v| pb::DocumentKind::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            AnswerChannel::ALL,
            "ANSWER_CHANNEL",
            AnswerChannel::as_str,
            answer_channel_to_pb,
            answer_channel_from_pb,
            |v| pb::AnswerChannel::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            ReportState::ALL.as_slice(),
            "REPORT_STATE",
            ReportState::as_str,
            report_state_to_pb,
            report_state_from_pb,
            |v| pb::ReportState::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            Category::ALL.as_slice(),
            "REPORT_CATEGORY",
            Category::as_str,
            report_category_to_pb,
            report_category_from_pb,
            |v| {
                pb::ReportCategory::try_from(v)
                    .ok()
                    .map(|w| w.as_str_name())
            },
        );
        check(
            AlternativeKind::ALL,
            "ALTERNATIVE_KIND",
            AlternativeKind::as_str,
            alternative_kind_to_pb,
            alternative_kind_from_pb,
            |v| {
                pb::AlternativeKind::try_from(v)
                    .ok()
                    .map(|w| w.as_str_name())
            },
        );
        check(
            ReportOutcome::ALL,
            "REPORT_OUTCOME",
            ReportOutcome::as_str,
            report_outcome_to_pb,
            report_outcome_from_pb,
            |v| pb::ReportOutcome::try_from(v).ok().map(|w| w.as_str_name()),
        );
        check(
            AppointmentState::ALL,
            "APPOINTMENT_STATE",
            AppointmentState::as_str,
            appointment_state_to_pb,
            appointment_state_from_pb,
            |v| {
                pb::AppointmentState::try_from(v)
                    .ok()
                    .map(|w| w.as_str_name())
            },
        );
        check(
            BookingRoute::ALL,
            "BOOKING_ROUTE",
            BookingRoute::as_str,
            booking_route_to_pb,
            booking_route_from_pb,
            |v| pb::BookingRoute::try_from(v).ok().map(|w| w.as_str_name()),
        );
        assert_eq!(procedure_text(0), None);
        assert_eq!(
            procedure_text(99).as_deref(),
            Some("99"),
            "unknown numbers passed on"
        );
        assert_eq!(procedure_text(2).as_deref(), Some("renewal"));
    }

    #[test]
    fn every_case_state_has_its_wire_value_and_back() {
        for state in CaseState::ALL {
            let wire = case_state_to_pb(state);
            assert_ne!(wire, pb::CaseState::Unspecified, "{state}");
            assert_eq!(case_state_from_pb(wire as i32), Some(state));
        }
        assert_eq!(case_state_from_pb(0), None);
        assert_eq!(case_state_from_pb(99), None);
    }
    use chrono::TimeZone;
    use prost::Message;

    fn sample() -> Dossier {
        let raw: RawFiling = serde_json::from_value(serde_json::json!({
            "procedure": "change_of_status",
            "motif": "international_protection",
            "applicant": {"family_name": "Haidari", "birth_date": "1999-07-01", "nationality": "AFG"},
            "contact": {"phone": "+33700000001", "address": {"line1": "3 place du Marché", "postal_code": "20200", "city": "Bastia"}, "answer_channel": "post"},
            "current_title": {"kind": "receipt", "number": "R123", "expires_on": "2026-12-01"},
            "documents": [{"kind": "protection_decision", "sha256": "0".repeat(64), "media_type": "image/png", "size_bytes": 5, "filename": "ofpra.png"}],
            "idempotency_key": "abc"
        }))
        .unwrap();
        let provenance = RawProvenance::Postal {
            station_id: Some("st-2b".into()),
            envelope_id: Some("env-1".into()),
            postmark_date: Some("2026-11-18".into()),
            reception_date: Some("2026-11-20".into()),
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let filing = Filing::parse(&raw, &provenance, today).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let reference = Reference::parse(
            &Reference::generate(Channel::Postal, 2026, &mut rand::rng()).to_string(),
        )
        .unwrap();
        Dossier::new(reference, filing, at, at)
    }

    #[test]
    fn a_dossier_survives_the_wire() {
        let d = sample();
        let bytes = dossier_to_pb(&d).encode_to_vec();
        let back = pb::Dossier::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.prefecture, "2B");
        assert_eq!(back.channel, pb::Channel::Postal as i32);
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        assert_eq!(dossier_from_pb(&back, now).unwrap(), d);
    }

    #[test]
    fn codes_map_by_name() {
        for &p in Procedure::ALL {
            assert_ne!(procedure_to_pb(p), 0, "{p}");
            assert_eq!(
                procedure_text(procedure_to_pb(p)).as_deref(),
                Some(p.as_str())
            );
        }
        for &m in Motif::ALL {
            assert_eq!(motif_text(motif_to_pb(m)).as_deref(), Some(m.as_str()));
        }
        for &k in TitleKind::ALL {
            assert_eq!(
                title_kind_text(title_kind_to_pb(k)).as_deref(),
                Some(k.as_str())
            );
        }
        for &k in DocumentKind::ALL {
            assert_eq!(
                document_kind_text(document_kind_to_pb(k)).as_deref(),
                Some(k.as_str())
            );
        }
        for &a in AnswerChannel::ALL {
            assert_eq!(
                answer_channel_text(answer_channel_to_pb(a)).as_deref(),
                Some(a.as_str())
            );
        }
        assert_eq!(procedure_text(0), None);
        assert_eq!(procedure_text(99).as_deref(), Some("99"));
    }

    #[test]
    fn inconsistent_wire_dossiers_are_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        type Breaker = fn(&mut pb::Dossier);
        let table: Vec<(Breaker, &str)> = vec![
            (|d| d.schema_version = SCHEMA_VERSION + 2, "schema_version"),
            (|d| d.schema_version = 0, "schema_version"),
            (|d| d.reference = "nope".into(), "reference"),
            (|d| d.channel = pb::Channel::Web as i32, "channel"),
            (
                |d| {
                    d.legal_filing_date = Some(pb::CalendarDate {
                        year: 2026,
                        month: 11,
                        day: 20,
                    })
                },
                "legal_filing_date",
            ),
            (|d| d.prefecture = "75".into(), "prefecture"),
            (|d| d.filed_at = None, "filed_at"),
            (
                |d| {
                    d.filing
                        .as_mut()
                        .unwrap()
                        .applicant
                        .as_mut()
                        .unwrap()
                        .nationality = "X".into()
                },
                "filing.applicant.nationality",
            ),
            (
                |d| d.filing.as_mut().unwrap().provenance = None,
                "filing.provenance",
            ),
            (
                |d| {
                    let Some(pb::provenance::Channel::Postal(p)) = d
                        .filing
                        .as_mut()
                        .and_then(|f| f.provenance.as_mut())
                        .and_then(|p| p.channel.as_mut())
                    else {
                        unreachable!("the sample is postal")
                    };
                    p.postmark_date = None;
                    p.reception_date = Some(pb::CalendarDate {
                        year: 2026,
                        month: 11,
                        day: 25,
                    });
                },
                "filing.provenance.postal.reception_date",
            ),
        ];
        for (breaker, field) in table {
            let mut d = dossier_to_pb(&sample());
            breaker(&mut d);
            let err = dossier_from_pb(&d, now).expect_err(field);
            assert!(err.iter().any(|v| v.field == field), "{field}: {err}");
        }
    }

    #[test]
    fn a_dossier_filed_after_today_is_refused() {
        let d = sample();
        let web = Filing {
            provenance: Provenance::Web { account_id: None },
            ..d.filing.clone()
        };
        let reference = Reference::generate(Channel::Web, 2026, &mut rand::rng());
        // 10:00 in Paris on the 25th: tomorrow.
        let tomorrow = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let wire = dossier_to_pb(&Dossier::new(reference, web, tomorrow, tomorrow));
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let err = dossier_from_pb(&wire, now).expect_err("a dossier from tomorrow");
        assert!(err.iter().any(|v| v.field == "filed_at"), "{err}");
        assert!(dossier_from_pb(&wire, tomorrow).is_ok());
    }

    #[test]
    fn an_overseas_dossier_is_dated_on_its_clock_or_as_a_channel_before_did() {
        let mut filing = sample().filing;
        filing.provenance = Provenance::Web { account_id: None };
        filing.contact.address.postal_code = "97300".into();
        filing.contact.address.department = "973".into();
        // 23:00 on the 23rd in Cayenne, 03:00 on the 24th in Paris.
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap();
        let reference = Reference::generate(Channel::Web, 2026, &mut rand::rng());
        let dossier = Dossier::new(reference, filing, at, at);
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        assert_eq!(dossier.legal_filing_date, d(23));
        let stated = |day: u32| {
            let mut wire = dossier_to_pb(&dossier);
            wire.legal_filing_date = Some(date_to_pb(d(day)));
            dossier_from_pb(&wire, at).map(|read| read.legal_filing_date)
        };
        assert_eq!(stated(23), Ok(d(23)), "dated on Cayenne's clock");
        // Dated in Paris by a channel from before: kept as stated.
        assert_eq!(stated(24), Ok(d(24)), "dated in Paris, as before");
        let err = stated(22).expect_err("neither");
        assert!(err.iter().any(|v| v.field == "legal_filing_date"), "{err}");
    }

    #[test]
    fn request_dates_are_absent_valid_or_refused_by_name() {
        let date = |year, month, day| pb::CalendarDate { year, month, day };
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day);
        let table = [
            (None, Ok(None)),
            (Some(date(0, 0, 0)), Ok(None)),
            (Some(date(2026, 12, 1)), Ok(d(12, 1))),
            (Some(date(2026, 13, 1)), Err(())),
            (Some(date(2026, 2, 31)), Err(())),
            (Some(date(2026, -1, 1)), Err(())),
            (Some(date(2026, 0, 0)), Err(())),
        ];
        for (given, want) in table {
            let got = request_date("cover_ends_before", given.as_ref());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{given:?}"),
                (Err(v), Err(())) => {
                    assert_eq!(v.iter().next().unwrap().field, "cover_ends_before")
                }
                (got, _) => panic!("{given:?}: {got:?}"),
            }
        }
    }
}
