//! The paper route's rules: what a form's QR code carries and how a forged
//! one is told from a genuine one, how a scanned stack splits into envelopes
//! at separator sheets, which fields a form has (its printed labels are what
//! OCR looks for), how an envelope moves from reading to a dossier or to a
//! recorded reason, and how confirmed fields become a filing.
//!
//! Pure: the signing key, the pages' codes and the OCR'd lines are arguments.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::RawFiling;
use crate::codes::{codes, from_stored};
use crate::filing::{RawAddress, RawApplicant, RawContact, RawCurrentTitle, RawDocument};

/// Every code Guichet prints starts with this, so a stray code on an
/// enclosure (a bank's, a shop's) is not mistaken for a form.
pub const CODE_PREFIX: &str = "GCH1";
/// The version of the form's layout and of its code; raised when either
/// changes, so an old form is still read by the rules it was printed with.
pub const FORM_VERSION: u32 = 1;
/// Bytes of the HMAC kept in the code: 80 bits, enough that a forger cannot
/// guess one, short enough to keep the code large on the page.
const SIGNATURE_BYTES: usize = 10;

/// One field of the paper form: its key in the keying queue and the label
/// printed on the form, which is also what OCR looks for on a filled page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormField {
    pub key: &'static str,
    /// Its name inside the code: short, so the code stays small and its
    /// modules large on the page.
    pub short: &'static str,
    pub label: &'static str,
}

/// The form's fields, in the order printed.
pub const FORM_FIELDS: [FormField; 17] = [
    FormField {
        key: "procedure",
        short: "pr",
        label: "Démarche",
    },
    FormField {
        key: "motif",
        short: "mo",
        label: "Motif du séjour",
    },
    FormField {
        key: "family_name",
        short: "fn",
        label: "Nom",
    },
    FormField {
        key: "given_names",
        short: "gn",
        label: "Prénoms",
    },
    FormField {
        key: "birth_date",
        short: "bd",
        label: "Date de naissance",
    },
    FormField {
        key: "birth_place",
        short: "bp",
        label: "Lieu de naissance",
    },
    FormField {
        key: "nationality",
        short: "na",
        label: "Nationalité",
    },
    FormField {
        key: "foreigner_number",
        short: "fo",
        label: "Numéro étranger",
    },
    FormField {
        key: "address_line1",
        short: "ad",
        label: "Adresse",
    },
    FormField {
        key: "postal_code",
        short: "pc",
        label: "Code postal",
    },
    FormField {
        key: "city",
        short: "ci",
        label: "Ville",
    },
    FormField {
        key: "email",
        short: "em",
        label: "Courriel",
    },
    FormField {
        key: "phone",
        short: "ph",
        label: "Téléphone",
    },
    FormField {
        key: "title_kind",
        short: "tk",
        label: "Titre actuel",
    },
    FormField {
        key: "title_number",
        short: "tn",
        label: "Numéro du titre",
    },
    FormField {
        key: "title_expires_on",
        short: "te",
        label: "Titre valable jusqu'au",
    },
    FormField {
        key: "document_kinds",
        short: "dk",
        label: "Pièces jointes",
    },
];

/// Why an envelope with no Guichet form goes to keying: not a problem with
/// a code, only its absence (a letter, a form of another administration).
pub const NO_FORM: &str = "no Guichet form in this envelope: key it from the pages, or route it";

pub fn form_field(key: &str) -> Option<&'static FormField> {
    FORM_FIELDS.iter().find(|f| f.key == key)
}

// ---- codes -----------------------------------------------------------------

/// What a page's code says once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCode {
    /// A form Guichet printed: its id, layout version and pre-filled fields.
    Form(FormCode),
    /// A separator sheet between two envelopes of a stack.
    Separator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormCode {
    pub form_id: String,
    pub version: u32,
    /// Pre-filled fields by key (`FORM_FIELDS`); empty on a blank form.
    pub fields: BTreeMap<String, String>,
}

/// Why a code read off a page cannot be trusted: each goes to keying as the
/// envelope's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeProblem {
    #[error("the code is not a Guichet form code")]
    NotOurs,
    #[error("the form code is damaged: {0}")]
    Malformed(&'static str),
    #[error("form layout version {0} is unknown")]
    UnknownVersion(u32),
    #[error("the form code's signature does not match its content: altered or forged")]
    Forged,
}

/// The text of a separator sheet's code (nothing to sign: it carries nothing).
pub fn separator_code() -> String {
    format!("{CODE_PREFIX}|S")
}

/// The signed text of a form's code.
pub fn form_code_text(code: &FormCode, key: &[u8]) -> String {
    let fields: Vec<String> = code
        .fields
        .iter()
        .filter_map(|(k, v)| form_field(k).map(|f| format!("{}={}", f.short, escape(v))))
        .collect();
    let body = format!(
        "{CODE_PREFIX}|F|{}|{}|{}",
        escape(&code.form_id),
        code.version,
        fields.join(";")
    );
    let signature = sign(&body, key);
    format!("{body}|{signature}")
}

/// Reads and verifies the text of a code found on a page.
pub fn read_code(text: &str, key: &[u8]) -> Result<PageCode, CodeProblem> {
    let mut parts = text.split('|');
    if parts.next() != Some(CODE_PREFIX) {
        return Err(CodeProblem::NotOurs);
    }
    match parts.next() {
        Some("S") if parts.next().is_none() => Ok(PageCode::Separator),
        Some("F") => {
            let (body, signature) = text
                .rsplit_once('|')
                .ok_or(CodeProblem::Malformed("no signature"))?;
            let parts: Vec<&str> = body.split('|').collect();
            let [_, _, form_id, version, fields] = parts[..] else {
                return Err(CodeProblem::Malformed("wrong number of parts"));
            };
            let version: u32 = version
                .parse()
                .map_err(|_| CodeProblem::Malformed("version is not a number"))?;
            if !verify(body, signature, key) {
                return Err(CodeProblem::Forged);
            }
            if version != FORM_VERSION {
                return Err(CodeProblem::UnknownVersion(version));
            }
            let mut map = BTreeMap::new();
            for pair in fields.split(';').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or(CodeProblem::Malformed("a field without '='"))?;
                let field = FORM_FIELDS
                    .iter()
                    .find(|f| f.short == k)
                    .ok_or(CodeProblem::Malformed("unknown field"))?;
                map.insert(
                    field.key.to_string(),
                    unescape(v).ok_or(CodeProblem::Malformed("bad escape"))?,
                );
            }
            Ok(PageCode::Form(FormCode {
                form_id: unescape(form_id).ok_or(CodeProblem::Malformed("bad escape"))?,
                version,
                fields: map,
            }))
        }
        _ => Err(CodeProblem::Malformed("unknown code kind")),
    }
}

fn mac(body: &str, key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(body.as_bytes());
    mac
}

fn sign(body: &str, key: &[u8]) -> String {
    let tag = mac(body, key).finalize().into_bytes();
    hex::encode(&tag[..SIGNATURE_BYTES])
}

fn verify(body: &str, signature: &str, key: &[u8]) -> bool {
    let Ok(given) = hex::decode(signature) else {
        return false;
    };
    given.len() == SIGNATURE_BYTES && mac(body, key).verify_truncated_left(&given).is_ok()
}

/// Percent-escapes the characters the code's syntax uses.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '|' | ';' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

// ---- stacks ----------------------------------------------------------------

/// The postmark of each of `envelopes`, from the dates the scanning station
/// gave in stack order. They are matched by position, so a count that
/// differs (a separator sheet not read merges two envelopes, or one too
/// many) would shift every later postmark to its neighbour, and with it a
/// legal filing date: then none is taken, and the problem says why, for the
/// operator to key each postmark from its envelope. No dates given: none.
pub fn postmarks_by_envelope(
    given: &[String],
    envelopes: usize,
) -> (Vec<Option<String>>, Option<String>) {
    if given.len() == envelopes {
        let dates = given
            .iter()
            .map(|d| Some(d.trim().to_string()).filter(|d| !d.is_empty()))
            .collect();
        return (dates, None);
    }
    let problem = (!given.is_empty()).then(|| {
        format!(
            "the station gave {} postmarks for {envelopes} envelopes: key the postmark from the envelope",
            given.len()
        )
    });
    (vec![None; envelopes], problem)
}

/// Splits a scanned stack into envelopes: a separator sheet closes the
/// envelope before it. Returns, per envelope, the indexes of its pages
/// (separators excluded); two separators in a row make no empty envelope.
pub fn split_at_separators(is_separator: &[bool]) -> Vec<Vec<usize>> {
    let mut envelopes = Vec::new();
    let mut current = Vec::new();
    for (i, &sep) in is_separator.iter().enumerate() {
        if sep {
            if !current.is_empty() {
                envelopes.push(std::mem::take(&mut current));
            }
        } else {
            current.push(i);
        }
    }
    if !current.is_empty() {
        envelopes.push(current);
    }
    envelopes
}

// ---- envelopes -------------------------------------------------------------

/// Where an envelope stands. Every envelope ends `Filed` (a dossier),
/// `Attached` (documents for a dossier already filed, answering a request
/// for documents) or `Routed` (not a filing, with the reason and where it
/// went): none is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeState {
    /// Read; waits for a mailroom operator to confirm or correct its fields.
    Keying,
    /// Confirmed by one operator with a postmark that is hard to believe
    /// (`postmark_doubt`): waits for a second operator's confirmation.
    PostmarkCheck,
    Filed,
    Attached,
    Routed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeAction {
    Confirm,
    /// A first confirmation of a doubtful postmark.
    HoldPostmark,
    /// Its pages are documents of a dossier already filed.
    Attach,
    Route,
}

impl EnvelopeState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeState::Keying => "keying",
            EnvelopeState::PostmarkCheck => "postmark_check",
            EnvelopeState::Filed => "filed",
            EnvelopeState::Attached => "attached",
            EnvelopeState::Routed => "routed",
        }
    }

    pub const ALL: [EnvelopeState; 5] = [
        Self::Keying,
        Self::PostmarkCheck,
        Self::Filed,
        Self::Attached,
        Self::Routed,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Still waiting for an operator: in keying or held for a second look.
    pub fn is_open(self) -> bool {
        matches!(self, EnvelopeState::Keying | EnvelopeState::PostmarkCheck)
    }

    /// The state after `action`, or why it is refused.
    pub fn after(self, action: EnvelopeAction) -> Result<EnvelopeState, &'static str> {
        match (self, action) {
            (EnvelopeState::Filed, _) => Err("this envelope is already a dossier"),
            (EnvelopeState::Routed, _) => Err("this envelope was already routed"),
            (EnvelopeState::Attached, _) => Err("this envelope was already attached to a dossier"),
            (_, EnvelopeAction::Confirm) => Ok(EnvelopeState::Filed),
            (_, EnvelopeAction::Attach) => Ok(EnvelopeState::Attached),
            (_, EnvelopeAction::HoldPostmark) => Ok(EnvelopeState::PostmarkCheck),
            (_, EnvelopeAction::Route) => Ok(EnvelopeState::Routed),
        }
    }
}

from_stored!(EnvelopeState);

codes!(
    /// Where a scanned batch stands: its pages kept, then read into envelopes.
    BatchState {
        Stored => "stored",
        Read => "read",
    }
);

codes!(
    /// What reading found a page to be.
    PageRole {
        Form => "form",
        Enclosure => "enclosure",
        Separator => "separator",
    }
);

// ---- postmarks ---------------------------------------------------------------

/// How long before its reception a postmark is still believed on one
/// operator's word (`GUICHET_POSTMARK_MAX_AGE_DAYS`): French post takes days,
/// not months; an older stamp is misread, or a forgery that buys rights
/// (a renewal "posted" before the title expired).
pub const DEFAULT_POSTMARK_MAX_AGE_DAYS: u32 = 60;

/// Why a postmark needs a second operator's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostmarkDoubt {
    /// Stamped after the envelope was received: misread, mistyped, or a
    /// misset stamping machine. Once confirmed the reception date counts,
    /// the latest day the person can have posted it.
    AfterReception,
    /// Stamped more than the bound (in days) before the envelope was received.
    TooOld { days: i64, max_age_days: u32 },
}

impl std::fmt::Display for PostmarkDoubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostmarkDoubt::AfterReception => write!(f, "is after the reception date"),
            PostmarkDoubt::TooOld { days, max_age_days } => write!(
                f,
                "is {days} days before the reception date (more than {max_age_days})"
            ),
        }
    }
}

/// Whether one operator's word is enough for `postmark` on an envelope
/// received on `reception`; `None` when it is.
pub fn postmark_doubt(
    postmark: NaiveDate,
    reception: NaiveDate,
    max_age_days: u32,
) -> Option<PostmarkDoubt> {
    let days = (reception - postmark).num_days();
    if days < 0 {
        Some(PostmarkDoubt::AfterReception)
    } else if days > i64::from(max_age_days) {
        Some(PostmarkDoubt::TooOld { days, max_age_days })
    } else {
        None
    }
}

/// The postmark a confirmed envelope is filed with. A stamp later than the
/// reception cannot be when the person posted it (the envelope was already
/// in hand): the filing counts from the reception date instead.
pub fn postmark_to_file(postmark: Option<NaiveDate>, reception: NaiveDate) -> Option<NaiveDate> {
    postmark.filter(|p| *p <= reception)
}

/// A first confirmation of a doubtful postmark, waiting for a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmarkHold {
    pub postmark: NaiveDate,
    pub operator_id: String,
}

/// What an operator's confirmation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The envelope becomes a dossier.
    File,
    /// Confirmed by a second operator with a reason, then filed.
    FileConfirmed,
    /// The first operator's word on a doubtful postmark: held for a second.
    Hold(PostmarkDoubt),
}

/// Why a confirmation is refused, with the field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationRefused {
    /// The operator who held the postmark cannot be its second pair of eyes.
    SameOperator,
    /// A second confirmation says why the doubtful postmark stands.
    ReasonRequired,
}

impl ConfirmationRefused {
    pub fn field(self) -> &'static str {
        match self {
            ConfirmationRefused::SameOperator => "operator_id",
            ConfirmationRefused::ReasonRequired => "postmark_reason",
        }
    }

    pub fn problem(self) -> &'static str {
        match self {
            ConfirmationRefused::SameOperator => {
                "this postmark was held by this operator: another operator must confirm it"
            }
            ConfirmationRefused::ReasonRequired => {
                "is required to confirm a doubtful postmark: why it stands (what the stamp shows)"
            }
        }
    }
}

/// The two-operator rule on postmarks: a usual postmark is filed on one
/// confirmation; a doubtful one (`postmark_doubt`) is held on the first and
/// filed on the confirmation of the same postmark by another operator, who
/// gives a reason. A different postmark keyed meanwhile starts afresh.
pub fn confirmation(
    doubt: Option<PostmarkDoubt>,
    postmark: Option<NaiveDate>,
    held: Option<&PostmarkHold>,
    operator_id: &str,
    reason: &str,
) -> Result<Confirmation, ConfirmationRefused> {
    let Some(doubt) = doubt else {
        return Ok(Confirmation::File);
    };
    match held {
        Some(h) if Some(h.postmark) == postmark => {
            if h.operator_id == operator_id {
                Err(ConfirmationRefused::SameOperator)
            } else if reason.trim().is_empty() {
                Err(ConfirmationRefused::ReasonRequired)
            } else {
                Ok(Confirmation::FileConfirmed)
            }
        }
        _ => Ok(Confirmation::Hold(doubt)),
    }
}

// ---- fields ----------------------------------------------------------------

/// A field's value as read, with how sure the reading is (0 to 1) and where
/// it came from: `code` (signed, certain), `ocr`, or `operator`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractedField {
    pub key: String,
    pub value: String,
    pub confidence: f64,
    pub source: &'static str,
}

/// A line of OCR'd text with the engine's mean confidence (0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    pub text: String,
    pub confidence: f64,
}

/// Finds the form's labelled fields (`Label : value`) in OCR'd lines.
/// Labels match without accents or case, the longest label first, so
/// "Numéro du titre" is not read as "Nom".
pub fn fields_from_ocr(lines: &[OcrLine]) -> Vec<ExtractedField> {
    let mut by_length: Vec<&FormField> = FORM_FIELDS.iter().collect();
    by_length.sort_by_key(|f| std::cmp::Reverse(f.label.len()));
    let mut found: BTreeMap<&str, ExtractedField> = BTreeMap::new();
    for line in lines {
        let Some((label, value)) = line.text.split_once(':') else {
            continue;
        };
        let label = fold(label);
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if let Some(field) = by_length.iter().find(|f| fold(f.label) == label) {
            found.entry(field.key).or_insert(ExtractedField {
                key: field.key.to_string(),
                value: value.to_string(),
                confidence: line.confidence.clamp(0.0, 1.0),
                source: "ocr",
            });
        }
    }
    found.into_values().collect()
}

/// Lower case, no accents, single spaces: how labels are compared.
fn fold(s: &str) -> String {
    let folded: String = s
        .chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'À' | 'Â' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' => 'e',
            'î' | 'ï' | 'Î' => 'i',
            'ô' | 'ö' | 'Ô' => 'o',
            'ù' | 'û' | 'ü' | 'Û' => 'u',
            'ç' | 'Ç' => 'c',
            '’' => '\'',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The fields an operator starts from: what the signed code says (certain)
/// wins over what OCR read.
pub fn merge_fields(code: Option<&FormCode>, ocr: Vec<ExtractedField>) -> Vec<ExtractedField> {
    let mut merged: BTreeMap<String, ExtractedField> =
        ocr.into_iter().map(|f| (f.key.clone(), f)).collect();
    if let Some(code) = code {
        for (k, v) in &code.fields {
            merged.insert(
                k.clone(),
                ExtractedField {
                    key: k.clone(),
                    value: v.clone(),
                    confidence: 1.0,
                    source: "code",
                },
            );
        }
    }
    merged.into_values().collect()
}

/// A date as people write it on paper (`02/03/1991`, `2.3.1991`) or as ISO
/// text, in ISO form; anything else is passed on for the filing's own check
/// to name.
pub fn paper_date(s: &str) -> String {
    let s = s.trim();
    let parts: Vec<&str> = s
        .split(['/', '.', '-', ' '])
        .filter(|p| !p.is_empty())
        .collect();
    match parts[..] {
        [d, m, y] if y.len() == 4 && d.len() <= 2 && m.len() <= 2 => {
            format!("{y}-{m:0>2}-{d:0>2}")
        }
        _ => s.to_string(),
    }
}

/// A page of the envelope as a document of the filing.
#[derive(Debug, Clone)]
pub struct ScannedPage {
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: u64,
}

/// The filing an operator's confirmed fields make. `enclosures` are the
/// envelope's pages after the form; `document_kinds` (comma-separated, one
/// per enclosure) says what each is, `other` where not given. A paper filer
/// is answered on paper.
pub fn raw_filing(
    fields: &BTreeMap<String, String>,
    form: &[ScannedPage],
    enclosures: &[ScannedPage],
    envelope_id: &str,
) -> RawFiling {
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let date = |k: &str| get(k).map(|v| paper_date(&v));
    let kinds: Vec<String> = get("document_kinds")
        .map(|v| v.split(',').map(|k| k.trim().to_string()).collect())
        .unwrap_or_default();
    let document = |p: &ScannedPage, kind: String, n: usize| RawDocument {
        kind: Some(kind),
        sha256: Some(p.sha256.clone()),
        media_type: Some(p.media_type.clone()),
        size_bytes: Some(p.size_bytes),
        filename: Some(format!("page-{n}.png")),
    };
    let mut documents: Vec<RawDocument> = Vec::new();
    for p in form {
        documents.push(document(p, "other".into(), documents.len() + 1));
    }
    for (i, p) in enclosures.iter().enumerate() {
        let kind = kinds
            .get(i)
            .filter(|k| !k.is_empty())
            .cloned()
            .unwrap_or_else(|| "other".into());
        documents.push(document(p, kind, documents.len() + 1));
    }
    let title = get("title_kind").map(|kind| RawCurrentTitle {
        kind: Some(kind),
        number: get("title_number"),
        expires_on: date("title_expires_on"),
    });
    RawFiling {
        // No default: a renewal filed as a first application would lose
        // its legal extension and its attestation. Left blank, the
        // filing's own check names the field for the operator.
        procedure: get("procedure"),
        motif: get("motif"),
        applicant: Some(RawApplicant {
            family_name: get("family_name"),
            given_names: get("given_names"),
            birth_date: date("birth_date"),
            birth_place: get("birth_place"),
            nationality: get("nationality"),
            foreigner_number: get("foreigner_number"),
        }),
        contact: Some(RawContact {
            email: get("email"),
            phone: get("phone"),
            address: Some(RawAddress {
                line1: get("address_line1"),
                line2: None,
                postal_code: get("postal_code"),
                city: get("city"),
                country: None,
            }),
            answer_channel: Some("post".into()),
            language: None,
        }),
        current_title: title,
        documents,
        // The envelope is the unit of filing: confirming it twice files once.
        idempotency_key: Some(format!("postal-{envelope_id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test signing key";

    fn form(fields: &[(&str, &str)]) -> FormCode {
        FormCode {
            form_id: "F-01ABC".into(),
            version: FORM_VERSION,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn codes_read_back_or_name_what_is_wrong() {
        let genuine = form(&[
            ("family_name", "Benali"),
            ("given_names", "Samira; Nour=|%"),
        ]);
        let text = form_code_text(&genuine, KEY);
        let forged_name = text.replace("Benali", "Dupont");
        let blank = form(&[]);
        let cases: Vec<(&str, String, Result<PageCode, CodeProblem>)> = vec![
            ("genuine", text.clone(), Ok(PageCode::Form(genuine.clone()))),
            (
                "blank",
                form_code_text(&blank, KEY),
                Ok(PageCode::Form(blank)),
            ),
            ("separator", separator_code(), Ok(PageCode::Separator)),
            (
                "fields changed, signature kept",
                forged_name,
                Err(CodeProblem::Forged),
            ),
            (
                "signed with another key",
                form_code_text(&genuine, b"other"),
                Err(CodeProblem::Forged),
            ),
            (
                "someone else's code",
                "https://example.org".into(),
                Err(CodeProblem::NotOurs),
            ),
            (
                "truncated",
                text[..text.len() - 4].to_string(),
                Err(CodeProblem::Forged),
            ),
            (
                "no fields part",
                "GCH1|F|x|1|sig".into(),
                Err(CodeProblem::Malformed("wrong number of parts")),
            ),
            (
                "unknown kind",
                "GCH1|Q".into(),
                Err(CodeProblem::Malformed("unknown code kind")),
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(read_code(&text, KEY), want, "{name}");
        }
        let future = FormCode {
            version: 9,
            ..form(&[])
        };
        assert_eq!(
            read_code(&form_code_text(&future, KEY), KEY),
            Err(CodeProblem::UnknownVersion(9))
        );
    }

    #[test]
    fn stacks_split_at_separators() {
        let cases: [(&[bool], Vec<Vec<usize>>); 6] = [
            (&[], vec![]),
            (&[false, false], vec![vec![0, 1]]),
            (
                &[true, false, false, true, false],
                vec![vec![1, 2], vec![4]],
            ),
            (&[false, true, false], vec![vec![0], vec![2]]),
            (&[true, true, false, true], vec![vec![2]]),
            (&[true], vec![]),
        ];
        for (pages, want) in cases {
            assert_eq!(split_at_separators(pages), want, "{pages:?}");
        }
    }

    #[test]
    fn envelopes_end_filed_attached_or_routed_once() {
        use EnvelopeAction::*;
        use EnvelopeState::*;
        let cases = [
            (Keying, Confirm, Ok(Filed)),
            (Keying, HoldPostmark, Ok(PostmarkCheck)),
            (Keying, Route, Ok(Routed)),
            (PostmarkCheck, Confirm, Ok(Filed)),
            (PostmarkCheck, HoldPostmark, Ok(PostmarkCheck)),
            (PostmarkCheck, Route, Ok(Routed)),
            (Filed, Confirm, Err("this envelope is already a dossier")),
            (Filed, Route, Err("this envelope is already a dossier")),
            (
                Filed,
                HoldPostmark,
                Err("this envelope is already a dossier"),
            ),
            (Routed, Confirm, Err("this envelope was already routed")),
            (Keying, Attach, Ok(Attached)),
            (PostmarkCheck, Attach, Ok(Attached)),
            (Filed, Attach, Err("this envelope is already a dossier")),
            (Routed, Attach, Err("this envelope was already routed")),
            (
                Attached,
                Confirm,
                Err("this envelope was already attached to a dossier"),
            ),
            (
                Attached,
                Attach,
                Err("this envelope was already attached to a dossier"),
            ),
        ];
        for (state, action, want) in cases {
            assert_eq!(state.after(action), want, "{state:?} {action:?}");
            assert_eq!(EnvelopeState::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn postmarks_one_operator_cannot_vouch_for_alone() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let received = d(2026, 11, 24);
        let max = DEFAULT_POSTMARK_MAX_AGE_DAYS;
        let old = |days| PostmarkDoubt::TooOld {
            days,
            max_age_days: max,
        };
        let cases = [
            ("the day it was received", d(2026, 11, 24), max, None),
            ("two days in the post", d(2026, 11, 22), max, None),
            ("exactly the bound", d(2026, 9, 25), max, None),
            ("a day past the bound", d(2026, 9, 24), max, Some(old(61))),
            (
                "a stamp from another century",
                d(2001, 1, 2),
                max,
                Some(old(9457)),
            ),
            (
                "a day after reception",
                d(2026, 11, 25),
                max,
                Some(PostmarkDoubt::AfterReception),
            ),
            (
                "a misset machine, next year",
                d(2027, 11, 24),
                max,
                Some(PostmarkDoubt::AfterReception),
            ),
            (
                "a tighter bound",
                d(2026, 11, 10),
                7,
                Some(PostmarkDoubt::TooOld {
                    days: 14,
                    max_age_days: 7,
                }),
            ),
        ];
        for (name, postmark, bound, want) in cases {
            assert_eq!(postmark_doubt(postmark, received, bound), want, "{name}");
        }
        assert_eq!(
            old(61).to_string(),
            "is 61 days before the reception date (more than 60)"
        );
        // Once two operators confirm it, a stamp after reception files on
        // the reception date; any other confirmed stamp is the filing date.
        for (postmark, want) in [
            (Some(d(2026, 11, 25)), None),
            (Some(d(2001, 1, 2)), Some(d(2001, 1, 2))),
            (Some(received), Some(received)),
            (None, None),
        ] {
            assert_eq!(postmark_to_file(postmark, received), want, "{postmark:?}");
        }
    }

    #[test]
    fn a_doubtful_postmark_needs_a_second_operator_with_a_reason() {
        use Confirmation::*;
        use ConfirmationRefused::*;
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let stamp = d(2001, 1, 2);
        let too_old = PostmarkDoubt::TooOld {
            days: 9457,
            max_age_days: 60,
        };
        let doubt = Some(too_old);
        let held_by_ana = PostmarkHold {
            postmark: stamp,
            operator_id: "ana".into(),
        };
        let cases = [
            ("a usual postmark", None, None, "ana", "", Ok(File)),
            (
                "first confirmation",
                doubt,
                None,
                "ana",
                "",
                Ok(Hold(too_old)),
            ),
            (
                "the same operator again",
                doubt,
                Some(&held_by_ana),
                "ana",
                "I am sure",
                Err(SameOperator),
            ),
            (
                "a second operator without a reason",
                doubt,
                Some(&held_by_ana),
                "ben",
                "  ",
                Err(ReasonRequired),
            ),
            (
                "a second operator with a reason",
                doubt,
                Some(&held_by_ana),
                "ben",
                "the stamp reads 02/01/2001, checked under the lamp",
                Ok(FileConfirmed),
            ),
        ];
        for (name, doubt, held, operator, reason, want) in cases {
            assert_eq!(
                confirmation(doubt, Some(stamp), held, operator, reason),
                want,
                "{name}"
            );
        }
        // Another doubtful postmark keyed over a held one is a new first word.
        let other = d(2002, 3, 4);
        assert_eq!(
            confirmation(doubt, Some(other), Some(&held_by_ana), "ben", "x"),
            Ok(Hold(too_old))
        );
        assert_eq!(SameOperator.field(), "operator_id");
        assert_eq!(ReasonRequired.field(), "postmark_reason");
    }

    #[test]
    fn ocr_lines_give_labelled_fields() {
        let line = |t: &str, c: f64| OcrLine {
            text: t.into(),
            confidence: c,
        };
        let lines = [
            line("DEMANDE DE TITRE DE SÉJOUR", 0.9),
            line("Nom : BENALI", 0.93),
            line("Prénoms: Samira", 0.88),
            line("Numéro du titre : FR59A1234567", 0.8),
            line("Date de naissance : 02/03/1991", 0.7),
            line("Courriel :", 0.9),
            line("Nom : second reading ignored", 0.99),
            line("Remarque : not a field", 0.99),
        ];
        let got: Vec<(String, String, f64)> = fields_from_ocr(&lines)
            .into_iter()
            .map(|f| (f.key, f.value, f.confidence))
            .collect();
        assert_eq!(
            got,
            vec![
                ("birth_date".into(), "02/03/1991".into(), 0.7),
                ("family_name".into(), "BENALI".into(), 0.93),
                ("given_names".into(), "Samira".into(), 0.88),
                ("title_number".into(), "FR59A1234567".into(), 0.8),
            ]
        );
    }

    #[test]
    fn the_signed_code_wins_over_ocr() {
        let ocr = vec![
            ExtractedField {
                key: "family_name".into(),
                value: "BENAL1".into(),
                confidence: 0.6,
                source: "ocr",
            },
            ExtractedField {
                key: "city".into(),
                value: "Lille".into(),
                confidence: 0.9,
                source: "ocr",
            },
        ];
        let merged = merge_fields(Some(&form(&[("family_name", "Benali")])), ocr);
        let name = merged
            .iter()
            .find(|f| f.key == "family_name")
            .map(|f| (f.value.as_str(), f.source));
        assert_eq!(name, Some(("Benali", "code")));
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn paper_dates_become_iso() {
        for (written, iso) in [
            ("02/03/1991", "1991-03-02"),
            ("2.3.1991", "1991-03-02"),
            ("1991-03-02", "1991-03-02"),
            ("mars 1991", "mars 1991"),
        ] {
            assert_eq!(paper_date(written), iso, "{written}");
        }
    }

    #[test]
    fn confirmed_fields_make_a_paper_filing() {
        let fields: BTreeMap<String, String> = [
            ("procedure", "renewal"),
            ("family_name", "Benali"),
            ("birth_date", "02/03/1991"),
            ("document_kinds", "passport, photo"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let page = |s: &str| ScannedPage {
            sha256: s.into(),
            media_type: "image/png".into(),
            size_bytes: 10,
        };
        let raw = raw_filing(
            &fields,
            &[page("a")],
            &[page("b"), page("c"), page("d")],
            "env-1",
        );
        let kinds: Vec<_> = raw
            .documents
            .iter()
            .filter_map(|d| d.kind.clone())
            .collect();
        assert_eq!(kinds, ["other", "passport", "photo", "other"]);
        assert_eq!(
            raw.applicant.and_then(|a| a.birth_date).as_deref(),
            Some("1991-03-02")
        );
        assert_eq!(
            raw.contact.and_then(|c| c.answer_channel).as_deref(),
            Some("post")
        );
        assert_eq!(raw.idempotency_key.as_deref(), Some("postal-env-1"));
    }

    #[test]
    fn postmarks_are_taken_only_when_there_is_one_per_envelope() {
        let dates = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let some = |d: &str| Some(d.to_string());
        let table = [
            (
                dates(&["2026-11-28", " ", "2026-11-27"]),
                3,
                vec![some("2026-11-28"), None, some("2026-11-27")],
                false,
            ),
            (dates(&[]), 2, vec![None, None], false),
            // One separator not read: two envelopes became one.
            (dates(&["2026-11-28", "2026-11-27"]), 1, vec![None], true),
            (dates(&["2026-11-28"]), 2, vec![None, None], true),
            (dates(&["2026-11-28"]), 0, vec![], true),
        ];
        for (given, envelopes, expected, problem) in table {
            let (found, why) = postmarks_by_envelope(&given, envelopes);
            assert_eq!(found, expected, "{given:?} for {envelopes}");
            assert_eq!(why.is_some(), problem, "{given:?} for {envelopes}: {why:?}");
        }
    }

    /// A form whose procedure box was left blank (not ticked, not read):
    /// the filing is refused naming the field, never made a first
    /// application, which would cost a renewal its legal extension.
    #[test]
    fn a_blank_procedure_is_refused_not_guessed() {
        let fields: BTreeMap<String, String> = [("motif", "salarie"), ("family_name", "Benali")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let raw = raw_filing(&fields, &[], &[], "env-2");
        assert_eq!(raw.procedure, None);
        let provenance = crate::filing::RawProvenance::Postal {
            station_id: Some("station-1".into()),
            envelope_id: Some("env-2".into()),
            postmark_date: None,
            reception_date: Some("2026-12-01".into()),
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let refused =
            crate::filing::Filing::parse(&raw, &provenance, today).expect_err("no procedure");
        assert!(
            refused.iter().any(|v| v.field == "procedure"),
            "{:?}",
            refused.into_vec()
        );
    }
}
