//! The events a person hears of, as they come off `notifier.case-events`:
//! what each is about, whom it concerns, and the key that makes it one
//! notice however often it is delivered.

use guichet_dossier::notice::{self, NoticeKind, Reach};
use guichet_dossier::{AnswerChannel, Language};
use guichet_proto::{convert, v1 as pb};
use prost::Message as _;

/// One event, decoded by the family its routing key names.
#[derive(Debug, Clone)]
pub enum Event {
    /// `case.<kind>.<channel>`
    Case(pb::CaseEvent),
    /// `title.expiry_alert.<answer channel>`
    Title(pb::TitleExpiryAlert),
    /// `report.<step>.<prefecture>`
    Report { step: String, report: pb::Report },
    /// `appointment.<step>.<site>`
    Appointment {
        step: String,
        appointment: pb::Appointment,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("routing key {0:?} is not one the notifier knows")]
    UnknownKey(String),
    #[error("the body of {0:?} is not its message")]
    Undecodable(String, #[source] prost::DecodeError),
}

impl Event {
    pub fn decode(routing_key: &str, body: &[u8]) -> Result<Self, EventError> {
        let mut parts = routing_key.split('.');
        let family = parts.next().unwrap_or_default();
        let step = parts.next().unwrap_or_default().to_string();
        let bad = |e| EventError::Undecodable(routing_key.to_string(), e);
        Ok(match family {
            "case" => Event::Case(pb::CaseEvent::decode(body).map_err(bad)?),
            "title" => Event::Title(pb::TitleExpiryAlert::decode(body).map_err(bad)?),
            "report" => Event::Report {
                step,
                report: pb::Report::decode(body).map_err(bad)?,
            },
            "appointment" => Event::Appointment {
                step,
                appointment: pb::Appointment::decode(body).map_err(bad)?,
            },
            _ => return Err(EventError::UnknownKey(routing_key.to_string())),
        })
    }

    /// The notice this event calls for, if any.
    pub fn notice(&self) -> Option<NoticeKind> {
        match self {
            Event::Case(e) => notice::case_notice(&e.kind),
            Event::Title(_) => Some(NoticeKind::ExpiryAlert),
            Event::Report { step, .. } => notice::report_notice(step),
            Event::Appointment { step, .. } => notice::appointment_notice(step),
        }
    }

    /// What the notice is about: a dossier reference, a report id, an
    /// appointment id, or the title's last characters.
    pub fn subject_ref(&self) -> String {
        match self {
            Event::Case(e) => e.reference.clone(),
            Event::Title(t) => format!("title-{}", t.title_key),
            Event::Report { report, .. } => report.id.clone(),
            Event::Appointment { appointment, .. } => appointment.id.clone(),
        }
    }

    /// One notice per what happened, whatever the message id: the same case
    /// step at the same instant, the same title alert offset, the same
    /// report step, the same appointment step for the same time.
    pub fn notice_key(&self) -> String {
        match self {
            Event::Case(e) => format!("case:{}:{}:{}", e.reference, e.kind, stamp(e.at.as_ref())),
            Event::Title(t) => format!(
                "title:{}:{}:{}",
                t.title_key,
                t.expires_on.map(date_text).unwrap_or_default(),
                t.offset_days
            ),
            Event::Report { step, report } => {
                let at = report
                    .history
                    .iter()
                    .rev()
                    .find(|e| &e.kind == step)
                    .and_then(|e| e.at.as_ref());
                format!("report:{}:{step}:{}", report.id, stamp(at))
            }
            // The step's own instant: a move back to an earlier time is a
            // new notice, not the first booking's again.
            Event::Appointment { step, appointment } => format!(
                "appointment:{}:{step}:{}:{}",
                appointment.id,
                stamp(appointment.starts_at.as_ref()),
                stamp(appointment.changed_at.as_ref())
            ),
        }
    }

    /// The key of the reminder an appointment at this time gets.
    pub fn reminder_key(appointment: &pb::Appointment) -> String {
        format!(
            "appointment:{}:reminder:{}",
            appointment.id,
            stamp(appointment.starts_at.as_ref())
        )
    }

    pub fn person(&self) -> Person {
        let contact = |c: Option<&pb::Contact>| c.cloned().unwrap_or_default();
        match self {
            Event::Case(e) => {
                Person::of(&e.given_names, &e.family_name, contact(e.contact.as_ref()))
            }
            Event::Title(t) => {
                Person::of(&t.given_names, &t.family_name, contact(t.contact.as_ref()))
            }
            Event::Report { report, .. } => {
                let mut c = contact(report.contact.as_ref());
                // A paper kit goes where the call centre was told to send it.
                if let Some(to) = report
                    .alternative
                    .as_ref()
                    .and_then(|a| a.kit_sent_to.clone())
                    .filter(|a| !a.line1.trim().is_empty())
                {
                    c.address = Some(to);
                }
                Person::of(&report.given_names, &report.family_name, c)
            }
            Event::Appointment { appointment, .. } => {
                let p = appointment.person.clone().unwrap_or_default();
                Person::of(
                    &p.given_names,
                    &p.family_name,
                    pb::Contact {
                        email: p.email,
                        phone: p.phone,
                        ..Default::default()
                    },
                )
            }
        }
    }

    /// When it happened, for the time from event to message.
    pub fn at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let t = match self {
            Event::Case(e) => e.at.as_ref(),
            Event::Title(_) => None,
            Event::Report { step, report } => report
                .history
                .iter()
                .rev()
                .find(|e| &e.kind == step)
                .and_then(|e| e.at.as_ref()),
            Event::Appointment { appointment, .. } => appointment
                .changed_at
                .as_ref()
                .or(appointment.booked_at.as_ref()),
        };
        t.and_then(convert::timestamp_from_pb)
    }
}

/// Whom a notice goes to.
#[derive(Debug, Clone)]
pub struct Person {
    pub given_names: String,
    pub family_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Lines of the address block after the name; empty: no address.
    pub address: Vec<String>,
    pub answer: Option<AnswerChannel>,
    pub language: Language,
}

impl Person {
    fn of(given_names: &str, family_name: &str, c: pb::Contact) -> Self {
        let present = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let address = c
            .address
            .filter(|a| !a.line1.trim().is_empty() && !a.city.trim().is_empty())
            .map(|a| {
                [
                    a.line1.trim().to_string(),
                    a.line2.trim().to_string(),
                    format!("{} {}", a.postal_code.trim(), a.city.trim())
                        .trim()
                        .to_string(),
                ]
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect()
            })
            .unwrap_or_default();
        Person {
            given_names: given_names.trim().to_string(),
            family_name: family_name.trim().to_string(),
            email: present(&c.email).filter(|e| e.contains('@')),
            // Appointments and reports keep the number as it was said;
            // an SMS needs it in E.164, and a number that is none gets none.
            phone: guichet_dossier::filing::normalize_phone(c.phone.trim()),
            address,
            answer: convert::answer_channel_text(c.answer_channel)
                .and_then(|a| AnswerChannel::parse(&a)),
            language: Language::parse(c.language.trim()).unwrap_or(Language::Fr),
        }
    }

    pub fn reach(&self) -> Reach {
        Reach {
            email: self.email.is_some(),
            phone: self.phone.is_some(),
            address: !self.address.is_empty(),
            answer: self.answer,
        }
    }

    pub fn first_name(&self) -> &str {
        self.given_names
            .split_whitespace()
            .next()
            .unwrap_or_default()
    }

    /// "Amina BENALI", as a letter's first line or an e-mail's greeting.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_names, self.family_name.to_uppercase())
            .trim()
            .to_string()
    }
}

fn stamp(t: Option<&prost_types::Timestamp>) -> String {
    t.map(|t| format!("{}.{:09}", t.seconds, t.nanos))
        .unwrap_or_default()
}

pub fn date_text(d: pb::CalendarDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}
