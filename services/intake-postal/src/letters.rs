//! Letters to postal filers. The receipt is written when an envelope becomes
//! a dossier; every later step instruction announces for a postal dossier
//! (`case.<kind>.postal` on `guichet.events`: documents requested, an
//! attestation issued, a decision) gets its letter from the queue
//! `postal.letters`. Each letter is a print-ready PDF in the document store,
//! listed for the mailroom to print, and e-mailed as well where the person
//! gave an address. One letter per event, however often it is delivered.
//!
//! The same queue brings the alternatives offered to blocked-user reports
//! (`report.alternative_offered.<prefecture>`): a paper kit offered becomes a
//! covering letter and an application form pre-filled from the report,
//! signed like every printed form, listed for posting under the report's id.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use guichet_dossier::postal::{FORM_VERSION, FormCode, form_code_text};
use guichet_kit::Metrics;
use guichet_kit::bus::Delivery;
use guichet_kit::clock::SharedClock;
use guichet_proto::{convert, v1 as pb};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prost::Message as _;

use crate::documents::Documents;
use crate::figures::{LetterLabels, PostalFigures};
use crate::render::{LetterText, kit_pdf, letter_pdf};
use crate::store::{EnvelopeRow, NewLetter, Store, StoreError};

/// Why a letter could not be made or listed yet (its event is retried).
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("keeping the letter in the document store")]
    Documents(#[from] std::io::Error),
}

/// Why an e-mail copy was not sent (the paper letter stands), or the mailer
/// cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("GUICHET_SMTP_URL {0:?} must be smtp://host[:port]")]
    Url(String),
    #[error("cannot create the mail folder {0}")]
    Folder(PathBuf, #[source] std::io::Error),
    #[error("the address {0:?} is not an e-mail address")]
    Address(String, #[source] lettre::address::AddressError),
    #[error("GUICHET_MAIL_FROM is not an e-mail address")]
    From(#[source] lettre::address::AddressError),
    #[error("the message cannot be built")]
    Build(#[from] lettre::error::Error),
    #[error("the attachment's media type")]
    MediaType(#[from] lettre::message::header::ContentTypeErr),
    #[error("the SMTP relay refused the message")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("the message cannot be written to the mail folder")]
    File(#[from] lettre::transport::file::Error),
}

/// Where e-mail copies go: the site's SMTP relay, or .eml files in a folder
/// when no relay is configured (the embedded default).
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    /// `smtp_url`: `smtp://host[:port]`, plain SMTP to a relay that forwards
    /// the mail (TLS onwards is the relay's). `folder`: used when unset.
    pub fn new(smtp_url: Option<&str>, folder: PathBuf) -> Result<Self, MailError> {
        match smtp_url {
            Some(url) => {
                let bad = || MailError::Url(url.to_string());
                let rest = url.strip_prefix("smtp://").ok_or_else(bad)?;
                let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
                    None => (rest.trim_end_matches('/').to_string(), 25),
                };
                Ok(Mailer::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                        .port(port)
                        .build(),
                ))
            }
            None => {
                if let Err(e) = std::fs::create_dir_all(&folder) {
                    return Err(MailError::Folder(folder, e));
                }
                Ok(Mailer::Folder(AsyncFileTransport::new(folder)))
            }
        }
    }

    async fn send(&self, message: Message) -> Result<(), MailError> {
        match self {
            Mailer::Smtp(t) => t.send(message).await.map(|_| ())?,
            Mailer::Folder(t) => t.send(message).await.map(|_| ())?,
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Letters {
    pub store: Store,
    pub documents: Documents,
    pub mailer: Mailer,
    pub from: String,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// Signs the code of the forms sent in paper kits.
    pub signing_key: Arc<Vec<u8>>,
}

/// Whom a letter goes to: the lines of the address block, the e-mail
/// address for the copy, and the envelope it answers ("" for a kit).
struct Addressee {
    lines: Vec<String>,
    email: Option<String>,
    envelope_id: String,
}

impl Addressee {
    fn of_envelope(envelope: &EnvelopeRow) -> Self {
        let fields: BTreeMap<&str, &str> = envelope
            .fields
            .iter()
            .map(|f| (f.key.as_str(), f.value.as_str()))
            .collect();
        // A field the form left empty is an empty line.
        let get = |k: &str| fields.get(k).map_or_else(String::new, |v| v.to_string());
        Self {
            lines: vec![
                format!(
                    "{} {}",
                    get("given_names"),
                    get("family_name").to_uppercase()
                )
                .trim()
                .to_string(),
                get("address_line1"),
                format!("{} {}", get("postal_code"), get("city"))
                    .trim()
                    .to_string(),
            ],
            email: Some(get("email")).filter(|e| e.contains('@')),
            envelope_id: envelope.id.clone(),
        }
    }
}

/// What a kit's form is pre-filled with: what the report knows of the
/// person, and where the kit is sent.
fn kit_prefill(report: &pb::Report, to: &pb::PostalAddress) -> BTreeMap<String, String> {
    let contact = report.contact.clone().unwrap_or_default();
    let street = [to.line1.trim(), to.line2.trim()]
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let procedure = convert::procedure_text(report.procedure)
        .filter(|p| guichet_dossier::Procedure::parse(p).is_some())
        .unwrap_or_default();
    [
        ("family_name", report.family_name.trim().to_string()),
        ("given_names", report.given_names.trim().to_string()),
        ("address_line1", street),
        ("postal_code", to.postal_code.trim().to_string()),
        ("city", to.city.trim().to_string()),
        ("email", contact.email.trim().to_string()),
        ("phone", contact.phone.trim().to_string()),
        ("procedure", procedure),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A calendar date as a French letter prints it.
fn date_fr(d: &pb::CalendarDate) -> String {
    format!("{:02}/{:02}/{}", d.day, d.month, d.year)
}

/// A document kind as the person knows it.
fn document_fr(kind: pb::DocumentKind) -> &'static str {
    use pb::DocumentKind as K;
    match kind {
        K::Passport => "passeport",
        K::Photo => "photographie d'identité",
        K::ProofOfAddress => "justificatif de domicile",
        K::CurrentTitle => "titre de séjour actuel",
        K::BirthCertificate => "acte de naissance",
        K::ProofOfResources => "justificatif de ressources",
        K::EnrolmentCertificate => "certificat de scolarité",
        K::EmploymentContract => "contrat de travail",
        K::MarriageCertificate => "acte de mariage",
        K::ProtectionDecision => "décision de protection internationale",
        K::MedicalCertificate => "certificat médical",
        K::TaxNotice => "avis d'imposition",
        K::TaxStamp => "timbre fiscal",
        K::Other | K::Unspecified => "autre pièce",
    }
}

/// What a letter says, by the kind of event: its subject and paragraphs;
/// `None`: no letter for it. Every date it prints comes from the event; a
/// sentence whose date the event does not carry is not printed half.
pub fn wording(kind: &str, event: &pb::CaseEvent) -> Option<(String, Vec<String>)> {
    let missing = || {
        event
            .missing
            .iter()
            .filter_map(|k| pb::DocumentKind::try_from(*k).ok())
            .map(document_fr)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let send_by = || match &event.documents_deadline {
        Some(d) => format!(
            "Envoyez-les par courrier au plus tard le {} en rappelant le numéro de dossier.",
            date_fr(d)
        ),
        None => "Envoyez-les par courrier dès que possible en rappelant le numéro de dossier."
            .to_string(),
    };
    let text = match kind {
        "found_incomplete" | "documents_requested" => (
            "pièces à fournir".to_string(),
            vec![
                format!("Pour instruire votre demande, il manque : {}.", missing()),
                send_by(),
                "Votre demande reste enregistrée à sa date de dépôt.".into(),
            ],
        ),
        "found_complete" => (
            "dossier complet".to_string(),
            vec!["Votre dossier est complet. Il est instruit dans l'ordre de dépôt.".into()],
        ),
        "attestation_issued" => {
            let a = event.attestation.clone().unwrap_or_default();
            let from = a.valid_from.as_ref().map(date_fr).unwrap_or_default();
            let period = match a.valid_until.as_ref() {
                Some(until) => format!("du {from} au {}", date_fr(until)),
                None => format!("à partir du {from} et jusqu'à la remise de votre titre"),
            };
            (
                "attestation de prolongation d'instruction".to_string(),
                vec![
                    format!("Cette attestation prouve la régularité de votre séjour {period}."),
                    format!("Code de vérification : {}.", a.verification_code),
                    "Elle vous permet de continuer à travailler et de garder vos droits.".into(),
                ],
            )
        }
        "decided_favourable" => (
            "décision favorable".to_string(),
            vec!["Une décision favorable a été prise. Vous serez convoqué(e) pour la remise de votre titre.".into()],
        ),
        "decided_unfavourable" => (
            "décision".to_string(),
            vec![
                format!("Votre demande n'a pas été acceptée : {}.", event.reason),
                "Vous pouvez former un recours dans un délai de deux mois.".into(),
            ],
        ),
        "closed_deadline_passed" => (
            "clôture du dossier".to_string(),
            vec![match &event.documents_deadline {
                Some(d) => format!(
                    "Votre dossier est clos : les pièces demandées ({}) ne sont pas arrivées au plus tard le {}.",
                    missing(),
                    date_fr(d)
                ),
                None => format!(
                    "Votre dossier est clos : les pièces demandées ({}) ne sont pas arrivées à temps.",
                    missing()
                ),
            }],
        ),
        "withdrawn" => (
            "clôture du dossier".to_string(),
            vec![format!(
                "Votre dossier est clos : la demande a été retirée ({}).",
                event.reason
            )],
        ),
        _ => return None,
    };
    Some(text)
}

/// The receipt's wording. The date it counts from is the postmark's only
/// when the postmark is what it counts from (`envelope_postmark`, as keyed);
/// otherwise it is the day the envelope was received.
pub fn receipt_wording(envelope_postmark: Option<&str>, receipt: &pb::Receipt) -> Vec<String> {
    let legal = receipt.legal_filing_date.as_ref();
    let legal_text = legal.map(date_fr).unwrap_or_default();
    let legal_iso = legal
        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default();
    let source = if envelope_postmark == Some(legal_iso.as_str()) {
        "date du cachet de la poste"
    } else {
        "date de réception de votre courrier"
    };
    vec![
        format!(
            "Votre demande reçue par courrier est enregistrée sous le numéro {}.",
            receipt.reference
        ),
        format!("Elle compte à la date du {legal_text}, {source}."),
        format!(
            "Code de vérification du récépissé : {}. Conservez ce courrier.",
            receipt.verification_code
        ),
    ]
}

impl Letters {
    /// The receipt, when an envelope has just become a dossier.
    pub async fn receipt(
        &self,
        envelope: &EnvelopeRow,
        receipt: &pb::Receipt,
    ) -> Result<(), LetterError> {
        let paragraphs = receipt_wording(envelope.postmark_date.as_deref(), receipt);
        self.write(
            &Addressee::of_envelope(envelope),
            &receipt.reference,
            "receipt",
            &format!("{}|receipt", receipt.reference),
            "récépissé de dépôt",
            paragraphs,
        )
        .await
    }

    /// One delivery of `postal.letters`: the letter it calls for, then ack.
    pub async fn handle(&self, delivery: &Delivery) {
        let outcome = if delivery.routing_key.starts_with("report.") {
            match pb::Report::decode(delivery.body.as_slice()) {
                Ok(report) => self.for_report(&report).await,
                Err(e) => {
                    tracing::warn!(error = %e, "an undecodable report event; letting the bus dead-letter it");
                    let _ = delivery.retry_later().await;
                    return;
                }
            }
        } else {
            match pb::CaseEvent::decode(delivery.body.as_slice()) {
                Ok(event) => self.for_event(&event).await,
                Err(e) => {
                    tracing::warn!(error = %e, "an undecodable case event; letting the bus dead-letter it");
                    let _ = delivery.retry_later().await;
                    return;
                }
            }
        };
        let acked = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a letter yet, retrying");
                delivery.retry_later().await
            }
        };
        if let Err(e) = acked {
            tracing::warn!(error = %e, "ack of a case event failed");
        }
    }

    async fn for_event(&self, event: &pb::CaseEvent) -> Result<(), LetterError> {
        let Some((subject, paragraphs)) = wording(&event.kind, event) else {
            return Ok(());
        };
        let Some(envelope) = self.store.envelope_of_reference(&event.reference).await? else {
            // A postal dossier this service did not key (recorded before it
            // ran, or filed by another system): nobody's address to write to.
            tracing::warn!(reference = %event.reference, kind = %event.kind, "no envelope for this postal dossier: no letter");
            return Ok(());
        };
        let at = event
            .at
            .as_ref()
            .map(|t| format!("{}.{}", t.seconds, t.nanos))
            .unwrap_or_default();
        let key = format!("{}|{}|{at}", event.reference, event.kind);
        self.write(
            &Addressee::of_envelope(&envelope),
            &event.reference,
            &event.kind,
            &key,
            &subject,
            paragraphs,
        )
        .await
    }

    /// A report's alternative: a paper kit gets its letter and form, once
    /// per offer however often the event is delivered; an appointment
    /// offered needs nothing on paper here.
    async fn for_report(&self, report: &pb::Report) -> Result<(), LetterError> {
        let Some(alternative) = &report.alternative else {
            return Ok(());
        };
        if alternative.kind != pb::AlternativeKind::PaperKit as i32 {
            return Ok(());
        }
        let Some(to) = alternative.kit_sent_to.as_ref().filter(|a| {
            ![&a.line1, &a.postal_code, &a.city]
                .iter()
                .any(|l| l.trim().is_empty())
        }) else {
            // The call centre refuses a kit without a whole address; one
            // that got through anyway cannot be posted.
            tracing::warn!(report = %report.id, "a paper kit without a whole address: nothing to post");
            return Ok(());
        };
        // This offer's own event (a report may be offered a kit again).
        let at = report
            .history
            .iter()
            .rev()
            .find(|e| e.kind == "alternative_offered")
            .and_then(|e| e.at.as_ref())
            .map(|t| format!("{}.{}", t.seconds, t.nanos))
            .unwrap_or_default();
        let key = format!("report:{}|paper_kit|{at}", report.id);
        if self.store.letter_made(&key).await? {
            return Ok(());
        }
        let opened = report
            .opened_at
            .as_ref()
            .and_then(convert::timestamp_from_pb)
            .map(|t| {
                guichet_dossier::calendar::paris_date(t)
                    .format("%d/%m/%Y")
                    .to_string()
            })
            .unwrap_or_default();
        let subject = "formulaire de demande par courrier";
        let addressee = Addressee {
            lines: vec![
                format!(
                    "{} {}",
                    report.given_names.trim(),
                    report.family_name.trim().to_uppercase()
                )
                .trim()
                .to_string(),
                to.line1.trim().to_string(),
                to.line2.trim().to_string(),
                format!("{} {}", to.postal_code.trim(), to.city.trim()),
            ]
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
            email: report
                .contact
                .as_ref()
                .map(|c| c.email.trim().to_string())
                .filter(|e| e.contains('@')),
            envelope_id: String::new(),
        };
        let cover = self.dated(
            addressee.lines.clone(),
            subject,
            vec![
                format!(
                    "Vous nous avez signalé le {opened} ne pas pouvoir déposer votre demande en \
                     ligne (signalement {}). Vous pouvez la déposer par courrier.",
                    report.id
                ),
                "Le formulaire joint est pré-rempli avec ce que vous nous avez dit. Vérifiez-le, \
                 complétez-le, joignez une copie de chaque pièce et renvoyez le tout à la \
                 préfecture."
                    .into(),
                "La date du cachet de la poste vaudra date de dépôt de votre demande.".into(),
            ],
            &report.id,
        );
        let code = FormCode {
            form_id: format!("K{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
                .to_uppercase(),
            version: FORM_VERSION,
            fields: kit_prefill(report, to),
        };
        let text = form_code_text(&code, &self.signing_key);
        let pdf = match kit_pdf(&cover, &text, &code.form_id, &code.fields) {
            Ok(pdf) => pdf,
            Err(e) => {
                // Too much to pre-fill: the kit goes out with a blank form
                // rather than not at all.
                tracing::warn!(report = %report.id, error = %e, "the kit's form is sent blank");
                let blank = FormCode {
                    fields: BTreeMap::new(),
                    ..code
                };
                kit_pdf(
                    &cover,
                    &form_code_text(&blank, &self.signing_key),
                    &blank.form_id,
                    &blank.fields,
                )
                .unwrap_or_else(|_| letter_pdf(&cover))
            }
        };
        self.post(&addressee, &report.id, "paper_kit", &key, subject, pdf)
            .await
    }

    /// A letter's text, dated today in Paris.
    fn dated(
        &self,
        addressee: Vec<String>,
        subject: &str,
        paragraphs: Vec<String>,
        reference: &str,
    ) -> LetterText {
        LetterText {
            addressee,
            place_and_date: format!(
                "Le {}",
                guichet_dossier::calendar::paris_date(self.clock.now()).format("%d/%m/%Y")
            ),
            subject: subject.to_string(),
            paragraphs,
            reference: reference.to_string(),
        }
    }

    async fn write(
        &self,
        to: &Addressee,
        reference: &str,
        kind: &str,
        event_key: &str,
        subject: &str,
        paragraphs: Vec<String>,
    ) -> Result<(), LetterError> {
        if self.store.letter_made(event_key).await? {
            return Ok(());
        }
        let text = self.dated(to.lines.clone(), subject, paragraphs, reference);
        let pdf = letter_pdf(&text);
        self.post(to, reference, kind, event_key, subject, pdf)
            .await
    }

    /// Keeps a letter's PDF, lists it for the mailroom once per event, and
    /// sends the e-mail copy.
    async fn post(
        &self,
        to: &Addressee,
        reference: &str,
        kind: &str,
        event_key: &str,
        subject: &str,
        pdf: Vec<u8>,
    ) -> Result<(), LetterError> {
        let now = self.clock.now();
        let sha = self.documents.put(pdf.clone()).await?;
        let email = to.email.clone();
        let letter = NewLetter {
            event_key: event_key.to_string(),
            reference: reference.to_string(),
            envelope_id: to.envelope_id.clone(),
            kind: kind.to_string(),
            sha256: sha,
            emailed_to: email.clone(),
            email_state: if email.is_some() { "pending" } else { "none" }.into(),
        };
        let Some(id) = self.store.insert_letter(&letter, now).await? else {
            return Ok(());
        };
        PostalFigures::of(&self.metrics)
            .letters
            .get_or_create(&LetterLabels {
                kind: kind.to_string(),
            })
            .inc();
        if let Some(address) = email {
            // What the e-mail is about: a dossier, or the report a kit answers.
            let about = if kind == "paper_kit" {
                ("Signalement", "signalement")
            } else {
                ("Dossier", "dossier")
            };
            let state = match self
                .mail(&address, subject, about, reference, pdf, now)
                .await
            {
                Ok(()) => "sent".to_string(),
                Err(e) => {
                    let e = guichet_kit::error::error_chain(&e);
                    tracing::warn!(reference, error = %e, "e-mail copy of a letter failed; the paper letter stands");
                    format!("failed: {e}")
                }
            };
            self.store.set_email_state(&id, &state).await?;
        }
        Ok(())
    }

    async fn mail(
        &self,
        to: &str,
        subject: &str,
        about: (&str, &str),
        reference: &str,
        pdf: Vec<u8>,
        _now: DateTime<Utc>,
    ) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::Address(to.to_string(), e))?;
        let from: Mailbox = self.from.parse().map_err(MailError::From)?;
        let body = format!(
            "Bonjour,\n\nVous trouverez ci-joint un courrier concernant votre {} {reference} ({subject}).\n\
             Il vous est aussi envoyé par la poste.\n",
            about.1
        );
        let pdf_type = ContentType::parse("application/pdf")?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(format!("{} {reference} : {subject}", about.0))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(format!("{reference}.pdf")).body(pdf, pdf_type)),
            )?;
        self.mailer.send(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{LetterText, letter_pdf};

    fn date(year: i32, month: i32, day: i32) -> Option<pb::CalendarDate> {
        Some(pb::CalendarDate { year, month, day })
    }

    fn event(kind: &str) -> pb::CaseEvent {
        pb::CaseEvent {
            reference: "P-2026-ABCD-EFGH-X".into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    /// The letter's text as printed: the PDF through `pdftotext`, its lines
    /// joined, so a sentence wrapped over two lines reads whole.
    fn printed(subject: &str, paragraphs: Vec<String>) -> String {
        let pdf = letter_pdf(&LetterText {
            addressee: vec!["Amina BENALI".into()],
            place_and_date: "Le 24/11/2026".into(),
            subject: subject.into(),
            paragraphs,
            reference: "P-2026-ABCD-EFGH-X".into(),
        });
        let dir = std::env::temp_dir().join(format!("guichet-letter-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("letter.pdf");
        std::fs::write(&path, pdf).unwrap();
        let out = std::process::Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) is installed");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn each_letter_says_what_its_event_says() {
        let with = |kind: &str, f: fn(&mut pb::CaseEvent)| {
            let mut e = event(kind);
            f(&mut e);
            e
        };
        let missing = |e: &mut pb::CaseEvent| {
            e.missing = vec![
                pb::DocumentKind::Passport as i32,
                pb::DocumentKind::ProofOfAddress as i32,
            ];
        };
        // (event, subject, what the printed letter must say, what it must not)
        let cases: Vec<(pb::CaseEvent, &str, Vec<&str>, Vec<&str>)> = vec![
            (
                with("documents_requested", |e| {
                    e.missing = vec![pb::DocumentKind::Passport as i32];
                    e.documents_deadline = date(2027, 1, 15);
                }),
                "pièces à fournir",
                vec![
                    "il manque : passeport.",
                    "au plus tard le 15/01/2027 en rappelant le numéro de dossier",
                ],
                vec!["avant le ."],
            ),
            (
                with("found_incomplete", missing),
                "pièces à fournir",
                vec![
                    "il manque : passeport, justificatif de domicile.",
                    "Envoyez-les par courrier dès que possible",
                ],
                vec!["avant le", "au plus tard le"],
            ),
            (
                event("found_complete"),
                "dossier complet",
                vec!["Votre dossier est complet."],
                vec![],
            ),
            (
                with("attestation_issued", |e| {
                    e.attestation = Some(pb::AttestationView {
                        valid_from: date(2026, 11, 24),
                        valid_until: date(2027, 2, 23),
                        verification_code: "K7Q2M9XA".into(),
                        ..Default::default()
                    });
                }),
                "attestation de prolongation d'instruction",
                vec![
                    "régularité de votre séjour du 24/11/2026 au 23/02/2027.",
                    "Code de vérification : K7Q2M9XA.",
                ],
                vec![],
            ),
            (
                with("attestation_issued", |e| {
                    e.attestation = Some(pb::AttestationView {
                        valid_from: date(2026, 11, 24),
                        valid_until: None,
                        verification_code: "K7Q2M9XB".into(),
                        ..Default::default()
                    });
                }),
                "attestation de prolongation d'instruction",
                vec!["à partir du 24/11/2026 et jusqu'à la remise de votre titre."],
                vec![" au ."],
            ),
            (
                event("decided_favourable"),
                "décision favorable",
                vec!["Une décision favorable a été prise."],
                vec![],
            ),
            (
                with("decided_unfavourable", |e| {
                    e.reason = "ressources insuffisantes".into()
                }),
                "décision",
                vec![
                    "n'a pas été acceptée : ressources insuffisantes.",
                    "recours dans un délai de deux mois",
                ],
                vec![],
            ),
            (
                with("closed_deadline_passed", |e| {
                    e.missing = vec![pb::DocumentKind::Photo as i32];
                    e.documents_deadline = date(2027, 1, 15);
                    e.reason = "the deadline for the requested documents passed".into();
                }),
                "clôture du dossier",
                vec![
                    "les pièces demandées (photographie d'identité) ne sont pas arrivées au plus tard le 15/01/2027.",
                ],
                vec!["the deadline"],
            ),
            (
                with("withdrawn", |e| e.reason = "départ de France".into()),
                "clôture du dossier",
                vec!["la demande a été retirée (départ de France)."],
                vec![],
            ),
        ];
        for (e, subject, says, never) in cases {
            let (got_subject, paragraphs) =
                wording(&e.kind, &e).unwrap_or_else(|| panic!("{}: no letter", e.kind));
            assert_eq!(got_subject, subject, "{}", e.kind);
            let text = printed(&got_subject, paragraphs);
            assert!(
                text.contains(&format!("Objet : {subject}")),
                "{}: {text}",
                e.kind
            );
            for s in says {
                assert!(text.contains(s), "{}: {s:?} not in {text}", e.kind);
            }
            for s in never {
                assert!(!text.contains(s), "{}: {s:?} in {text}", e.kind);
            }
        }
        // Steps the person is not written to about.
        for kind in ["filed", "review_started", "linked"] {
            assert!(wording(kind, &event(kind)).is_none(), "{kind}");
        }
    }

    #[test]
    fn the_receipt_names_the_date_it_counts_from() {
        let receipt = |d| pb::Receipt {
            reference: "P-2026-ABCD-EFGH-X".into(),
            legal_filing_date: d,
            verification_code: "RC12RC34".into(),
            ..Default::default()
        };
        let cases = [
            (
                Some("2001-01-02"),
                date(2001, 1, 2),
                "Elle compte à la date du 02/01/2001, date du cachet de la poste.",
            ),
            (
                // A stamp after the reception date: the reception date counts.
                Some("2026-12-25"),
                date(2026, 11, 24),
                "Elle compte à la date du 24/11/2026, date de réception de votre courrier.",
            ),
            (
                None,
                date(2026, 11, 24),
                "Elle compte à la date du 24/11/2026, date de réception de votre courrier.",
            ),
        ];
        for (postmark, legal, says) in cases {
            let text = printed(
                "récépissé de dépôt",
                receipt_wording(postmark, &receipt(legal)),
            );
            assert!(text.contains(says), "{postmark:?}: {text}");
            assert!(text.contains("enregistrée sous le numéro P-2026-ABCD-EFGH-X"));
            assert!(text.contains("Code de vérification du récépissé : RC12RC34."));
        }
    }
}
