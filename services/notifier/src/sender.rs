//! Sends what is due: e-mail to the relay, SMS to the provider, letters to
//! the mailroom's print list (a `LetterRequest` through the outbox). A try
//! that fails for now is queued again later; one that fails for good makes
//! paper follow when every electronic message of the notice failed.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use futures_util::{FutureExt as _, StreamExt as _};
use guichet_dossier::Language;
use guichet_dossier::notice::{self, DeliveryState, Medium, NoticeKind};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::clock::SharedClock;
use guichet_kit::links::LinkKey;
use guichet_kit::pdf::{LetterText, sealed_letter_pdf};
use guichet_kit::seal::KeySet;
use guichet_kit::shutdown::Shutdown;
use guichet_kit::sql::Stmt;
use guichet_proto::v1 as pb;
use lettre::message::Mailbox;
use prost::Message as _;
use tokio::sync::Notify;

use crate::email::{self, Attached, Mailer};
use crate::event::{Event, Person};
use crate::figures::{MediumLabels, MessageLabels, NotifierFigures};
use crate::sms::{Report, SmsProvider};
use crate::store::{self, NewNotice, NoticeRow, Store};
use crate::templates::{self, Rendered};

/// How many due messages one pass takes.
const BATCH: i64 = 32;
/// How long a sender holds a message it is sending.
const LEASE_SECONDS: i64 = 300;
/// SMS whose report is still awaited after this long are left as sent.
const REPORT_WINDOW_HOURS: i64 = 48;
/// Messages sent are marked so together, at the end of a pass or once the
/// first has waited this long: a crash between a send and its mark sends
/// the message again when its lease runs out, so the wait stays short.
const MARK_WITHIN: StdDuration = StdDuration::from_secs(1);
/// Messages of a pass sent at once. An e-mail waits for about eight
/// answers from the relay, an SMS for one from the provider: one at a
/// time, the notifier mostly waits on the network (a relay 2 ms away took
/// 37 e-mails a second, eight at once about 170: BENCHMARKS.md). Each
/// of the eight uses a connection the relay keeps (`relay::Relay`).
pub(crate) const SENDS_AT_ONCE: usize = 8;

#[derive(Clone)]
pub struct Sender {
    pub store: Store,
    pub mailer: Mailer,
    pub from: Mailbox,
    pub sms: SmsProvider,
    pub clock: SharedClock,
    pub retry_base: Duration,
    pub figures: NotifierFigures,
    /// Rung when the consumer queued messages.
    pub wake: Arc<Notify>,
    /// Rung when a letter is in the outbox.
    pub relay: Arc<Notify>,
    /// Signs the person's own link to an appointment or a report.
    pub links: Arc<LinkKey>,
    /// Signs the documents' 2D codes.
    pub keys: Arc<KeySet>,
}

/// A message sent, to be marked so with the others of its pass.
struct Sent {
    mark: store::SentMark,
    /// A paper one's request to the mailroom, put in the outbox with the mark.
    letter: Option<OutgoingMessage>,
    medium: Medium,
    kind: NoticeKind,
    event_at: DateTime<Utc>,
}

/// What a pass sent and has not marked so yet.
#[derive(Default)]
struct Unmarked {
    marks: Vec<store::SentMark>,
    letters: Vec<OutgoingMessage>,
    /// For the figures, once marked: medium, kind, when the event was.
    figures: Vec<(Medium, NoticeKind, DateTime<Utc>)>,
    /// When the first of them went.
    since: Option<Instant>,
}

impl Unmarked {
    fn push(&mut self, s: Sent) {
        self.since.get_or_insert_with(Instant::now);
        self.marks.push(s.mark);
        self.letters.extend(s.letter);
        self.figures.push((s.medium, s.kind, s.event_at));
    }
}

/// How one try went.
enum Tried {
    Sent {
        provider_id: Option<String>,
        delivered: bool,
    },
    /// Not now (SMS at night): queued again at this time, not a failure.
    Later(DateTime<Utc>),
    Failed {
        why: String,
        permanent: bool,
    },
}

impl Sender {
    pub async fn run(self, shutdown: Shutdown) {
        let mut reports = tokio::time::interval(StdDuration::from_secs(20));
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let sent = match self.send_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the messages due; trying again");
                    0
                }
            };
            if sent > 0 {
                // A backlog (the night's SMS at 08:00) still lets reports in.
                if reports.tick().now_or_never().is_some()
                    && let Err(e) = self.ask_reports().await
                {
                    tracing::warn!(error = %e, "cannot ask the SMS provider for reports");
                }
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                _ = reports.tick() => {
                    if let Err(e) = self.ask_reports().await {
                        tracing::warn!(error = %e, "cannot ask the SMS provider for reports");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over the messages due; how many were tried.
    pub async fn send_due(&self) -> Result<usize, sqlx::Error> {
        let now = self.clock.now();
        let held_until = lease_end(now);
        let due = self.store.lease_due(now, held_until, BATCH).await?;
        let mut sent = Unmarked::default();
        let tried = self.send_leased(due, held_until, &mut sent).await;
        // Whatever ended the pass, what went out is marked so.
        self.mark_sent(sent).await?;
        tried
    }

    /// Tries each message leased until `held_until`, `SENDS_AT_ONCE` at a
    /// time; those sent join `sent`, marked once the first has waited
    /// `MARK_WITHIN`. A database error ends the pass once the sends under
    /// way are done, so that what they sent is marked.
    async fn send_leased(
        &self,
        due: Vec<NoticeRow>,
        held_until: DateTime<Utc>,
        sent: &mut Unmarked,
    ) -> Result<usize, sqlx::Error> {
        let lease = Duration::seconds(LEASE_SECONDS);
        let mut tries = futures_util::stream::iter(due)
            .map(|row| async move {
                // Slow sends before it (a relay that times out) must not let
                // its lease run out under it: past half the batch's lease,
                // each message still to send gets its own.
                let now = self.clock.now();
                if now + lease / 2 > held_until
                    && !self
                        .store
                        .extend_lease(&row.id, held_until, lease_end(now))
                        .await?
                {
                    return Ok(None);
                }
                self.try_one(&row).await.map(Some)
            })
            .buffer_unordered(SENDS_AT_ONCE);
        let (mut tried, mut failed) = (0, None);
        while let Some(outcome) = tries.next().await {
            match outcome {
                Ok(None) => {}
                Ok(Some(one)) => {
                    tried += 1;
                    if let Some(s) = one {
                        sent.push(s);
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
            if sent.since.is_some_and(|t| t.elapsed() >= MARK_WITHIN) {
                self.mark_sent(std::mem::take(sent)).await?;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(tried),
        }
    }

    /// Sends one message; what was sent is returned to be marked, any
    /// other outcome is recorded here.
    async fn try_one(&self, row: &NoticeRow) -> Result<Option<Sent>, sqlx::Error> {
        let now = self.clock.now();
        let (medium, kind) = (row.medium, row.kind);
        let rendered = Event::decode(&row.routing_key, &row.event).ok().map(|e| {
            let person = e.person();
            let r = templates::render(kind, &e, &person).map(|mut r| {
                // Whoever booked for them (the call centre, a desk), the
                // person gets what lets them see, move or cancel it.
                if let Some(of) = templates::follow_up_of(kind) {
                    r.paragraphs.push(templates::follow_up(
                        person.language,
                        of,
                        &self.links.secret(of, &row.subject_ref),
                    ));
                }
                r
            });
            (e, person, r)
        });
        let mut letter = None;
        let tried = match rendered {
            Some((event, person, Some(r))) => match medium {
                Medium::Email => self.email(row, &person, &r).await,
                Medium::Sms => self.sms(row, kind, &person, &r, now).await,
                Medium::Paper => {
                    letter = Some(self.letter(row, &event, &person, &r, kind));
                    Tried::Sent {
                        provider_id: None,
                        delivered: false,
                    }
                }
            },
            _ => Tried::Failed {
                why: "the event cannot be read back or lacks what the notice says".into(),
                permanent: true,
            },
        };
        if let Tried::Sent {
            provider_id,
            delivered,
        } = tried
        {
            return Ok(Some(Sent {
                mark: store::SentMark {
                    id: row.id.clone(),
                    at: now,
                    provider_id,
                    delivered,
                },
                letter,
                medium,
                kind,
                event_at: row.event_at,
            }));
        }
        self.record(row, medium, kind, tried, now).await?;
        Ok(None)
    }

    /// Marks the messages of `sent` so, in one transaction. Sent is sent:
    /// the mark is tried again rather than the messages, which a lost mark
    /// would send a second time.
    async fn mark_sent(&self, sent: Unmarked) -> Result<(), sqlx::Error> {
        if sent.marks.is_empty() {
            return Ok(());
        }
        let mut tries = 0u64;
        while let Err(e) = self.store.mark_sent(&sent.marks, &sent.letters).await {
            tries += 1;
            if tries >= 10 {
                return Err(e);
            }
            tracing::warn!(error = %e, "cannot record messages as sent yet; trying again");
            tokio::time::sleep(StdDuration::from_millis(500 * tries)).await;
        }
        if !sent.letters.is_empty() {
            self.relay.notify_one();
        }
        for (mark, (medium, kind, event_at)) in sent.marks.iter().zip(sent.figures) {
            let outcome = if mark.delivered { "delivered" } else { "sent" };
            self.count(medium, kind, outcome);
            self.observe_sent(event_at, medium, mark.at);
        }
        Ok(())
    }

    async fn email(&self, row: &NoticeRow, person: &Person, r: &Rendered) -> Tried {
        let attached = r.document.as_ref().map(|d| Attached {
            file_name: d.file_name.clone(),
            pdf: document_pdf(&self.keys, person, &row.subject_ref, d, self.clock.now()),
        });
        let message = email::message(
            &self.from,
            &row.recipient,
            &templates::email_subject(r, &row.subject_ref, person.language),
            templates::email_text(r, person),
            templates::email_html(r, person),
            attached,
        );
        let sent = match message {
            Ok(m) => self.mailer.send(m).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => Tried::Sent {
                provider_id: None,
                delivered: false,
            },
            Err(e) => Tried::Failed {
                why: e.reason(),
                permanent: e.is_permanent(),
            },
        }
    }

    async fn sms(
        &self,
        row: &NoticeRow,
        kind: NoticeKind,
        person: &Person,
        r: &Rendered,
        now: DateTime<Utc>,
    ) -> Tried {
        let allowed = notice::sms_allowed_from(now);
        if allowed > now {
            return Tried::Later(allowed);
        }
        let reference = if kind == NoticeKind::ExpiryAlert {
            ""
        } else {
            row.subject_ref.as_str()
        };
        let text = notice::sms_text(
            kind,
            person.language,
            person.first_name(),
            reference,
            r.when.as_deref(),
        );
        match self.sms.send(&row.recipient, &text).await {
            Ok(provider_id) => Tried::Sent {
                // The embedded default's file is as far as it goes.
                delivered: false,
                provider_id,
            },
            Err(e) => Tried::Failed {
                why: e.to_string(),
                permanent: e.is_permanent(),
            },
        }
    }

    /// A letter's request to the mailroom; it goes in the outbox in the
    /// transaction that marks the pass's messages sent.
    fn letter(
        &self,
        row: &NoticeRow,
        event: &Event,
        person: &Person,
        r: &Rendered,
        kind: NoticeKind,
    ) -> OutgoingMessage {
        // An attestation or an appointment notice on paper is the document
        // itself, signed code and all.
        let (subject, paragraphs, seal) = match (&r.document, kind) {
            (
                Some(d),
                NoticeKind::AttestationIssued
                | NoticeKind::AppointmentBooked
                | NoticeKind::AppointmentMoved,
            ) => (
                d.title.clone(),
                d.paragraphs.clone(),
                self.seal(d).unwrap_or_default(),
            ),
            _ => (r.subject.clone(), r.paragraphs.clone(), String::new()),
        };
        let mut paragraphs = paragraphs;
        if let (Some(_), Some(of)) = (&r.document, templates::follow_up_of(kind)) {
            // The notice on paper still gives the person their follow-up code.
            paragraphs.push(templates::follow_up(
                person.language,
                of,
                &self.links.secret(of, &row.subject_ref),
            ));
        }
        let (letter_kind, prefecture) = match event {
            // The mailroom files a case's letters under the step's own name.
            Event::Case(e) => (e.kind.clone(), e.prefecture.clone()),
            Event::Title(t) => (row.kind.to_string(), t.prefecture.clone()),
            Event::Report { report, .. } => (row.kind.to_string(), report.prefecture.clone()),
            Event::Appointment { appointment, .. } => {
                (row.kind.to_string(), appointment.prefecture.clone())
            }
        };
        let request = pb::LetterRequest {
            key: format!("{}|paper", row.notice_key),
            reference: row.subject_ref.clone(),
            kind: letter_kind.clone(),
            addressee: std::iter::once(person.full_name())
                .chain(person.address.iter().cloned())
                .collect(),
            subject,
            paragraphs,
            language: person.language.as_str().to_string(),
            seal,
        };
        OutgoingMessage::traced(
            EVENTS_EXCHANGE,
            format!(
                "letter.{letter_kind}.{}",
                if prefecture.is_empty() {
                    "none"
                } else {
                    prefecture.as_str()
                }
            ),
            request.encode_to_vec(),
        )
        .with_header("x-guichet-reference", row.subject_ref.clone())
    }

    async fn record(
        &self,
        row: &NoticeRow,
        medium: Medium,
        kind: NoticeKind,
        tried: Tried,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        match tried {
            // Marked with the others of its pass (`mark_sent`).
            Tried::Sent { .. } => {}
            Tried::Later(at) => {
                self.store
                    .db
                    .execute(
                        Stmt::new(
                            "UPDATE notices SET not_before = $2, lease_until = NULL \
                             WHERE id = $1 AND state = 'queued'",
                        )
                        .bind(&row.id)
                        .bind(at)
                        .planned_each_time(),
                    )
                    .await?;
            }
            Tried::Failed { why, permanent } => {
                let first = row.first_try_at.unwrap_or(now);
                let give_up =
                    permanent || now - first >= Duration::hours(notice::GIVE_UP_AFTER_HOURS);
                let retry_at = (!give_up).then(|| {
                    now + notice::retry_delay(
                        u32::try_from(row.attempts + 1).unwrap_or(u32::MAX),
                        self.retry_base,
                    )
                });
                tracing::warn!(
                    subject = %row.subject_ref, medium = medium.as_str(), kind = kind.as_str(),
                    attempts = row.attempts + 1, permanent = give_up, error = %why,
                    "a message to a person failed"
                );
                self.store.mark_failed(&row.id, now, &why, retry_at).await?;
                self.count(medium, kind, if give_up { "failed" } else { "retried" });
                if give_up {
                    self.after_failure(row).await?;
                }
            }
        }
        Ok(())
    }

    /// Paper follows when every electronic message of the notice failed;
    /// when nothing is left to try, an operator must reach the person.
    async fn after_failure(&self, row: &NoticeRow) -> Result<(), sqlx::Error> {
        let states = self.store.states_of(&row.notice_key).await?;
        if notice::paper_follows(&states, row.has_address) {
            let letter = NewNotice {
                notice_key: row.notice_key.clone(),
                medium: Medium::Paper,
                kind: row.kind,
                subject_ref: row.subject_ref.clone(),
                recipient: String::new(),
                language: row.language.clone(),
                routing_key: row.routing_key.clone(),
                event: row.event.clone(),
                has_address: true,
                not_before: self.clock.now(),
                event_at: row.event_at,
            };
            let mut c = self.store.db.acquire().await?;
            store::insert(&mut c.conn(), &letter, self.clock.now()).await?;
            tracing::info!(subject = %row.subject_ref, kind = %row.kind, "every electronic message failed: a letter follows");
            self.wake.notify_one();
        } else if states.iter().all(|(_, s)| *s == DeliveryState::Failed) {
            tracing::error!(
                subject = %row.subject_ref, kind = %row.kind,
                "nobody could be reached for this notice and there is no address: an operator must contact the person"
            );
        }
        Ok(())
    }

    /// Asks the SMS provider what became of the messages handed to it.
    pub async fn ask_reports(&self) -> Result<(), sqlx::Error> {
        let now = self.clock.now();
        let awaiting = self
            .store
            .awaiting_report(now - Duration::hours(REPORT_WINDOW_HOURS), 100)
            .await?;
        for row in awaiting {
            let Some(id) = row.provider_id.as_deref() else {
                continue;
            };
            let kind = row.kind;
            self.store.mark_checked(&row.id, now).await?;
            match self.sms.report(id).await {
                Ok(Report::Delivered) => {
                    self.store.mark_reported(&row.id, now, true).await?;
                    self.count(Medium::Sms, kind, "delivered");
                }
                Ok(Report::Undelivered) => {
                    self.store.mark_reported(&row.id, now, false).await?;
                    self.count(Medium::Sms, kind, "failed");
                    self.after_failure(&row).await?;
                }
                Ok(Report::Pending) => {}
                Err(e) => tracing::debug!(error = %e, "no report yet"),
            }
        }
        Ok(())
    }

    fn seal(&self, d: &templates::Document) -> Option<String> {
        seal(&self.keys, d)
    }

    fn count(&self, medium: Medium, kind: NoticeKind, outcome: &'static str) {
        self.figures
            .messages
            .get_or_create(&MessageLabels {
                medium: medium.as_str(),
                kind: kind.as_str(),
                outcome,
            })
            .inc();
    }

    fn observe_sent(&self, event_at: DateTime<Utc>, medium: Medium, now: DateTime<Utc>) {
        let seconds = (now - event_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.figures
            .event_to_sent
            .get_or_create(&MediumLabels {
                medium: medium.as_str(),
            })
            .observe(seconds);
    }
}

/// Where a lease taken at `now` ends. The end is also its holder's token
/// (`extend_lease`): kept to the microsecond, as the database keeps it.
fn lease_end(now: DateTime<Utc>) -> DateTime<Utc> {
    (now + Duration::seconds(LEASE_SECONDS)).trunc_subsecs(6)
}

/// A document as a one-page letter to its holder.
/// The document's signed 2D code; without one (no key to sign with)
/// the document still goes, and the log says why.
fn seal(keys: &KeySet, d: &templates::Document) -> Option<String> {
    let s = d.seal.as_ref()?;
    match keys.seal(s.kind, s.fields.clone()) {
        Ok(code) => Some(code),
        Err(e) => {
            tracing::error!(error = %e, "a document goes without its signed code");
            None
        }
    }
}

/// A notice's document as the person keeps it: a letter, dated `now`,
/// with its signed 2D code. The e-mail attaches it; the person downloads
/// the same again.
pub fn document_pdf(
    keys: &KeySet,
    person: &Person,
    subject_ref: &str,
    d: &templates::Document,
    now: DateTime<Utc>,
) -> Vec<u8> {
    sealed_letter_pdf(
        &letter_text(person, subject_ref, &d.title, d.paragraphs.clone(), now),
        seal(keys, d).as_deref(),
    )
}

pub fn letter_text(
    person: &Person,
    reference: &str,
    title: &str,
    paragraphs: Vec<String>,
    now: DateTime<Utc>,
) -> LetterText {
    // Dated on the service's clock, as everything else it writes.
    let today = guichet_dossier::calendar::paris_date(now);
    LetterText {
        addressee: std::iter::once(person.full_name())
            .chain(person.address.iter().cloned())
            .collect(),
        place_and_date: match person.language {
            Language::Fr => format!("Le {}", today.format("%d/%m/%Y")),
            Language::En => format!("On {}", today.format("%d/%m/%Y")),
        },
        subject: title.to_string(),
        paragraphs,
        reference: reference.to_string(),
    }
}
