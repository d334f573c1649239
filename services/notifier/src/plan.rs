//! From an event to the messages it calls for: one per medium the person
//! gave, reminders for appointments, and the reminders a move or a
//! cancellation makes pointless.

use chrono::{DateTime, Utc};
use guichet_dossier::notice::{self, Medium, NoticeKind};
use guichet_proto::{convert, v1 as pb};

use crate::event::{Event, EventError, Person};
use crate::store::NewNotice;

/// What one event asks of the notifier's table.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub notices: Vec<NewNotice>,
    /// An appointment whose queued reminders are cancelled, but the one
    /// with this key.
    pub cancel_reminders: Option<(String, String)>,
    /// An appointment's step and its instant: a step older than one already
    /// planned (delivered out of order after a retry) is stale and skipped.
    pub appointment_step: Option<(String, DateTime<Utc>)>,
}

pub fn plan(routing_key: &str, body: &[u8], now: DateTime<Utc>) -> Result<Plan, EventError> {
    let event = Event::decode(routing_key, body)?;
    let Some(kind) = event.notice() else {
        return Ok(Plan::default());
    };
    let person = event.person();
    let mut media = notice::media(person.reach());
    if let Event::Report { report, .. } = &event
        && report
            .alternative
            .as_ref()
            .is_some_and(|a| a.kind == pb::AlternativeKind::PaperKit as i32)
    {
        // The kit itself is the letter: the mailroom posts it.
        media.retain(|m| *m != Medium::Paper);
    }
    if let Event::Case(e) = &event
        && kind == NoticeKind::Receipt
        && e.channel == pb::Channel::Postal as i32
        && e.missing.is_empty()
    {
        // The mailroom posted the receipt when it keyed the envelope; a
        // second letter would say nothing more (one listing what is
        // missing does).
        media.retain(|m| *m != Medium::Paper);
    }
    let event_at = event.at().unwrap_or(now);
    let make = |kind: NoticeKind, key: &str, medium: Medium, not_before: DateTime<Utc>| NewNotice {
        notice_key: key.to_string(),
        medium,
        kind,
        subject_ref: event.subject_ref(),
        recipient: recipient(&person, medium),
        language: person.language.as_str().to_string(),
        routing_key: routing_key.to_string(),
        event: body.to_vec(),
        has_address: !person.address.is_empty(),
        not_before: if medium == Medium::Sms {
            notice::sms_allowed_from(not_before)
        } else {
            not_before
        },
        event_at,
    };
    let key = event.notice_key();
    let mut p = Plan {
        notices: media.iter().map(|m| make(kind, &key, *m, now)).collect(),
        cancel_reminders: None,
        appointment_step: None,
    };
    if let Event::Appointment { appointment, .. } = &event {
        p.appointment_step = Some((appointment.id.clone(), event_at));
        let reminder_key = Event::reminder_key(appointment);
        match kind {
            NoticeKind::AppointmentBooked | NoticeKind::AppointmentMoved => {
                let starts = appointment
                    .starts_at
                    .as_ref()
                    .and_then(convert::timestamp_from_pb);
                if let Some(at) = starts.and_then(|s| notice::reminder_at(s, now)) {
                    p.notices.extend(
                        media
                            .iter()
                            .filter(|m| **m != Medium::Paper)
                            .map(|m| make(NoticeKind::AppointmentReminder, &reminder_key, *m, at)),
                    );
                }
                p.cancel_reminders = Some((appointment.id.clone(), reminder_key));
            }
            _ => p.cancel_reminders = Some((appointment.id.clone(), String::new())),
        }
    }
    Ok(p)
}

fn recipient(person: &Person, medium: Medium) -> String {
    match medium {
        Medium::Email => person.email.clone().unwrap_or_default(),
        Medium::Sms => person.phone.clone().unwrap_or_default(),
        Medium::Paper => person.address.first().cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn contact(email: &str, phone: &str, answer: pb::AnswerChannel) -> pb::Contact {
        pb::Contact {
            email: email.into(),
            phone: phone.into(),
            address: Some(pb::PostalAddress {
                line1: "3 rue de Paris".into(),
                postal_code: "59000".into(),
                city: "Lille".into(),
                country: "FR".into(),
                ..Default::default()
            }),
            answer_channel: answer as i32,
            language: "en".into(),
        }
    }

    #[test]
    fn a_case_event_goes_by_every_medium_the_person_gave() {
        let event = pb::CaseEvent {
            reference: "W-1".into(),
            kind: "attestation_issued".into(),
            contact: Some(contact(
                "a@example.org",
                "+33612345678",
                pb::AnswerChannel::Email,
            )),
            at: Some(convert::timestamp_to_pb(utc("2026-12-01T22:00:00Z"))),
            ..Default::default()
        };
        let now = utc("2026-12-01T22:00:01Z");
        let p = plan("case.attestation_issued.ccc", &event.encode_to_vec(), now).unwrap();
        let got: Vec<_> = p
            .notices
            .iter()
            .map(|n| {
                (
                    n.medium,
                    n.recipient.as_str(),
                    n.not_before,
                    n.language.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Medium::Email, "a@example.org", now, "en"),
                // 23:00 in Paris: the SMS waits for 08:00.
                (
                    Medium::Sms,
                    "+33612345678",
                    utc("2026-12-02T07:00:00Z"),
                    "en"
                ),
            ]
        );
        assert!(
            p.notices
                .iter()
                .all(|n| n.notice_key == p.notices[0].notice_key)
        );

        let mut by_post = event.clone();
        by_post.contact = Some(contact("", "", pb::AnswerChannel::Post));
        let p = plan("case.attestation_issued.ccc", &by_post.encode_to_vec(), now).unwrap();
        assert_eq!(p.notices.len(), 1);
        assert_eq!(
            (p.notices[0].medium, p.notices[0].recipient.as_str()),
            (Medium::Paper, "3 rue de Paris")
        );
    }

    #[test]
    fn steps_nobody_is_told_of_plan_nothing() {
        let event = pb::CaseEvent {
            kind: "taken".into(),
            ..Default::default()
        };
        let p = plan("case.taken.web", &event.encode_to_vec(), Utc::now()).unwrap();
        assert_eq!(p, Plan::default());
        assert!(plan("case.taken.web", b"\xff\xff", Utc::now()).is_err());
        assert!(plan("weather.rain", b"", Utc::now()).is_err());
    }

    #[test]
    fn a_booking_plans_its_reminder_and_a_move_replaces_it() {
        let mut a = pb::Appointment {
            id: "apt-1".into(),
            site_id: "59-lille".into(),
            starts_at: Some(convert::timestamp_to_pb(utc("2027-02-10T08:30:00Z"))),
            person: Some(pb::Person {
                given_names: "Amina".into(),
                phone: "+33612345678".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let now = utc("2027-01-20T10:00:00Z");
        let p = plan("appointment.booked.59-lille", &a.encode_to_vec(), now).unwrap();
        let kinds: Vec<_> = p
            .notices
            .iter()
            .map(|n| (n.kind, n.medium, n.not_before))
            .collect();
        assert_eq!(
            kinds,
            [
                (NoticeKind::AppointmentBooked, Medium::Sms, now),
                (
                    NoticeKind::AppointmentReminder,
                    Medium::Sms,
                    utc("2027-02-09T09:00:00Z")
                ),
            ]
        );
        let first_reminder = p.notices[1].notice_key.clone();
        assert_eq!(
            p.cancel_reminders,
            Some(("apt-1".into(), first_reminder.clone()))
        );

        a.starts_at = Some(convert::timestamp_to_pb(utc("2027-02-12T08:30:00Z")));
        let p = plan("appointment.moved.59-lille", &a.encode_to_vec(), now).unwrap();
        let (_, keep) = p.cancel_reminders.unwrap();
        assert_ne!(keep, first_reminder);
        assert_eq!(p.notices[1].notice_key, keep);

        let p = plan("appointment.cancelled.59-lille", &a.encode_to_vec(), now).unwrap();
        assert_eq!(p.cancel_reminders, Some(("apt-1".into(), String::new())));
        assert_eq!(
            p.appointment_step.map(|(id, _)| id),
            Some("apt-1".to_string())
        );
        assert!(
            p.notices
                .iter()
                .all(|n| n.kind == NoticeKind::AppointmentCancelled)
        );
    }
}
