//! Letters to postal filers. The receipt is written when an envelope becomes
//! a dossier; every later step instruction announces for a postal dossier
//! (`case.<kind>.postal` on `guichet.events`: documents requested, an
//! attestation issued, a decision) gets its letter from the queue
//! `postal.letters`. Each letter is a print-ready PDF in the document store,
//! listed for the mailroom to print, and e-mailed as well where the person
//! gave an address. One letter per event, however often it is delivered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use guichet_kit::Metrics;
use guichet_kit::bus::Delivery;
use guichet_kit::clock::SharedClock;
use guichet_kit::metrics::LetterLabels;
use guichet_proto::v1 as pb;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prost::Message as _;

use crate::documents::Documents;
use crate::render::{LetterText, letter_pdf};
use crate::store::{EnvelopeRow, NewLetter, Store, StoreError};

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
    pub fn new(smtp_url: Option<&str>, folder: PathBuf) -> Result<Self, String> {
        match smtp_url {
            Some(url) => {
                let rest = url
                    .strip_prefix("smtp://")
                    .ok_or_else(|| format!("GUICHET_SMTP_URL {url:?} must start with smtp://"))?;
                let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
                    Some((h, p)) => (
                        h.to_string(),
                        p.parse::<u16>()
                            .map_err(|_| format!("GUICHET_SMTP_URL {url:?}: bad port"))?,
                    ),
                    None => (rest.trim_end_matches('/').to_string(), 25),
                };
                Ok(Mailer::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                        .port(port)
                        .build(),
                ))
            }
            None => {
                std::fs::create_dir_all(&folder)
                    .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
                Ok(Mailer::Folder(AsyncFileTransport::new(folder)))
            }
        }
    }

    async fn send(&self, message: Message) -> Result<(), String> {
        match self {
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
            Mailer::Folder(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
        }
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
}

/// What a letter says, by the kind of event; `None`: no letter for it.
fn wording(kind: &str, event: &pb::CaseEvent) -> Option<(String, Vec<String>)> {
    let date = |d: &Option<pb::CalendarDate>| {
        d.as_ref()
            .map(|d| format!("{:02}/{:02}/{}", d.day, d.month, d.year))
            .unwrap_or_default()
    };
    let missing = || {
        event
            .missing
            .iter()
            .filter_map(|k| pb::DocumentKind::try_from(*k).ok())
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("DOCUMENT_KIND_")
                    .to_lowercase()
                    .replace('_', " ")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = match kind {
        "found_incomplete" | "documents_requested" => (
            "pièces à fournir".to_string(),
            vec![
                format!("Pour instruire votre demande, il manque : {}.", missing()),
                format!(
                    "Envoyez-les par courrier avant le {} en rappelant le numéro de dossier.",
                    date(&event.documents_deadline)
                ),
                "Votre demande reste enregistrée à sa date de dépôt.".into(),
            ],
        ),
        "found_complete" => (
            "dossier complet".to_string(),
            vec!["Votre dossier est complet. Il est instruit dans l'ordre de dépôt.".into()],
        ),
        "attestation_issued" => {
            let a = event.attestation.clone().unwrap_or_default();
            (
                "attestation de prolongation d'instruction".to_string(),
                vec![
                    format!(
                        "Cette attestation prouve la régularité de votre séjour du {} au {}.",
                        date(&a.valid_from),
                        date(&a.valid_until)
                    ),
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
        "closed_deadline_passed" | "withdrawn" => (
            "clôture du dossier".to_string(),
            vec![format!("Votre dossier est clos ({}).", event.reason)],
        ),
        _ => return None,
    };
    Some(text)
}

impl Letters {
    /// The receipt, when an envelope has just become a dossier.
    pub async fn receipt(
        &self,
        envelope: &EnvelopeRow,
        receipt: &pb::Receipt,
    ) -> Result<(), StoreError> {
        let legal = receipt
            .legal_filing_date
            .as_ref()
            .map(|d| format!("{:02}/{:02}/{}", d.day, d.month, d.year))
            .unwrap_or_default();
        let paragraphs = vec![
            format!(
                "Votre demande reçue par courrier est enregistrée sous le numéro {}.",
                receipt.reference
            ),
            format!("Elle compte à la date du {legal}, date du cachet de la poste."),
            format!(
                "Code de vérification du récépissé : {}. Conservez ce courrier.",
                receipt.verification_code
            ),
        ];
        self.write(
            envelope,
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
        let outcome = match pb::CaseEvent::decode(delivery.body.as_slice()) {
            Ok(event) => self.for_event(&event).await,
            Err(e) => {
                tracing::warn!(error = %e, "an undecodable case event; letting the bus dead-letter it");
                let _ = delivery.retry_later().await;
                return;
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

    async fn for_event(&self, event: &pb::CaseEvent) -> Result<(), StoreError> {
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
            &envelope,
            &event.reference,
            &event.kind,
            &key,
            &subject,
            paragraphs,
        )
        .await
    }

    async fn write(
        &self,
        envelope: &EnvelopeRow,
        reference: &str,
        kind: &str,
        event_key: &str,
        subject: &str,
        paragraphs: Vec<String>,
    ) -> Result<(), StoreError> {
        if self.store.letter_made(event_key).await? {
            return Ok(());
        }
        let fields: BTreeMap<String, String> = envelope
            .fields()
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect();
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let now = self.clock.now();
        let text = LetterText {
            addressee: vec![
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
            place_and_date: format!(
                "Le {}",
                guichet_dossier::calendar::paris_date(now).format("%d/%m/%Y")
            ),
            subject: subject.to_string(),
            paragraphs,
            reference: reference.to_string(),
        };
        let pdf = letter_pdf(&text);
        let sha = self
            .documents
            .put(pdf.clone())
            .await
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let email = Some(get("email")).filter(|e| e.contains('@'));
        let letter = NewLetter {
            event_key: event_key.to_string(),
            reference: reference.to_string(),
            envelope_id: envelope.id.clone(),
            kind: kind.to_string(),
            sha256: sha,
            emailed_to: email.clone(),
            email_state: if email.is_some() { "pending" } else { "none" }.into(),
        };
        let Some(id) = self.store.insert_letter(&letter, now).await? else {
            return Ok(());
        };
        self.metrics
            .postal_letters
            .get_or_create(&LetterLabels {
                kind: kind.to_string(),
            })
            .inc();
        if let Some(to) = email {
            let state = match self.mail(&to, subject, reference, pdf, now).await {
                Ok(()) => "sent".to_string(),
                Err(e) => {
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
        reference: &str,
        pdf: Vec<u8>,
        _now: DateTime<Utc>,
    ) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("address {to:?}: {e}"))?;
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("GUICHET_MAIL_FROM: {e}"))?;
        let body = format!(
            "Bonjour,\n\nVous trouverez ci-joint un courrier concernant votre dossier {reference} ({subject}).\n\
             Il vous est aussi envoyé par la poste.\n"
        );
        let pdf_type = ContentType::parse("application/pdf").map_err(|e| e.to_string())?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(format!("Dossier {reference} : {subject}"))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(format!("{reference}.pdf")).body(pdf, pdf_type)),
            )
            .map_err(|e| e.to_string())?;
        self.mailer.send(message).await
    }
}
