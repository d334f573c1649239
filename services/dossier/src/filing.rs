//! A filing as the person gives it (`RawFiling`, lenient: every field optional,
//! codes and dates as text) and the checked, normalized forms built from it
//! (`Filing`, then `Dossier` once the system gives it a reference). A `Filing`
//! or a `Dossier` is always valid: the only way to build one is `parse`.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calendar::parse_iso_date;
use crate::codes::{AnswerChannel, DocumentKind, Language, Motif, Procedure, TitleKind};
use crate::prefecture::department_of_postal_code;
use crate::{Channel, Reference, Violations};

/// The version of the dossier's shape on the bus that this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether this build reads a dossier of `version`: its own, and one step
/// either side, so that old and new instances read each other's dossiers
/// while a rolling upgrade runs. A step may only add fields, with a default
/// that means "not given": the older reader skips what it does not know, the
/// newer finds the default. Any other change takes two steps. Version 0 is
/// a dossier that says none (protobuf's default), never a real one.
pub fn reads_schema_version(version: u32) -> bool {
    version >= 1 && version + 1 >= SCHEMA_VERSION && version <= SCHEMA_VERSION + 1
}

pub const MAX_DOCUMENTS: usize = 40;
pub const MAX_DOCUMENT_BYTES: u64 = 20 * 1024 * 1024;

/// A document's digest as written everywhere: 64 hexadecimal characters.
/// Anything else is refused before it names a stored object.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
pub const ACCEPTED_MEDIA_TYPES: [&str; 4] =
    ["application/pdf", "image/jpeg", "image/png", "image/tiff"];
const MAX_NAME_CHARS: usize = 100;
const MAX_AGE_YEARS: i32 = 130;

// ---- what arrives ----------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiling {
    pub procedure: Option<String>,
    pub motif: Option<String>,
    pub applicant: Option<RawApplicant>,
    pub contact: Option<RawContact>,
    pub current_title: Option<RawCurrentTitle>,
    #[serde(default)]
    pub documents: Vec<RawDocument>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplicant {
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub birth_place: Option<String>,
    pub nationality: Option<String>,
    pub foreigner_number: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawContact {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<RawAddress>,
    pub answer_channel: Option<String>,
    /// "fr" (the default) or "en". Left out of the serialized form when
    /// unset, so the fingerprints of filings made before it stay the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddress {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCurrentTitle {
    pub kind: Option<String>,
    pub number: Option<String>,
    pub expires_on: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocument {
    pub kind: Option<String>,
    pub sha256: Option<String>,
    pub media_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub filename: Option<String>,
}

/// Channel provenance as a channel service states it.
#[derive(Debug, Clone)]
pub enum RawProvenance {
    Web {
        account_id: Option<String>,
    },
    Ccc {
        agent_id: Option<String>,
        call_id: Option<String>,
        consent_recorded: bool,
    },
    Pan {
        site_id: Option<String>,
        desk_agent_id: Option<String>,
        appointment_id: Option<String>,
        identity_checked: bool,
    },
    Postal {
        station_id: Option<String>,
        envelope_id: Option<String>,
        postmark_date: Option<String>,
        reception_date: Option<String>,
    },
}

// ---- what is kept ----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filing {
    pub procedure: Procedure,
    pub motif: Motif,
    pub applicant: Applicant,
    pub contact: Contact,
    pub current_title: Option<CurrentTitle>,
    pub documents: Vec<DocumentRef>,
    pub provenance: Provenance,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applicant {
    pub family_name: String,
    pub given_names: Option<String>,
    pub birth_date: NaiveDate,
    pub birth_place: Option<String>,
    pub nationality: String,
    pub foreigner_number: Option<String>,
}

impl Applicant {
    /// Who the person is, for spotting the same request filed twice (say
    /// online, then by post because the site failed them): a digest of the
    /// folded family name, given names, birth date and nationality, so no
    /// name is kept in clear in an index. Given names are in it so twins or
    /// siblings born the same day are never linked on their own; the
    /// foreigner number is left out: paper filers often do not give it.
    pub fn person_key(&self) -> String {
        let given = folded(self.given_names.as_deref().unwrap_or(""));
        digest(&format!(
            "{}|{given}|{}|{}",
            folded(&self.family_name),
            self.birth_date,
            self.nationality
        ))
    }

    /// The same without the given names: two filings that share it but not
    /// the person key may be one person spelled two ways, or two people.
    /// An agent is asked; nothing is linked on it.
    pub fn near_key(&self) -> String {
        digest(&format!(
            "{}|{}|{}",
            folded(&self.family_name),
            self.birth_date,
            self.nationality
        ))
    }
}

/// Letters and digits only, accents folded, in capitals: "Ben-Ali" and
/// "BÉNALI" fold alike.
fn folded(name: &str) -> String {
    name.chars()
        .map(fold_accent)
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The letter without its accent, for the Latin letters names in French
/// records commonly carry.
fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'a',
        'ç' | 'Ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
        'ñ' | 'Ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
        'ý' | 'ÿ' | 'Ý' => 'y',
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: PostalAddress,
    pub answer_channel: AnswerChannel,
    pub language: Language,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostalAddress {
    pub line1: String,
    pub line2: Option<String>,
    pub postal_code: String,
    pub city: String,
    pub country: String,
    /// The département whose prefecture is in charge, read from the postal code.
    pub department: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentTitle {
    pub kind: TitleKind,
    pub number: String,
    pub expires_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRef {
    pub kind: DocumentKind,
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: u64,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Provenance {
    Web {
        account_id: Option<String>,
    },
    Ccc {
        agent_id: String,
        call_id: String,
        consent_recorded: bool,
    },
    Pan {
        site_id: String,
        desk_agent_id: String,
        appointment_id: Option<String>,
        identity_checked: bool,
    },
    Postal {
        station_id: String,
        envelope_id: String,
        postmark_date: Option<NaiveDate>,
        reception_date: NaiveDate,
    },
}

impl Provenance {
    pub fn channel(&self) -> Channel {
        match self {
            Provenance::Web { .. } => Channel::Web,
            Provenance::Ccc { .. } => Channel::Ccc,
            Provenance::Pan { .. } => Channel::Pan,
            Provenance::Postal { .. } => Channel::Postal,
        }
    }

    /// The date that counts in law: the postmark for mail (the reception date
    /// when there is none), otherwise the day the person filed, in the time
    /// of their `department` (Paris's but overseas).
    pub fn legal_filing_date(&self, filed_at: DateTime<Utc>, department: &str) -> NaiveDate {
        match self {
            Provenance::Postal {
                postmark_date,
                reception_date,
                ..
            } => postmark_date.unwrap_or(*reception_date),
            _ => crate::calendar::local_date(filed_at, department),
        }
    }

    /// The legal filing date, or why it cannot be taken: a date after
    /// `today` (the latest date in France, `calendar::latest_date_in_france`)
    /// is no one's filing date. It is a typing error or a
    /// forgery, and taken as it is it would sort the file wrongly and change
    /// what the rights rules say. The error names the field the date comes
    /// from.
    pub fn checked_legal_filing_date(
        &self,
        filed_at: DateTime<Utc>,
        department: &str,
        today: NaiveDate,
    ) -> Result<NaiveDate, crate::FieldViolation> {
        let date = self.legal_filing_date(filed_at, department);
        let field = match self {
            Provenance::Postal {
                postmark_date: Some(_),
                ..
            } => "provenance.postal.postmark_date",
            Provenance::Postal { .. } => "provenance.postal.reception_date",
            _ => "filed_at",
        };
        match future_date_problem(date, today) {
            None => Ok(date),
            Some(problem) => Err(crate::FieldViolation {
                field: field.into(),
                problem: format!("{date} {problem}"),
            }),
        }
    }
}

/// What is wrong with a date that must not be after `today`, if anything.
/// Every date a filing is counted from (a postmark, a reception date, the
/// moment of filing) obeys it.
pub fn future_date_problem(date: NaiveDate, today: NaiveDate) -> Option<&'static str> {
    (date > today).then_some("is in the future: no filing can be dated after today")
}

/// A filing with the reference the system gave it: what travels to instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dossier {
    pub reference: Reference,
    pub filing: Filing,
    pub legal_filing_date: NaiveDate,
    pub filed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl Dossier {
    /// `filed_at` is when the person filed; `received_at` when this system got it.
    pub fn new(
        reference: Reference,
        filing: Filing,
        filed_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Self {
        let legal_filing_date = filing
            .provenance
            .legal_filing_date(filed_at, &filing.contact.address.department);
        Self {
            reference,
            filing,
            legal_filing_date,
            filed_at,
            received_at,
        }
    }

    pub fn channel(&self) -> Channel {
        self.filing.provenance.channel()
    }

    pub fn prefecture(&self) -> &str {
        &self.filing.contact.address.department
    }
}

// ---- titles known to the system ------------------------------------------------

/// A title held by someone, as imported from the legacy system (one CSV row
/// or JSON object), flat so a spreadsheet can carry it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTitleRecord {
    pub kind: Option<String>,
    pub number: Option<String>,
    pub expires_on: Option<String>,
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub nationality: Option<String>,
    pub foreigner_number: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address_line1: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub answer_channel: Option<String>,
}

/// A title whose holder is warned before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TitleRecord {
    pub title: CurrentTitle,
    pub holder: Applicant,
    pub contact: Contact,
}

impl TitleRecord {
    /// The same checks as a filing's title, applicant and contact.
    pub fn parse(raw: &RawTitleRecord, today: NaiveDate) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let title = parse_title(
            &mut v,
            Some(&RawCurrentTitle {
                kind: raw.kind.clone(),
                number: raw.number.clone(),
                expires_on: raw.expires_on.clone(),
            }),
            None,
        );
        let holder = parse_applicant(
            &mut v,
            Some(&RawApplicant {
                family_name: raw.family_name.clone(),
                given_names: raw.given_names.clone(),
                birth_date: raw.birth_date.clone(),
                birth_place: None,
                nationality: raw.nationality.clone(),
                foreigner_number: raw.foreigner_number.clone(),
            }),
            today,
        );
        let contact = parse_contact(
            &mut v,
            Some(&RawContact {
                email: raw.email.clone(),
                phone: raw.phone.clone(),
                address: Some(RawAddress {
                    line1: raw.address_line1.clone(),
                    line2: None,
                    postal_code: raw.postal_code.clone(),
                    city: raw.city.clone(),
                    country: None,
                }),
                answer_channel: raw.answer_channel.clone(),
                language: None,
            }),
        );
        // Field names as in the flat record.
        let v: Violations = v
            .into_vec()
            .into_iter()
            .map(|f| crate::FieldViolation {
                field: f
                    .field
                    .trim_start_matches("current_title.")
                    .trim_start_matches("applicant.")
                    .trim_start_matches("contact.address.")
                    .trim_start_matches("contact.")
                    .replace("line1", "address_line1"),
                problem: f.problem,
            })
            .collect::<Vec<_>>()
            .into();
        match (title, holder, contact) {
            (Some(title), Some(holder), Some(contact)) if v.is_empty() => Ok(TitleRecord {
                title,
                holder,
                contact,
            }),
            _ => Err(v),
        }
    }
}

// ---- parsing -----------------------------------------------------------------

/// Trims and drops empty strings: an empty field is a missing field.
fn clean(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn required(v: &mut Violations, field: &str, s: &Option<String>) -> Option<String> {
    let value = clean(s);
    if value.is_none() {
        v.add(field, "is required");
    }
    value
}

fn text(v: &mut Violations, field: &str, value: Option<String>, max: usize) -> Option<String> {
    let value = value?;
    if value.chars().count() > max {
        v.add(field, format!("is longer than {max} characters"));
        return None;
    }
    // Names, addresses and file names are printed: the strictest rule.
    crate::text::check_as(v, field, &value, crate::text::Kind::Name).then_some(value)
}

fn code<T>(
    v: &mut Violations,
    field: &str,
    s: &Option<String>,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
) -> Option<T> {
    let value = required(v, field, s)?;
    let parsed = parse(&value.to_ascii_lowercase());
    if parsed.is_none() {
        v.add(
            field,
            format!("unknown value {value:?}; expected one of: {}", expected()),
        );
    }
    parsed
}

fn date(v: &mut Violations, field: &str, s: &Option<String>) -> Option<NaiveDate> {
    let value = clean(s)?;
    let parsed = parse_iso_date(&value);
    if parsed.is_none() {
        v.add(
            field,
            format!("{value:?} is not a valid date in the form YYYY-MM-DD"),
        );
    }
    parsed
}

/// Overseas departments' numbers are written as French national ones
/// (`0692 12 34 56`) but are reached under their own country code
/// (`+262692123456`): (first digits, country code), landlines and mobiles.
const OVERSEAS_PREFIXES: &[(&str, &str)] = &[
    ("0590", "590"), // Guadeloupe
    ("0690", "590"),
    ("0691", "590"),
    ("0594", "594"), // Guyane
    ("0694", "594"),
    ("0596", "596"), // Martinique
    ("0696", "596"),
    ("0697", "596"),
    ("0262", "262"), // La Réunion
    ("0263", "262"),
    ("0692", "262"),
    ("0693", "262"),
    ("0269", "262"), // Mayotte
    ("0639", "262"),
];

/// A phone number in E.164 (`+33612345678`), from the ways people write
/// one (`06 12 34 56 78`, `0033 6…`); `None` when it is not one.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let international = if let Some(rest) = compact.strip_prefix("00") {
        format!("+{rest}")
    } else if compact.len() == 10 && compact.starts_with('0') {
        // A French national number: the overseas departments' have their
        // own country codes, by the number's first digits.
        let country = OVERSEAS_PREFIXES
            .iter()
            .find(|(prefix, _)| compact.starts_with(prefix))
            .map_or("33", |(_, country)| country);
        format!("+{country}{}", &compact[1..])
    } else {
        compact
    };
    let digits = international.strip_prefix('+')?;
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then_some(international)
}

/// `raw` (trimmed, not empty) as a phone number in E.164, or a violation
/// of `field` naming the forms taken. Shared by filings and bookings.
pub fn phone_field(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    let normalized = normalize_phone(raw);
    if normalized.is_none() {
        v.add(
            field,
            "is not a phone number (+33612345678 or 06 12 34 56 78)",
        );
    }
    normalized
}

/// `raw` (trimmed, not empty) if it has the shape of an e-mail address,
/// else a violation of `field`.
pub fn email_field(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    if looks_like_email(raw) {
        Some(raw.to_string())
    } else {
        v.add(field, "is not an e-mail address");
        None
    }
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        && !domain.contains('@')
        && s.len() <= 254
}

fn is_idempotency_key(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl RawProvenance {
    fn parse(&self, v: &mut Violations, today: NaiveDate) -> Option<Provenance> {
        let before = v.len();
        let provenance = match self {
            RawProvenance::Web { account_id } => Provenance::Web {
                account_id: text(v, "provenance.web.account_id", clean(account_id), 128),
            },
            RawProvenance::Ccc {
                agent_id,
                call_id,
                consent_recorded,
            } => {
                let agent_id = required(v, "provenance.ccc.agent_id", agent_id);
                let call_id = required(v, "provenance.ccc.call_id", call_id);
                if !consent_recorded {
                    v.add(
                        "provenance.ccc.consent_recorded",
                        "the caller's consent must be recorded before filing on their behalf",
                    );
                }
                Provenance::Ccc {
                    agent_id: agent_id.unwrap_or_default(),
                    call_id: call_id.unwrap_or_default(),
                    consent_recorded: *consent_recorded,
                }
            }
            RawProvenance::Pan {
                site_id,
                desk_agent_id,
                appointment_id,
                identity_checked,
            } => {
                let site_id = required(v, "provenance.pan.site_id", site_id);
                let desk_agent_id = required(v, "provenance.pan.desk_agent_id", desk_agent_id);
                if !identity_checked {
                    v.add(
                        "provenance.pan.identity_checked",
                        "identity must be checked in person before an assisted filing",
                    );
                }
                Provenance::Pan {
                    site_id: site_id.unwrap_or_default(),
                    desk_agent_id: desk_agent_id.unwrap_or_default(),
                    appointment_id: clean(appointment_id),
                    identity_checked: *identity_checked,
                }
            }
            RawProvenance::Postal {
                station_id,
                envelope_id,
                postmark_date,
                reception_date,
            } => {
                let station_id = required(v, "provenance.postal.station_id", station_id);
                let envelope_id = required(v, "provenance.postal.envelope_id", envelope_id);
                let postmark = date(v, "provenance.postal.postmark_date", postmark_date);
                let reception = required(v, "provenance.postal.reception_date", reception_date)
                    .and_then(|_| date(v, "provenance.postal.reception_date", reception_date));
                for (field, d) in [
                    ("provenance.postal.postmark_date", postmark),
                    ("provenance.postal.reception_date", reception),
                ] {
                    if let Some(problem) = d.and_then(|d| future_date_problem(d, today)) {
                        v.add(field, problem);
                    }
                }
                if let (Some(p), Some(r)) = (postmark, reception)
                    && p > r
                {
                    v.add(
                        "provenance.postal.postmark_date",
                        "is after the reception date",
                    );
                }
                Provenance::Postal {
                    station_id: station_id.unwrap_or_default(),
                    envelope_id: envelope_id.unwrap_or_default(),
                    postmark_date: postmark,
                    reception_date: reception.unwrap_or_default(),
                }
            }
        };
        (v.len() == before).then_some(provenance)
    }
}

impl Filing {
    /// Checks and normalizes a filing. `today` is the date in Paris, for dates
    /// that cannot be in the future. Every problem is reported, not just the first.
    pub fn parse(
        raw: &RawFiling,
        provenance: &RawProvenance,
        today: NaiveDate,
    ) -> Result<Filing, Violations> {
        let mut v = Violations::new();
        let procedure = code(
            &mut v,
            "procedure",
            &raw.procedure,
            Procedure::parse,
            Procedure::expected,
        );
        let motif = code(&mut v, "motif", &raw.motif, Motif::parse, Motif::expected);
        let applicant = parse_applicant(&mut v, raw.applicant.as_ref(), today);
        let contact = parse_contact(&mut v, raw.contact.as_ref());
        let current_title = parse_title(&mut v, raw.current_title.as_ref(), procedure);
        let documents = parse_documents(&mut v, &raw.documents);
        let provenance = provenance.parse(&mut v, today);
        let idempotency_key = required(&mut v, "idempotency_key", &raw.idempotency_key);
        if let Some(key) = &idempotency_key
            && !is_idempotency_key(key)
        {
            v.add(
                "idempotency_key",
                "must be 1 to 128 characters among letters, digits and - _ . :",
            );
        }
        match (
            procedure,
            motif,
            applicant,
            contact,
            provenance,
            idempotency_key,
        ) {
            (
                Some(procedure),
                Some(motif),
                Some(applicant),
                Some(contact),
                Some(provenance),
                Some(key),
            ) if v.is_empty() => Ok(Filing {
                procedure,
                motif,
                applicant,
                contact,
                current_title,
                documents,
                provenance,
                idempotency_key: key,
            }),
            _ => Err(v),
        }
    }

    /// A digest of everything the person filed except the idempotency key: two
    /// filings under one key are the same filing exactly when these are equal.
    pub fn fingerprint(&self) -> String {
        let mut copy = self.clone();
        copy.idempotency_key.clear();
        // Serializing plain structs and enums cannot fail.
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

fn parse_applicant(
    v: &mut Violations,
    raw: Option<&RawApplicant>,
    today: NaiveDate,
) -> Option<Applicant> {
    let Some(raw) = raw else {
        v.add("applicant", "is required");
        return None;
    };
    let family_name = required(v, "applicant.family_name", &raw.family_name);
    let family_name = text(v, "applicant.family_name", family_name, MAX_NAME_CHARS);
    let given_names = text(
        v,
        "applicant.given_names",
        clean(&raw.given_names),
        MAX_NAME_CHARS,
    );
    let birth_place = text(
        v,
        "applicant.birth_place",
        clean(&raw.birth_place),
        MAX_NAME_CHARS,
    );
    let birth_date = required(v, "applicant.birth_date", &raw.birth_date)
        .and_then(|_| date(v, "applicant.birth_date", &raw.birth_date));
    if let Some(b) = birth_date {
        if b > today {
            v.add("applicant.birth_date", "is in the future");
        } else if today.year() - b.year() > MAX_AGE_YEARS {
            v.add("applicant.birth_date", "is more than 130 years ago");
        }
    }
    let nationality =
        required(v, "applicant.nationality", &raw.nationality).map(|n| n.to_ascii_uppercase());
    if let Some(n) = &nationality
        && (n.len() != 3 || !n.bytes().all(|b| b.is_ascii_uppercase()))
    {
        v.add(
            "applicant.nationality",
            "must be a three-letter ISO 3166-1 alpha-3 country code",
        );
    }
    let foreigner_number = clean(&raw.foreigner_number).map(|n| n.replace(' ', ""));
    if let Some(n) = &foreigner_number
        && (n.len() != 10 || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        v.add(
            "applicant.foreigner_number",
            "must be the ten digits of the foreigner number",
        );
    }
    Some(Applicant {
        family_name: family_name?,
        given_names,
        birth_date: birth_date?,
        birth_place,
        nationality: nationality?,
        foreigner_number,
    })
}

fn parse_contact(v: &mut Violations, raw: Option<&RawContact>) -> Option<Contact> {
    let Some(raw) = raw else {
        v.add("contact", "is required");
        return None;
    };
    let email = clean(&raw.email).map(|e| e.to_ascii_lowercase());
    if let Some(e) = &email {
        email_field(v, "contact.email", e);
    }
    let phone = clean(&raw.phone).and_then(|p| phone_field(v, "contact.phone", &p));
    let address = parse_address(v, raw.address.as_ref());
    let answer_channel = match clean(&raw.answer_channel) {
        Some(_) => code(
            v,
            "contact.answer_channel",
            &raw.answer_channel,
            AnswerChannel::parse,
            AnswerChannel::expected,
        ),
        // By default: e-mail if given, then SMS, then post, which always works.
        None => Some(if email.is_some() {
            AnswerChannel::Email
        } else if phone.is_some() {
            AnswerChannel::Sms
        } else {
            AnswerChannel::Post
        }),
    };
    match answer_channel {
        Some(AnswerChannel::Email) if email.is_none() => {
            v.add("contact.email", "is required to get answers by e-mail")
        }
        Some(AnswerChannel::Sms) if phone.is_none() => {
            v.add("contact.phone", "is required to get answers by SMS")
        }
        _ => {}
    }
    let language = match clean(&raw.language) {
        Some(_) => code(
            v,
            "contact.language",
            &raw.language,
            Language::parse,
            Language::expected,
        ),
        None => Some(Language::Fr),
    };
    Some(Contact {
        email,
        phone,
        address: address?,
        answer_channel: answer_channel?,
        language: language?,
    })
}

fn parse_address(v: &mut Violations, raw: Option<&RawAddress>) -> Option<PostalAddress> {
    let Some(raw) = raw else {
        v.add(
            "contact.address",
            "is required: it decides the prefecture in charge and where paper answers go",
        );
        return None;
    };
    let line1 = required(v, "contact.address.line1", &raw.line1);
    let line1 = text(v, "contact.address.line1", line1, 200);
    let line2 = text(v, "contact.address.line2", clean(&raw.line2), 200);
    let city = required(v, "contact.address.city", &raw.city);
    let city = text(v, "contact.address.city", city, MAX_NAME_CHARS);
    let country = clean(&raw.country)
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or_else(|| "FR".to_string());
    if country != "FR" {
        v.add(
            "contact.address.country",
            "must be FR: the prefecture in charge is the one of the residence in France",
        );
    }
    let postal_code = required(v, "contact.address.postal_code", &raw.postal_code);
    let department = postal_code.as_deref().and_then(|pc| {
        let d = department_of_postal_code(pc);
        if d.is_none() {
            v.add("contact.address.postal_code", "is not a French postal code");
        }
        d
    });
    Some(PostalAddress {
        line1: line1?,
        line2,
        postal_code: postal_code?,
        city: city?,
        country,
        department: department?,
    })
}

/// Procedures that continue an existing title, so the title must be named.
fn title_required(procedure: Procedure) -> bool {
    matches!(
        procedure,
        Procedure::Renewal | Procedure::ChangeOfStatus | Procedure::Duplicate
    )
}

fn parse_title(
    v: &mut Violations,
    raw: Option<&RawCurrentTitle>,
    procedure: Option<Procedure>,
) -> Option<CurrentTitle> {
    let Some(raw) = raw else {
        if let Some(p) = procedure
            && title_required(p)
        {
            v.add("current_title", format!("is required for a {p}"));
        }
        return None;
    };
    let kind = code(
        v,
        "current_title.kind",
        &raw.kind,
        TitleKind::parse,
        TitleKind::expected,
    );
    let number = required(v, "current_title.number", &raw.number).map(|n| n.replace(' ', ""));
    if let Some(n) = &number
        && (n.len() > 20 || !n.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        v.add(
            "current_title.number",
            "must be up to 20 letters and digits",
        );
    }
    let expires_on = required(v, "current_title.expires_on", &raw.expires_on)
        .and_then(|_| date(v, "current_title.expires_on", &raw.expires_on));
    Some(CurrentTitle {
        kind: kind?,
        number: number?,
        expires_on: expires_on?,
    })
}

fn parse_documents(v: &mut Violations, raw: &[RawDocument]) -> Vec<DocumentRef> {
    if raw.len() > MAX_DOCUMENTS {
        v.add(
            "documents",
            format!("at most {MAX_DOCUMENTS} documents per filing"),
        );
        return Vec::new();
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, d)| document(v, &format!("documents[{i}]"), d))
        .collect()
}

/// Checks one document sent after filing; fields are named `document.*`.
pub fn parse_document(raw: &RawDocument) -> Result<DocumentRef, Violations> {
    let mut v = Violations::new();
    let parsed = document(&mut v, "document", raw);
    match parsed {
        Some(d) if v.is_empty() => Ok(d),
        _ => Err(v),
    }
}

fn document(v: &mut Violations, at: &str, d: &RawDocument) -> Option<DocumentRef> {
    let f = |name: &str| format!("{at}.{name}");
    let kind = code(
        v,
        &f("kind"),
        &d.kind,
        DocumentKind::parse,
        DocumentKind::expected,
    );
    let sha256 = required(v, &f("sha256"), &d.sha256).map(|s| s.to_ascii_lowercase());
    if let Some(s) = &sha256
        && !is_sha256(s)
    {
        v.add(f("sha256"), "must be 64 hexadecimal characters");
    }
    let media_type = required(v, &f("media_type"), &d.media_type).map(|m| m.to_ascii_lowercase());
    if let Some(m) = &media_type
        && !ACCEPTED_MEDIA_TYPES.contains(&m.as_str())
    {
        v.add(
            f("media_type"),
            format!(
                "{m:?} is not accepted; expected one of: {}",
                ACCEPTED_MEDIA_TYPES.join(", ")
            ),
        );
    }
    match d.size_bytes {
        None => v.add(f("size_bytes"), "is required"),
        Some(0) => v.add(f("size_bytes"), "must be more than 0"),
        Some(n) if n > MAX_DOCUMENT_BYTES => {
            v.add(f("size_bytes"), "is over the 20 MiB limit per document")
        }
        Some(_) => {}
    }
    let filename = text(v, &f("filename"), clean(&d.filename), 255);
    Some(DocumentRef {
        kind: kind?,
        sha256: sha256?,
        media_type: media_type?,
        size_bytes: d.size_bytes?,
        filename,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_reads_its_own_dossier_version_and_one_step_either_side() {
        let v = SCHEMA_VERSION;
        let table = [
            (0, false), // says no version: never written by any build
            (v.saturating_sub(1), v > 1),
            (v, true),
            (v + 1, true),
            (v + 2, false),
            (99, false),
        ];
        for (version, read) in table {
            assert_eq!(reads_schema_version(version), read, "version {version}");
        }
    }
    use chrono::TimeZone;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn web() -> RawProvenance {
        RawProvenance::Web { account_id: None }
    }

    #[test]
    fn phone_numbers_table() {
        let table = [
            ("06 12 34 56 78", Some("+33612345678"), "a mainland mobile"),
            (
                "01.23.45.67.89",
                Some("+33123456789"),
                "a Paris landline, dotted",
            ),
            ("0033 6 12 34 56 78", Some("+33612345678"), "00 for +"),
            ("+44 20 7946 0958", Some("+442079460958"), "abroad"),
            ("0692 12 34 56", Some("+262692123456"), "a Réunion mobile"),
            ("0262 12 34 56", Some("+262262123456"), "a Réunion landline"),
            ("0639 12 34 56", Some("+262639123456"), "a Mayotte mobile"),
            (
                "0690 12 34 56",
                Some("+590690123456"),
                "a Guadeloupe mobile",
            ),
            ("0594 12 34 56", Some("+594594123456"), "a Guyane landline"),
            (
                "0696 12 34 56",
                Some("+596696123456"),
                "a Martinique mobile",
            ),
            ("0612", None, "too short"),
            ("06 12 34 56 7x", None, "not digits"),
        ];
        for (raw, expected, why) in table {
            assert_eq!(normalize_phone(raw).as_deref(), expected, "{why}");
        }
    }

    fn valid() -> RawFiling {
        serde_json::from_value(serde_json::json!({
            "procedure": "renewal",
            "motif": "employee",
            "applicant": {
                "family_name": "Benali",
                "given_names": "Samira",
                "birth_date": "1991-03-02",
                "nationality": "dza",
                "foreigner_number": "75 0312 3456"
            },
            "contact": {
                "email": "Samira.Benali@example.org",
                "phone": "06 12 34 56 78",
                "address": {"line1": "12 rue de Paris", "postal_code": "59000", "city": "Lille"}
            },
            "current_title": {"kind": "temporary_card", "number": "AB1234567", "expires_on": "2027-01-10"},
            "documents": [{"kind": "passport", "sha256": "AB".repeat(32), "media_type": "application/pdf", "size_bytes": 120000}],
            "idempotency_key": "k-1"
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_filing_is_normalized() {
        let f = Filing::parse(&valid(), &web(), today()).unwrap();
        assert_eq!(f.procedure, Procedure::Renewal);
        assert_eq!(f.applicant.nationality, "DZA");
        assert_eq!(f.applicant.foreigner_number.as_deref(), Some("7503123456"));
        assert_eq!(
            f.contact.email.as_deref(),
            Some("samira.benali@example.org")
        );
        assert_eq!(f.contact.phone.as_deref(), Some("+33612345678"));
        assert_eq!(f.contact.answer_channel, AnswerChannel::Email);
        assert_eq!(f.contact.address.department, "59");
        assert_eq!(f.contact.address.country, "FR");
        assert_eq!(f.documents[0].sha256, "ab".repeat(32));
        assert_eq!(f.provenance.channel(), Channel::Web);
    }

    /// (what to break, the field that must be named)
    #[test]
    fn each_broken_field_is_named() {
        type Breaker = fn(&mut RawFiling);
        let table: Vec<(Breaker, &str)> = vec![
            (|r| r.procedure = None, "procedure"),
            (|r| r.procedure = Some("asylum".into()), "procedure"),
            (|r| r.motif = Some("".into()), "motif"),
            (|r| r.applicant = None, "applicant"),
            (
                |r| r.applicant.as_mut().unwrap().family_name = None,
                "applicant.family_name",
            ),
            (
                |r| r.applicant.as_mut().unwrap().family_name = Some("x".repeat(101)),
                "applicant.family_name",
            ),
            (
                |r| r.applicant.as_mut().unwrap().birth_date = Some("2030-01-01".into()),
                "applicant.birth_date",
            ),
            (
                |r| r.applicant.as_mut().unwrap().birth_date = Some("02/03/1991".into()),
                "applicant.birth_date",
            ),
            (
                |r| r.applicant.as_mut().unwrap().birth_date = Some("1890-01-01".into()),
                "applicant.birth_date",
            ),
            (
                |r| r.applicant.as_mut().unwrap().nationality = Some("DZ".into()),
                "applicant.nationality",
            ),
            (
                |r| r.applicant.as_mut().unwrap().foreigner_number = Some("12345".into()),
                "applicant.foreigner_number",
            ),
            (|r| r.contact = None, "contact"),
            (
                |r| r.contact.as_mut().unwrap().email = Some("not-an-email".into()),
                "contact.email",
            ),
            (
                |r| r.contact.as_mut().unwrap().phone = Some("12".into()),
                "contact.phone",
            ),
            (
                |r| r.contact.as_mut().unwrap().address = None,
                "contact.address",
            ),
            (
                |r| {
                    r.contact
                        .as_mut()
                        .unwrap()
                        .address
                        .as_mut()
                        .unwrap()
                        .postal_code = Some("98000".into())
                },
                "contact.address.postal_code",
            ),
            (
                |r| {
                    r.contact
                        .as_mut()
                        .unwrap()
                        .address
                        .as_mut()
                        .unwrap()
                        .country = Some("BE".into())
                },
                "contact.address.country",
            ),
            (
                |r| r.contact.as_mut().unwrap().address.as_mut().unwrap().city = None,
                "contact.address.city",
            ),
            (
                |r| r.contact.as_mut().unwrap().answer_channel = Some("pigeon".into()),
                "contact.answer_channel",
            ),
            (
                |r| {
                    let c = r.contact.as_mut().unwrap();
                    c.email = None;
                    c.answer_channel = Some("email".into());
                },
                "contact.email",
            ),
            (|r| r.current_title = None, "current_title"),
            (
                |r| r.current_title.as_mut().unwrap().kind = Some("passport".into()),
                "current_title.kind",
            ),
            (
                |r| r.current_title.as_mut().unwrap().expires_on = Some("2027-02-30".into()),
                "current_title.expires_on",
            ),
            (
                |r| r.current_title.as_mut().unwrap().number = Some("AB-12".into()),
                "current_title.number",
            ),
            (
                |r| r.documents[0].sha256 = Some("abc".into()),
                "documents[0].sha256",
            ),
            (
                |r| r.documents[0].media_type = Some("text/html".into()),
                "documents[0].media_type",
            ),
            (
                |r| r.documents[0].size_bytes = Some(0),
                "documents[0].size_bytes",
            ),
            (
                |r| r.documents[0].size_bytes = Some(MAX_DOCUMENT_BYTES + 1),
                "documents[0].size_bytes",
            ),
            (|r| r.documents[0].kind = None, "documents[0].kind"),
            (|r| r.idempotency_key = None, "idempotency_key"),
            (
                |r| r.idempotency_key = Some("has space".into()),
                "idempotency_key",
            ),
        ];
        for (i, (breaker, field)) in table.into_iter().enumerate() {
            let mut raw = valid();
            breaker(&mut raw);
            let err = Filing::parse(&raw, &web(), today()).expect_err(&format!("row {i} accepted"));
            assert!(
                err.iter().any(|v| v.field == field),
                "row {i}: expected {field}, got {err}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Filing::parse(&RawFiling::default(), &web(), today()).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
        for f in [
            "procedure",
            "motif",
            "applicant",
            "contact",
            "idempotency_key",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn a_first_application_needs_no_title() {
        let mut raw = valid();
        raw.procedure = Some("first_application".into());
        raw.current_title = None;
        assert!(Filing::parse(&raw, &web(), today()).is_ok());
    }

    #[test]
    fn provenance_rules() {
        let table = [
            (
                RawProvenance::Ccc {
                    agent_id: Some("a1".into()),
                    call_id: Some("c1".into()),
                    consent_recorded: false,
                },
                Some("provenance.ccc.consent_recorded"),
            ),
            (
                RawProvenance::Ccc {
                    agent_id: Some("a1".into()),
                    call_id: None,
                    consent_recorded: true,
                },
                Some("provenance.ccc.call_id"),
            ),
            (
                RawProvenance::Ccc {
                    agent_id: Some("a1".into()),
                    call_id: Some("c1".into()),
                    consent_recorded: true,
                },
                None,
            ),
            (
                RawProvenance::Pan {
                    site_id: Some("59-lille".into()),
                    desk_agent_id: Some("d1".into()),
                    appointment_id: None,
                    identity_checked: false,
                },
                Some("provenance.pan.identity_checked"),
            ),
            (
                RawProvenance::Postal {
                    station_id: Some("s1".into()),
                    envelope_id: Some("e1".into()),
                    postmark_date: Some("2026-11-20".into()),
                    reception_date: Some("2026-11-19".into()),
                },
                Some("provenance.postal.postmark_date"),
            ),
            (
                RawProvenance::Postal {
                    station_id: Some("s1".into()),
                    envelope_id: Some("e1".into()),
                    postmark_date: None,
                    reception_date: None,
                },
                Some("provenance.postal.reception_date"),
            ),
            (
                RawProvenance::Postal {
                    station_id: Some("s1".into()),
                    envelope_id: Some("e1".into()),
                    postmark_date: Some("2026-11-18".into()),
                    reception_date: Some("2026-11-20".into()),
                },
                None,
            ),
            (
                RawProvenance::Postal {
                    station_id: Some("s1".into()),
                    envelope_id: Some("e1".into()),
                    postmark_date: None,
                    reception_date: Some("2026-11-25".into()),
                },
                Some("provenance.postal.reception_date"),
            ),
            (
                RawProvenance::Postal {
                    station_id: Some("s1".into()),
                    envelope_id: Some("e1".into()),
                    postmark_date: Some("2027-01-02".into()),
                    reception_date: Some("2026-11-24".into()),
                },
                Some("provenance.postal.postmark_date"),
            ),
        ];
        for (i, (provenance, expected)) in table.into_iter().enumerate() {
            let result = Filing::parse(&valid(), &provenance, today());
            match expected {
                None => assert!(result.is_ok(), "row {i}: {:?}", result.err()),
                Some(field) => {
                    let err = result.expect_err(&format!("row {i} accepted"));
                    assert!(err.iter().any(|v| v.field == field), "row {i}: {err}");
                }
            }
        }
    }

    #[test]
    fn legal_filing_date_table() {
        let filed_at = Utc.with_ymd_and_hms(2026, 11, 23, 23, 30, 0).unwrap(); // 00:30 on the 24th in Paris
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let table = [
            (Provenance::Web { account_id: None }, d(11, 24)),
            (
                Provenance::Postal {
                    station_id: "s".into(),
                    envelope_id: "e".into(),
                    postmark_date: Some(d(11, 2)),
                    reception_date: d(11, 5),
                },
                d(11, 2),
            ),
            (
                Provenance::Postal {
                    station_id: "s".into(),
                    envelope_id: "e".into(),
                    postmark_date: None,
                    reception_date: d(11, 5),
                },
                d(11, 5),
            ),
        ];
        for (provenance, expected) in table {
            assert_eq!(
                provenance.legal_filing_date(filed_at, "59"),
                expected,
                "{provenance:?}"
            );
        }
        // Overseas, the day is the department's own: 23:30 UTC on the 23rd
        // is 19:30 that day in Guadeloupe and Martinique, 20:30 in Cayenne,
        // 03:30 on the 24th in La Réunion, 02:30 in Mayotte.
        let web = Provenance::Web { account_id: None };
        for (department, expected) in [
            ("971", d(11, 23)),
            ("972", d(11, 23)),
            ("973", d(11, 23)),
            ("974", d(11, 24)),
            ("976", d(11, 24)),
            ("2A", d(11, 24)),
            ("75", d(11, 24)),
        ] {
            assert_eq!(
                web.legal_filing_date(filed_at, department),
                expected,
                "{department}"
            );
        }
        // The post's dates are the envelope's, wherever it was posted.
        let posted = Provenance::Postal {
            station_id: "s".into(),
            envelope_id: "e".into(),
            postmark_date: Some(d(11, 2)),
            reception_date: d(11, 5),
        };
        assert_eq!(posted.legal_filing_date(filed_at, "973"), d(11, 2));
    }

    #[test]
    fn the_latest_date_in_france_is_la_reunions() {
        // (instant, its latest date in France)
        let table = [
            (
                Utc.with_ymd_and_hms(2026, 11, 23, 19, 59, 0).unwrap(),
                (11, 23),
            ),
            (
                Utc.with_ymd_and_hms(2026, 11, 23, 20, 0, 0).unwrap(),
                (11, 24),
            ),
            (
                Utc.with_ymd_and_hms(2026, 7, 14, 20, 30, 0).unwrap(),
                (7, 15),
            ),
            (
                Utc.with_ymd_and_hms(2026, 7, 14, 21, 59, 0).unwrap(),
                (7, 15),
            ),
            (
                Utc.with_ymd_and_hms(2026, 7, 14, 12, 0, 0).unwrap(),
                (7, 14),
            ),
        ];
        for (at, (m, day)) in table {
            assert_eq!(
                crate::calendar::latest_date_in_france(at),
                NaiveDate::from_ymd_opt(2026, m, day).unwrap(),
                "{at}"
            );
        }
    }

    #[test]
    fn no_legal_filing_date_after_today() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let today = d(11, 24);
        // 23:30 UTC on the 24th is already the 25th in Paris.
        let late_evening = Utc.with_ymd_and_hms(2026, 11, 24, 23, 30, 0).unwrap();
        let morning = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let postal = |postmark: Option<NaiveDate>, reception| Provenance::Postal {
            station_id: "s".into(),
            envelope_id: "e".into(),
            postmark_date: postmark,
            reception_date: reception,
        };
        let web = Provenance::Web { account_id: None };
        let table = [
            (web.clone(), morning, Ok(d(11, 24))),
            (web, late_evening, Err("filed_at")),
            (
                Provenance::Ccc {
                    agent_id: "a".into(),
                    call_id: "c".into(),
                    consent_recorded: true,
                },
                late_evening,
                Err("filed_at"),
            ),
            (postal(Some(d(11, 2)), d(11, 24)), morning, Ok(d(11, 2))),
            (postal(None, d(11, 24)), morning, Ok(d(11, 24))),
            (
                postal(Some(d(11, 25)), d(11, 25)),
                morning,
                Err("provenance.postal.postmark_date"),
            ),
            (
                postal(None, d(11, 25)),
                morning,
                Err("provenance.postal.reception_date"),
            ),
        ];
        for (i, (provenance, filed_at, expected)) in table.into_iter().enumerate() {
            let got = provenance
                .checked_legal_filing_date(filed_at, "59", today)
                .map_err(|v| v.field);
            assert_eq!(got, expected.map_err(String::from), "row {i}");
        }
        // Filed in Cayenne at 20:30 on the 24th: the 24th there, not the 25th.
        assert_eq!(
            Provenance::Web { account_id: None }.checked_legal_filing_date(
                late_evening,
                "973",
                today
            ),
            Ok(d(11, 24))
        );
        assert_eq!(future_date_problem(d(11, 24), today), None);
        assert!(future_date_problem(d(11, 25), today).is_some());
    }

    #[test]
    fn fingerprint_ignores_the_key_but_not_the_content() {
        let a = Filing::parse(&valid(), &web(), today()).unwrap();
        let mut raw = valid();
        raw.idempotency_key = Some("another".into());
        let b = Filing::parse(&raw, &web(), today()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        raw.motif = Some("student".into());
        let c = Filing::parse(&raw, &web(), today()).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn the_same_person_is_recognised_across_spellings() {
        let base = Filing::parse(&valid(), &web(), today()).unwrap().applicant;
        let key = base.person_key();
        let same = |name: &str| Applicant {
            family_name: name.into(),
            ..base.clone()
        };
        for spelling in ["BENALI", "benali", "Bénali", "Ben-Ali", "Ben Ali"] {
            assert_eq!(same(spelling).person_key(), key, "{spelling}");
        }
        assert_ne!(same("Benalla").person_key(), key);
        let other_birth = Applicant {
            birth_date: NaiveDate::from_ymd_opt(1991, 3, 3).unwrap(),
            ..base.clone()
        };
        assert_ne!(other_birth.person_key(), key);
        assert_eq!(key.len(), 64);
        assert!(!key.to_lowercase().contains("benali"));
    }

    /// Twins share a family name, a birth date and a nationality: only the
    /// given names tell them apart, so they are a near match, never the same.
    #[test]
    fn given_names_separate_twins() {
        let base = Filing::parse(&valid(), &web(), today()).unwrap().applicant;
        let given = |g: Option<&str>| Applicant {
            given_names: g.map(str::to_string),
            ..base.clone()
        };
        let table = [
            (Some("Amina"), Some("AMINA"), true),
            (Some("Jean-Pierre"), Some("Jean Pierre"), true),
            (Some("Hélène"), Some("Helene"), true),
            (Some("Amina"), Some("Yasmina"), false),
            (Some("Amina"), None, false),
        ];
        for (a, b, same) in table {
            let (a, b) = (given(a), given(b));
            assert_eq!(a.person_key() == b.person_key(), same, "{a:?} / {b:?}");
            assert_eq!(a.near_key(), b.near_key(), "near keys ignore given names");
        }
    }

    #[test]
    fn title_records_are_checked_like_filings() {
        let raw = RawTitleRecord {
            kind: Some("multi_year_card".into()),
            number: Some("FR59X123".into()),
            expires_on: Some("2027-03-31".into()),
            family_name: Some("Haidari".into()),
            birth_date: Some("1999-07-01".into()),
            nationality: Some("afg".into()),
            phone: Some("07 00 00 00 01".into()),
            address_line1: Some("3 place du Marché".into()),
            postal_code: Some("59000".into()),
            city: Some("Lille".into()),
            ..Default::default()
        };
        let t = TitleRecord::parse(&raw, today()).unwrap();
        assert_eq!(t.title.kind, TitleKind::MultiYearCard);
        assert_eq!(t.holder.nationality, "AFG");
        assert_eq!(t.contact.answer_channel, AnswerChannel::Sms);
        let broken = RawTitleRecord {
            expires_on: Some("31/03/2027".into()),
            postal_code: None,
            ..raw
        };
        let err = TitleRecord::parse(&broken, today()).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
        assert!(
            fields.contains(&"expires_on") && fields.contains(&"postal_code"),
            "{fields:?}"
        );
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let r: Result<RawFiling, _> =
            serde_json::from_value(serde_json::json!({"procedur": "renewal"}));
        assert!(r.is_err());
    }
}
