//! What any text must be to enter Guichet, whatever the channel: checked at
//! the edge (the gateway's extractors and every gRPC service) before it can
//! reach a database, a letter or a log line.
//!
//! - No control characters: a NUL byte is refused by PostgreSQL, and the
//!   others corrupt letters, CSV exports and logs. Free text (`reason`,
//!   `what_was_tried`, ...) may hold line breaks and tabs.
//! - No bidirectional overrides, embeddings or isolates anywhere: they make
//!   what an agent reads differ from what is stored.
//! - Names printed on letters and attestations hold no invisible
//!   characters either (zero-width spaces and joiners, word joiners, soft
//!   hyphens, byte-order marks): a name must print as it is stored.
//! - Lengths are bounded, in characters.
//!
//! Which rule a field follows comes from its name ([`kind_of`]), so that the
//! REST and gRPC edges agree on every field, present and future.

use crate::Violations;

/// Ids, codes, references, keys: one short line.
pub const MAX_TOKEN_CHARS: usize = 200;
/// A name printed on paper: family name, given names, a city.
pub const MAX_NAME_CHARS: usize = 200;
/// Any other one-line text.
pub const MAX_LINE_CHARS: usize = 1_000;
/// Free text: a reason, what a person tried, an OCR transcript.
pub const MAX_PROSE_CHARS: usize = 20_000;
/// A document in JSON passed on whole (a filing as the person sent it):
/// as large as the gateway's largest JSON body. The texts inside are
/// checked one by one with [`check_json`].
pub const MAX_JSON_CHARS: usize = 256 * 1024;

/// How strict a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ids, codes, references, keys, dates as text.
    Token,
    /// Printed on letters and attestations.
    Name,
    /// Any other one-line text.
    Line,
    /// Free text, several lines allowed.
    Prose,
    /// A JSON document (`*_json`), whose own texts are checked apart.
    Json,
}

impl Kind {
    pub fn max_chars(self) -> usize {
        match self {
            Kind::Token => MAX_TOKEN_CHARS,
            Kind::Name => MAX_NAME_CHARS,
            Kind::Line => MAX_LINE_CHARS,
            Kind::Prose => MAX_PROSE_CHARS,
            Kind::Json => MAX_JSON_CHARS,
        }
    }
}

/// Names whose value is printed on letters, forms or attestations.
const PRINTED: [&str; 10] = [
    "family_name",
    "given_names",
    "birth_place",
    "name",
    "line1",
    "line2",
    "address_line1",
    "city",
    "destination",
    "filename",
];

/// Names whose value is free text.
const PROSE: [&str; 9] = [
    "reason",
    "what_was_tried",
    "note",
    "outcome_note",
    "detail",
    "ocr_text",
    "routed_reason",
    "comment",
    "text",
];

/// The rule for a field, from its path (`person.family_name`,
/// `fields.given_names`, `kinds[2]`): the last name in the path decides.
pub fn kind_of(path: &str) -> Kind {
    let last = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .split('[')
        .next()
        .unwrap_or_default();
    let last = last.to_ascii_lowercase();
    if PRINTED.contains(&last.as_str()) {
        Kind::Name
    } else if PROSE.contains(&last.as_str()) {
        Kind::Prose
    } else if last.ends_with("_json") {
        Kind::Json
    } else if last == "id"
        || last.ends_with("_id")
        || last.ends_with("_key")
        || last.ends_with("_code")
        || last.ends_with("_date")
        || last.ends_with("_dates")
        || matches!(
            last.as_str(),
            "reference"
                | "sha256"
                | "code"
                | "prefecture"
                | "site"
                | "procedure"
                | "motif"
                | "channel"
                | "state"
                | "kind"
                | "kinds"
                | "nationality"
                | "foreigner_number"
                | "phone"
                | "media_type"
                | "by"
                | "actor"
        )
    {
        Kind::Token
    } else {
        Kind::Line
    }
}

/// Bidirectional formatting that reorders what is displayed (the "Trojan
/// Source" characters): refused in every field.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Invisible characters that change nothing a reader sees: refused in
/// printed names, where the text on paper must be the text stored.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// What is wrong with `value` as a `kind` field, if anything.
pub fn problem(value: &str, kind: Kind) -> Option<String> {
    let max = kind.max_chars();
    if value.contains('\0') {
        return Some("contains a NUL byte".into());
    }
    let control = |c: char| match kind {
        Kind::Prose | Kind::Json => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
        _ => c.is_control(),
    };
    if value.chars().any(control) {
        return Some("contains control characters".into());
    }
    if value.chars().any(is_bidi_control) {
        return Some("contains bidirectional override characters".into());
    }
    if kind == Kind::Name && value.chars().any(is_invisible) {
        return Some("contains invisible characters (zero-width or formatting)".into());
    }
    // Counted last and lazily: a long text is still refused for its length
    // only after the cheaper checks, and never counted twice.
    if value.len() > max && value.chars().count() > max {
        return Some(format!("is longer than {max} characters"));
    }
    None
}

/// Adds the problem with `value`, if any, to `v` under `field`, checked by
/// the rule for its name; true when the value is fine.
pub fn check(v: &mut Violations, field: &str, value: &str) -> bool {
    check_as(v, field, value, kind_of(field))
}

/// The same, with the rule given.
pub fn check_as(v: &mut Violations, field: &str, value: &str, kind: Kind) -> bool {
    match problem(value, kind) {
        Some(p) => {
            v.add(field, p);
            false
        }
        None => true,
    }
}

/// Checks a map's keys (tokens) and values (by the key's rule), naming each
/// as `map.key`.
pub fn check_map<'a>(
    v: &mut Violations,
    map: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (key, value) in entries {
        if !check_as(v, map, key, Kind::Token) {
            continue;
        }
        check(v, &format!("{map}.{key}"), value);
    }
}

/// Every string of a JSON document, keys included, each checked by the rule
/// for its path (`applicant.family_name`, `documents[0].sha256`), named as
/// `serde_path_to_error` names fields; the document itself is `body`.
pub fn check_json(v: &mut Violations, path: &str, value: &serde_json::Value) {
    use serde_json::Value;
    let here = if path.is_empty() { "body" } else { path };
    match value {
        Value::String(s) => {
            check(v, here, s);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_json(v, &format!("{path}[{i}]"), item);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                if !check_as(v, here, key, Kind::Token) {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                check_json(v, &child, item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_texts_are_checked_by_their_paths() {
        let doc = serde_json::json!({
            "applicant": {"family_name": "Dia\u{200B}llo", "birth_date": "1990-01-01"},
            "documents": [{"sha256": "ab"}, {"sha256": "a\u{0}b"}],
            "note": "line one\nline two",
            "bad\u{0}key": 1
        });
        let mut v = Violations::new();
        check_json(&mut v, "", &doc);
        let fields: Vec<&str> = v.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["applicant.family_name", "body", "documents[1].sha256"],
            "{v:?}"
        );
        assert_eq!(kind_of("raw_json"), Kind::Json);
    }

    #[test]
    fn the_rule_follows_the_field_name() {
        for (path, kind) in [
            ("family_name", Kind::Name),
            ("person.family_name", Kind::Name),
            ("applicant.given_names", Kind::Name),
            ("fields.given_names", Kind::Name),
            ("contact.address.line1", Kind::Name),
            ("reason", Kind::Prose),
            ("what_was_tried", Kind::Prose),
            ("id", Kind::Token),
            ("site_id", Kind::Token),
            ("idempotency_key", Kind::Token),
            ("reference", Kind::Token),
            ("prefecture", Kind::Token),
            ("postmark_dates[3]", Kind::Token),
            ("kinds[0]", Kind::Token),
            ("verification_code", Kind::Token),
            ("new_title.number", Kind::Line),
            ("anything_else", Kind::Line),
            ("", Kind::Line),
        ] {
            assert_eq!(kind_of(path), kind, "{path}");
        }
    }

    #[test]
    fn what_each_kind_refuses() {
        let long = |n: usize| "é".repeat(n);
        for (value, kind, expected) in [
            ("Benali", Kind::Name, None),
            ("Nguyễn Thị", Kind::Name, None),
            ("O'Brien-Smith", Kind::Name, None),
            ("محمد", Kind::Name, None),
            ("a\0b", Kind::Line, Some("contains a NUL byte")),
            ("\0", Kind::Token, Some("contains a NUL byte")),
            ("\0", Kind::Prose, Some("contains a NUL byte")),
            ("a\u{1}b", Kind::Line, Some("contains control characters")),
            ("a\u{7f}b", Kind::Token, Some("contains control characters")),
            ("a\u{85}b", Kind::Line, Some("contains control characters")),
            ("a\nb", Kind::Name, Some("contains control characters")),
            ("a\tb", Kind::Token, Some("contains control characters")),
            ("line one\nline two\tend\r\n", Kind::Prose, None),
            (
                "a\u{1b}[31m",
                Kind::Prose,
                Some("contains control characters"),
            ),
            (
                "Ben\u{202E}ila",
                Kind::Name,
                Some("contains bidirectional override characters"),
            ),
            (
                "x\u{2066}y",
                Kind::Prose,
                Some("contains bidirectional override characters"),
            ),
            (
                "Ben\u{200B}ali",
                Kind::Name,
                Some("contains invisible characters (zero-width or formatting)"),
            ),
            (
                "\u{FEFF}Benali",
                Kind::Name,
                Some("contains invisible characters (zero-width or formatting)"),
            ),
            (
                "Ben\u{200D}ali",
                Kind::Name,
                Some("contains invisible characters (zero-width or formatting)"),
            ),
            // Joiners belong in free text (scripts, emoji); not in names.
            ("a\u{200D}b", Kind::Prose, None),
            ("a\u{200C}b", Kind::Line, None),
        ] {
            assert_eq!(
                problem(value, kind).as_deref(),
                expected,
                "{value:?} {kind:?}"
            );
        }
        for kind in [Kind::Token, Kind::Name, Kind::Line, Kind::Prose] {
            let max = kind.max_chars();
            assert_eq!(problem(&long(max), kind), None, "{kind:?} at its bound");
            assert_eq!(
                problem(&long(max + 1), kind),
                Some(format!("is longer than {max} characters")),
                "{kind:?} past its bound"
            );
        }
    }

    #[test]
    fn checks_name_the_field() {
        let mut v = Violations::new();
        assert!(check(&mut v, "person.family_name", "Benali"));
        assert!(!check(&mut v, "person.family_name", "Ben\u{200B}ali"));
        assert!(!check(&mut v, "site_id", "59\0"));
        check_map(
            &mut v,
            "prefill",
            [("family_name", "ok"), ("given_names", "a\0"), ("k\0", "v")],
        );
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "person.family_name",
                "site_id",
                "prefill.given_names",
                "prefill"
            ]
        );
    }
}
