//! The code a person asks for to see their own file: sent at once by e-mail
//! and SMS to the contact on that file, never queued (they are waiting for
//! it, and a code that arrives late is useless) and never kept: the rows
//! recorded say it went and how, not what it said.

use std::time::Duration as StdDuration;

use guichet_dossier::Language;
use guichet_dossier::notice::{self, Medium, NoticeKind};
use guichet_kit::clock::SharedClock;
use guichet_kit::{ErrorKind, ServiceError};
use guichet_proto::v1 as pb;
use lettre::message::Mailbox;

use crate::email::{self, Mailer};
use crate::figures::{MessageLabels, NotifierFigures};
use crate::sms::SmsProvider;
use crate::store::{NewNotice, Store};
use crate::templates;

/// How long one medium may take before the code is said not to have gone
/// by it: the person is waiting on the page.
const SEND_TIMEOUT: StdDuration = StdDuration::from_secs(15);

#[derive(Clone)]
pub struct CodeSender {
    pub store: Store,
    pub mailer: Mailer,
    pub from: Mailbox,
    pub sms: SmsProvider,
    pub clock: SharedClock,
    pub figures: NotifierFigures,
}

/// A request checked: the code is six digits and goes somewhere.
struct Checked {
    reference: String,
    code: String,
    minutes: u32,
    email: Option<String>,
    phone: Option<String>,
    language: Language,
}

fn check(r: pb::SendCodeRequest) -> Result<Checked, ServiceError> {
    let bad = |field: &str, why: &str| ServiceError::on_field(ErrorKind::InvalidInput, field, why);
    let reference = r.reference.trim().to_string();
    if reference.is_empty() || reference.len() > 100 {
        return Err(bad("reference", "is required (100 characters at most)"));
    }
    if r.code.len() != 6 || !r.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("code", "must be six digits"));
    }
    if !(1..=60).contains(&r.valid_minutes) {
        return Err(bad("valid_minutes", "must be between 1 and 60"));
    }
    let given = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let (email, phone) = (given(r.email), given(r.phone));
    if email.is_none() && phone.is_none() {
        return Err(bad(
            "email",
            "an e-mail address or a mobile number is needed to send a code",
        ));
    }
    Ok(Checked {
        reference,
        code: r.code,
        minutes: r.valid_minutes,
        email,
        phone,
        language: Language::parse(r.language.trim()).unwrap_or(Language::Fr),
    })
}

impl CodeSender {
    /// Sends the code by every medium given; the media that took it.
    pub async fn send(&self, request: pb::SendCodeRequest) -> Result<Vec<Medium>, ServiceError> {
        let c = check(request)?;
        let mut took = Vec::new();
        if let Some(to) = &c.email {
            let sent = self.email(&c, to).await;
            self.record(&c, Medium::Email, to, sent.clone()).await?;
            if sent.is_ok() {
                took.push(Medium::Email);
            }
        }
        if let Some(to) = &c.phone {
            let text = notice::sms_text(
                NoticeKind::AccessCode,
                c.language,
                "",
                &c.reference,
                Some(&c.code),
            );
            let sent = match tokio::time::timeout(SEND_TIMEOUT, self.sms.send(to, &text)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the SMS provider did not answer in time".to_string()),
            };
            self.record(&c, Medium::Sms, to, sent.clone()).await?;
            if sent.is_ok() {
                took.push(Medium::Sms);
            }
        }
        Ok(took)
    }

    async fn email(&self, c: &Checked, to: &str) -> Result<(), String> {
        let (subject, paragraphs) =
            templates::access_code(c.language, &c.reference, &c.code, c.minutes);
        let message = email::message(
            &self.from,
            to,
            &subject,
            templates::plain_email_text(c.language, &paragraphs),
            templates::plain_email_html(c.language, &subject, &paragraphs),
            None,
        )
        .map_err(|e| e.reason())?;
        match tokio::time::timeout(SEND_TIMEOUT, self.mailer.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.reason()),
            Err(_) => Err("the mail relay did not answer in time".to_string()),
        }
    }

    /// One row per medium, as it went; the code itself is not kept.
    async fn record(
        &self,
        c: &Checked,
        medium: Medium,
        to: &str,
        sent: Result<(), String>,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let outcome = if sent.is_ok() { "sent" } else { "failed" };
        if let Err(why) = &sent {
            tracing::warn!(reference = %c.reference, %medium, %why, "an access code could not be sent");
        }
        self.figures
            .messages
            .get_or_create(&MessageLabels {
                medium: medium.as_str(),
                kind: NoticeKind::AccessCode.as_str(),
                outcome,
            })
            .inc();
        let notice = NewNotice {
            notice_key: format!("access_code:{}:{}", c.reference, uuid::Uuid::now_v7()),
            medium,
            kind: NoticeKind::AccessCode,
            subject_ref: c.reference.clone(),
            recipient: to.to_string(),
            language: c.language.as_str().to_string(),
            routing_key: String::new(),
            event: Vec::new(),
            has_address: false,
            not_before: now,
            event_at: now,
        };
        self.store
            .record_immediate(&notice, sent.err(), now)
            .await
            .map_err(|e| ServiceError::database("notifier", "recording an access code", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_request_names_what_is_wrong() {
        let good = pb::SendCodeRequest {
            reference: "W26-AAAA-BBBB-C".into(),
            code: "048213".into(),
            valid_minutes: 15,
            email: "a@example.org".into(),
            phone: String::new(),
            language: "en".into(),
        };
        let c = check(good.clone()).expect("a good request");
        assert_eq!(c.language, Language::En);
        assert_eq!(c.phone, None);
        type Spoil = fn(&mut pb::SendCodeRequest);
        let table: [(&str, Spoil); 5] = [
            ("reference", |r| r.reference = " ".into()),
            ("code", |r| r.code = "12345".into()),
            ("code", |r| r.code = "12345a".into()),
            ("valid_minutes", |r| r.valid_minutes = 0),
            ("email", |r| r.email = String::new()),
        ];
        for (field, spoil) in table {
            let mut r = good.clone();
            spoil(&mut r);
            let e = check(r).err().expect("refused");
            assert_eq!(e.violations[0].field, field, "{e:?}");
        }
    }
}
