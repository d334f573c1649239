//! What a person hears of their file, and by which means: which events call
//! for a notice, the media it goes by (e-mail, SMS, paper), the short SMS
//! text (GSM-7, one segment, no personal data beyond a first name and a
//! reference), the hours an SMS may be sent, when a failed send is tried
//! again, and when paper follows failed electronic media.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;

use crate::codes::{AnswerChannel, Language, codes};

codes!(
    /// How a notice reaches the person.
    Medium {
        Email => "email",
        Sms => "sms",
        Paper => "paper",
    }
);

codes!(
    /// What the person is told.
    NoticeKind {
        Receipt => "receipt",
        DocumentsMissing => "documents_missing",
        AttestationIssued => "attestation_issued",
        Decision => "decision",
        Closed => "closed",
        ExpiryAlert => "expiry_alert",
        AppointmentBooked => "appointment_booked",
        AppointmentMoved => "appointment_moved",
        AppointmentCancelled => "appointment_cancelled",
        AppointmentReminder => "appointment_reminder",
        ReportReceived => "report_received",
        AlternativeOffered => "alternative_offered",
        // The code a person asked for to see their own file.
        AccessCode => "access_code",
    }
);

codes!(
    /// Where one message stands. `Sent`: handed to the relay, the SMS
    /// provider or the mailroom's print list; `Delivered`: the provider
    /// reports it reached the phone.
    DeliveryState {
        Queued => "queued",
        Sent => "sent",
        Delivered => "delivered",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl DeliveryState {
    /// The message reached, or was handed to something that delivers it
    /// (a relay that accepted it, the print list).
    pub fn reached(self) -> bool {
        matches!(self, DeliveryState::Sent | DeliveryState::Delivered)
    }
}

/// The notice a case event calls for (`case.<kind>.<channel>`), if any.
/// Steps that are the agents' own business (taken, released) tell nobody.
pub fn case_notice(kind: &str) -> Option<NoticeKind> {
    Some(match kind {
        "found_complete" | "found_incomplete" => NoticeKind::Receipt,
        "documents_requested" => NoticeKind::DocumentsMissing,
        "attestation_issued" => NoticeKind::AttestationIssued,
        "decided_favourable" | "decided_unfavourable" => NoticeKind::Decision,
        "closed_deadline_passed" | "withdrawn" => NoticeKind::Closed,
        _ => return None,
    })
}

/// The notice a report step calls for (`report.<step>.<prefecture>`).
pub fn report_notice(step: &str) -> Option<NoticeKind> {
    match step {
        "opened" => Some(NoticeKind::ReportReceived),
        "alternative_offered" => Some(NoticeKind::AlternativeOffered),
        _ => None,
    }
}

/// The notice an appointment step calls for (`appointment.<step>.<site>`).
pub fn appointment_notice(step: &str) -> Option<NoticeKind> {
    match step {
        "booked" => Some(NoticeKind::AppointmentBooked),
        "moved" => Some(NoticeKind::AppointmentMoved),
        "cancelled" => Some(NoticeKind::AppointmentCancelled),
        _ => None,
    }
}

/// What the person gave to be reached by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub email: bool,
    pub phone: bool,
    pub address: bool,
    pub answer: Option<AnswerChannel>,
}

/// Every medium a notice goes by: each electronic one the person gave, and
/// paper when they asked for it or gave nothing else. Paper also follows
/// later when every electronic medium failed for good (`paper_follows`).
pub fn media(reach: Reach) -> Vec<Medium> {
    let mut media = Vec::new();
    if reach.email {
        media.push(Medium::Email);
    }
    if reach.phone {
        media.push(Medium::Sms);
    }
    if reach.address && (reach.answer == Some(AnswerChannel::Post) || media.is_empty()) {
        media.push(Medium::Paper);
    }
    media
}

/// Whether a letter must now be posted for a notice whose messages stand
/// at `states`: none is on paper yet, the person has an address, and every
/// electronic message failed for good.
pub fn paper_follows(states: &[(Medium, DeliveryState)], address: bool) -> bool {
    address
        && !states.is_empty()
        && states
            .iter()
            .all(|(m, s)| *m != Medium::Paper && *s == DeliveryState::Failed)
}

/// A send that failed for now is tried again after this long: doubling from
/// `base`, at most an hour apart.
pub fn retry_delay(attempts: u32, base: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let delay = base * (1i32 << doublings);
    delay.min(Duration::hours(1))
}

/// Failing for this long since the first try, a message failed for good.
pub const GIVE_UP_AFTER_HOURS: i64 = 48;

/// SMS are not sent between 21:00 and 08:00, Paris time.
const SMS_FROM: (u32, u32) = (8, 0);
const SMS_UNTIL: (u32, u32) = (21, 0);

/// The earliest moment at or after `at` an SMS may be sent.
pub fn sms_allowed_from(at: DateTime<Utc>) -> DateTime<Utc> {
    let local = at.with_timezone(&Paris);
    let time = local.time();
    let from = hm(SMS_FROM);
    let until = hm(SMS_UNTIL);
    if time >= from && time < until {
        return at;
    }
    let day = if time >= until {
        local.date_naive().succ_opt().unwrap_or(local.date_naive())
    } else {
        local.date_naive()
    };
    paris_at(day.and_time(from)).unwrap_or(at)
}

fn hm((h, m): (u32, u32)) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN)
}

/// A Paris wall-clock time as an instant; in the hour skipped when clocks go
/// forward, the first instant after it.
fn paris_at(local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    Paris
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            Paris
                .from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// When the reminder of an appointment is sent: the day before at 10:00,
/// Paris time; `None` when that moment had passed at booking (a booking for
/// tomorrow morning needs no reminder of itself).
pub fn reminder_at(starts_at: DateTime<Utc>, booked_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let day = starts_at.with_timezone(&Paris).date_naive().pred_opt()?;
    let at = paris_at(day.and_time(hm((10, 0))))?;
    (at > booked_at).then_some(at)
}

/// An instant as the person reads it, Paris time: "12/03/2027 à 09h30" or
/// "12/03/2027 at 09:30".
pub fn paris_when(at: DateTime<Utc>, language: Language) -> String {
    let local = at.with_timezone(&Paris);
    match language {
        Language::Fr => local.format("%d/%m/%Y à %Hh%M").to_string(),
        Language::En => local.format("%d/%m/%Y at %H:%M").to_string(),
    }
}

/// One SMS: 160 characters of the GSM-7 default alphabet.
pub const SMS_MAX_CHARS: usize = 160;

/// The SMS of a notice. It names the person by first name only, with the
/// reference of the file (or report, or appointment) and `detail`: the date
/// the notice is about, or the access code; everything else goes by e-mail
/// or paper.
/// Always GSM-7 and one segment: a long first name is shortened first.
pub fn sms_text(
    kind: NoticeKind,
    language: Language,
    first_name: &str,
    reference: &str,
    detail: Option<&str>,
) -> String {
    let first = first_name.split_whitespace().next().unwrap_or_default();
    let candidates = [first.to_string(), initial(first), String::new()];
    let mut text = String::new();
    for name in candidates {
        text = gsm7(&sms_template(
            kind,
            language,
            &name,
            reference,
            detail.unwrap_or(""),
        ));
        if text.chars().count() <= SMS_MAX_CHARS {
            return text;
        }
    }
    text.chars().take(SMS_MAX_CHARS).collect()
}

fn initial(name: &str) -> String {
    name.chars()
        .next()
        .map(|c| format!("{c}."))
        .unwrap_or_default()
}

fn sms_template(kind: NoticeKind, language: Language, name: &str, r: &str, when: &str) -> String {
    use NoticeKind as K;
    let hello = match (language, name.is_empty()) {
        (Language::Fr, false) => format!("Bonjour {name}, "),
        (Language::Fr, true) => "Bonjour, ".to_string(),
        (Language::En, false) => format!("Hello {name}, "),
        (Language::En, true) => "Hello, ".to_string(),
    };
    let body = match language {
        Language::Fr => match kind {
            K::Receipt => format!("votre demande {r} est enregistrée. Gardez ce numéro."),
            K::DocumentsMissing => {
                format!("il manque des pièces au dossier {r}. Détails par e-mail ou courrier.")
            }
            K::AttestationIssued => format!(
                "une attestation de séjour est disponible pour le dossier {r}. Envoyée par e-mail ou courrier."
            ),
            K::Decision => {
                format!(
                    "une décision est prise sur le dossier {r}. Détails par e-mail ou courrier."
                )
            }
            K::Closed => format!("le dossier {r} est clos. Détails par e-mail ou courrier."),
            // The date is the person's own: by e-mail or on paper only.
            K::ExpiryAlert => {
                "votre titre de séjour expire bientôt. Détails par e-mail ou courrier.".to_string()
            }
            K::AppointmentBooked => format!("RDV en préfecture le {when}. Réf. {r}"),
            K::AppointmentMoved => format!("votre RDV est déplacé au {when}. Réf. {r}"),
            K::AppointmentCancelled => format!("votre RDV du {when} est annulé. Réf. {r}"),
            K::AppointmentReminder => format!("rappel : RDV en préfecture le {when}. Réf. {r}"),
            K::ReportReceived => {
                format!("votre signalement {r} est enregistré. Nous revenons vers vous.")
            }
            K::AlternativeOffered => format!(
                "une solution est proposée pour le signalement {r}. Détails par e-mail ou courrier."
            ),
            K::AccessCode => format!(
                "votre code pour consulter le dossier {r} : {when}. Ne le donnez à personne."
            ),
        },
        Language::En => match kind {
            K::Receipt => format!("your application {r} is recorded. Keep this number."),
            K::DocumentsMissing => {
                format!("documents are missing from file {r}. Details by e-mail or post.")
            }
            K::AttestationIssued => {
                format!("a residence attestation is ready for file {r}. Sent by e-mail or post.")
            }
            K::Decision => format!("a decision was made on file {r}. Details by e-mail or post."),
            K::Closed => format!("file {r} is closed. Details by e-mail or post."),
            K::ExpiryAlert => {
                "your residence permit expires soon. Details by e-mail or post.".to_string()
            }
            K::AppointmentBooked => format!("prefecture appointment on {when}. Ref. {r}"),
            K::AppointmentMoved => format!("your appointment is moved to {when}. Ref. {r}"),
            K::AppointmentCancelled => format!("your appointment of {when} is cancelled. Ref. {r}"),
            K::AppointmentReminder => {
                format!("reminder: prefecture appointment on {when}. Ref. {r}")
            }
            K::ReportReceived => format!("your report {r} is recorded. We will get back to you."),
            K::AlternativeOffered => {
                format!("a solution is offered for report {r}. Details by e-mail or post.")
            }
            K::AccessCode => {
                format!("your code to see file {r}: {when}. Do not give it to anyone.")
            }
        },
    };
    format!("{hello}{body}")
}

/// The GSM-7 default alphabet (3GPP TS 23.038) without its escape table:
/// each of these is one of the 160 characters of a segment.
const GSM7: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// `text` in the GSM-7 default alphabet: letters outside it lose their
/// accent, typographic marks become their plain forms, anything else a '?'.
pub fn gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if GSM7.contains(c) {
            out.push(c);
            continue;
        }
        let plain: &str = match c {
            'á' | 'â' | 'ã' | 'ā' => "a",
            'À' | 'Á' | 'Â' | 'Ã' => "A",
            'ç' | 'ć' | 'č' => "c",
            'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
            'È' | 'Ê' | 'Ë' => "E",
            'í' | 'î' | 'ï' => "i",
            'Ì' | 'Í' | 'Î' | 'Ï' => "I",
            'ó' | 'ô' | 'õ' | 'ō' => "o",
            'Ò' | 'Ó' | 'Ô' | 'Õ' => "O",
            'ú' | 'û' | 'ū' => "u",
            'Ù' | 'Ú' | 'Û' => "U",
            'ý' | 'ÿ' => "y",
            'œ' => "oe",
            'Œ' => "OE",
            '’' | '‘' | '`' => "'",
            '“' | '”' | '«' | '»' => "\"",
            '–' | '—' => "-",
            '…' => "...",
            '€' => "EUR",
            '\u{a0}' | '\u{202f}' | '\t' => " ",
            '[' | '{' => "(",
            ']' | '}' => ")",
            _ => "?",
        };
        out.push_str(plain);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn media_follow_what_the_person_gave() {
        use AnswerChannel as A;
        use Medium::*;
        let r = |email, phone, address, answer| Reach {
            email,
            phone,
            address,
            answer,
        };
        let table: &[(Reach, &[Medium])] = &[
            (r(true, true, true, Some(A::Email)), &[Email, Sms]),
            (r(true, false, true, Some(A::Email)), &[Email]),
            (r(false, true, true, Some(A::Sms)), &[Sms]),
            (r(true, true, true, Some(A::Post)), &[Email, Sms, Paper]),
            (r(false, false, true, Some(A::Post)), &[Paper]),
            // Nothing electronic: paper, whatever was asked.
            (r(false, false, true, Some(A::Email)), &[Paper]),
            (r(false, false, true, None), &[Paper]),
            // An appointment booked with a phone only: no address, no paper.
            (r(false, true, false, None), &[Sms]),
            (r(false, false, false, Some(A::Post)), &[]),
        ];
        for (reach, expected) in table {
            assert_eq!(media(*reach), *expected, "{reach:?}");
        }
    }

    #[test]
    fn paper_follows_only_when_every_electronic_medium_failed_for_good() {
        use DeliveryState::*;
        use Medium::*;
        type States = &'static [(Medium, DeliveryState)];
        let table: &[(States, bool, bool)] = &[
            (&[(Email, Failed), (Sms, Failed)], true, true),
            (&[(Email, Failed)], true, true),
            (&[(Email, Failed), (Sms, Delivered)], true, false),
            (&[(Email, Failed), (Sms, Queued)], true, false),
            (&[(Email, Failed), (Paper, Queued)], true, false),
            (&[(Email, Failed)], false, false),
            (&[], true, false),
        ];
        for (states, address, expected) in table {
            assert_eq!(paper_follows(states, *address), *expected, "{states:?}");
        }
    }

    #[test]
    fn retries_double_up_to_an_hour() {
        let base = Duration::seconds(5);
        let table = [
            (0, 5),
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (10, 2560),
            (11, 3600),
            (40, 3600),
        ];
        for (attempts, seconds) in table {
            assert_eq!(
                retry_delay(attempts, base),
                Duration::seconds(seconds),
                "{attempts}"
            );
        }
    }

    #[test]
    fn no_sms_between_nine_at_night_and_eight_in_the_morning_paris_time() {
        let table = [
            // Winter (UTC+1).
            ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z"),
            ("2026-12-01T07:00:00Z", "2026-12-01T07:00:00Z"), // 08:00 Paris
            ("2026-12-01T06:59:59Z", "2026-12-01T07:00:00Z"),
            ("2026-12-01T19:59:59Z", "2026-12-01T19:59:59Z"), // 20:59:59
            ("2026-12-01T20:00:00Z", "2026-12-02T07:00:00Z"), // 21:00 -> next morning
            ("2026-12-31T23:30:00Z", "2027-01-01T07:00:00Z"), // past midnight Paris
            // Summer (UTC+2).
            ("2027-07-14T05:30:00Z", "2027-07-14T06:00:00Z"),
            ("2027-07-14T19:00:00Z", "2027-07-15T06:00:00Z"),
            // The night clocks go forward (28 March 2027).
            ("2027-03-27T21:00:00Z", "2027-03-28T06:00:00Z"),
        ];
        for (at, expected) in table {
            assert_eq!(sms_allowed_from(utc(at)), utc(expected), "{at}");
        }
    }

    #[test]
    fn the_reminder_goes_the_day_before_at_ten_unless_that_is_past() {
        let table = [
            (
                "2027-02-10T08:30:00Z",
                "2027-01-20T10:00:00Z",
                Some("2027-02-09T09:00:00Z"),
            ),
            (
                "2027-07-01T07:00:00Z",
                "2027-06-01T10:00:00Z",
                Some("2027-06-30T08:00:00Z"),
            ),
            // Booked the evening before: no reminder.
            ("2027-02-10T08:30:00Z", "2027-02-09T17:00:00Z", None),
        ];
        for (starts, booked, expected) in table {
            assert_eq!(
                reminder_at(utc(starts), utc(booked)),
                expected.map(utc),
                "{starts}"
            );
        }
    }

    #[test]
    fn sms_are_one_gsm7_segment_and_name_no_more_than_the_first_name() {
        let long = "Maximiliana-Esperanza-Dolores-Concepción-Guadalupe-Alejandrina-Fernanda";
        for kind in NoticeKind::ALL {
            for language in Language::ALL {
                for name in ["Amina Zoé", long, ""] {
                    let text = sms_text(
                        *kind,
                        *language,
                        name,
                        "W-2026-ABCD-EFGH-K",
                        Some("12/03/2027 à 09h30"),
                    );
                    assert!(text.chars().count() <= SMS_MAX_CHARS, "{text}");
                    assert!(text.chars().all(|c| GSM7.contains(c)), "{text}");
                    assert!(!text.contains("Zo"), "only the first name: {text}");
                }
            }
        }
        let t = sms_text(
            NoticeKind::AppointmentReminder,
            Language::Fr,
            "Zoë",
            "A-1",
            Some("12/03/2027 à 09h30"),
        );
        assert_eq!(
            t,
            "Bonjour Zoe, rappel : RDV en préfecture le 12/03/2027 à 09h30. Réf. A-1"
        );
    }

    #[test]
    fn an_access_code_sms_carries_the_whole_code_whatever_the_name() {
        let long = "Maximiliana-Esperanza-Dolores-Concepción-Guadalupe-Alejandrina-Fernanda";
        for language in Language::ALL {
            for name in ["Amina", long, ""] {
                let text = sms_text(
                    NoticeKind::AccessCode,
                    *language,
                    name,
                    "W26-ABCD-EFGH-K",
                    Some("048213"),
                );
                assert!(
                    text.contains("W26-ABCD-EFGH-K : 048213")
                        || text.contains("W26-ABCD-EFGH-K: 048213"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn gsm7_keeps_its_own_letters_and_plains_the_others() {
        let table = [
            ("déjà vu", "déjà vu"),
            ("être où ça", "etre où ca"),
            ("l’œuf «bio» – 5 €", "l'oeuf \"bio\" - 5 EUR"),
            ("漢", "?"),
        ];
        for (text, expected) in table {
            assert_eq!(gsm7(text), expected);
        }
    }

    #[test]
    fn events_that_call_for_a_notice() {
        let table = [
            ("found_complete", Some(NoticeKind::Receipt)),
            ("found_incomplete", Some(NoticeKind::Receipt)),
            ("documents_requested", Some(NoticeKind::DocumentsMissing)),
            ("attestation_issued", Some(NoticeKind::AttestationIssued)),
            ("decided_unfavourable", Some(NoticeKind::Decision)),
            ("withdrawn", Some(NoticeKind::Closed)),
            ("taken", None),
            ("released", None),
        ];
        for (kind, expected) in table {
            assert_eq!(case_notice(kind), expected, "{kind}");
        }
        assert_eq!(report_notice("opened"), Some(NoticeKind::ReportReceived));
        assert_eq!(report_notice("closed"), None);
        assert_eq!(
            appointment_notice("moved"),
            Some(NoticeKind::AppointmentMoved)
        );
        assert_eq!(appointment_notice("attended"), None);
    }
}
