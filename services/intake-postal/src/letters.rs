//! Letters, printed and listed for the mailroom to post. The receipt is
//! written when an envelope becomes a dossier. Every later letter, for a
//! person of any channel who is answered on paper, comes from the notifier
//! as a `LetterRequest` (`letter.<kind>.<prefecture>` on `guichet.events`,
//! through the queue `postal.letters`): rendered to PDF, kept in the
//! document store, listed once per request key however often it is
//! delivered. E-mail and SMS are the notifier's.
//!
//! The same queue brings the alternatives offered to blocked-user reports
//! (`report.alternative_offered.<prefecture>`): a paper kit offered becomes a
//! covering letter and an application form pre-filled from the report,
//! signed like every printed form, listed for posting under the report's id.

use std::collections::BTreeMap;
use std::sync::Arc;

use guichet_dossier::postal::{FORM_VERSION, FormCode, form_code_text};
use guichet_kit::Metrics;
use guichet_kit::bus::Delivery;
use guichet_kit::clock::SharedClock;
use guichet_kit::documents::{DocumentError, DocumentStore};
use guichet_proto::{convert, v1 as pb};
use prost::Message as _;

use crate::figures::{LetterLabels, PostalFigures};
use crate::render::{LetterText, kit_pdf, letter_pdf};
use crate::store::{EnvelopeRow, NewLetter, Store, StoreError};

/// Why a letter could not be made or listed yet (its event is retried).
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("keeping the letter in the document store")]
    Documents(#[from] DocumentError),
    /// Trying again cannot help: the bus dead-letters it at its delivery
    /// limit, where `guichet dlq` shows it to an operator.
    #[error("the paper kit offered to report {0} has no whole address to post it to")]
    NoAddress(String),
}

/// The key a dossier's receipt letter is kept under, once.
fn receipt_key(reference: &str) -> String {
    format!("{reference}|receipt")
}

#[derive(Clone)]
pub struct Letters {
    pub store: Store,
    pub documents: DocumentStore,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// Signs the code of the forms sent in paper kits.
    pub signing_key: Arc<Vec<u8>>,
    /// Signs the 2D code of the receipts it posts (`guichet_kit::seal`).
    pub keys: Arc<guichet_kit::seal::KeySet>,
}

/// Whom a letter goes to: the lines of the address block, and the envelope
/// it answers ("" for a kit or a letter of another channel).
struct Addressee {
    lines: Vec<String>,
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

/// What a letter says: its subject, its paragraphs, and the signed 2D code
/// of the document it is, if it is one.
struct Body<'a> {
    subject: &'a str,
    paragraphs: Vec<String>,
    seal: Option<&'a str>,
}

impl Letters {
    /// The receipt, when an envelope has just become a dossier.
    pub async fn receipt(
        &self,
        envelope: &EnvelopeRow,
        receipt: &pb::Receipt,
    ) -> Result<(), LetterError> {
        let paragraphs = receipt_wording(envelope.postmark_date.as_deref(), receipt);
        let to = Addressee::of_envelope(envelope);
        // The receipt is a paper to keep: signed like the other channels'.
        let mut fields = vec![
            ("document".to_string(), "récépissé de dépôt".to_string()),
            ("reference".to_string(), receipt.reference.clone()),
        ];
        if let Some(name) = to.lines.first().filter(|n| !n.is_empty()) {
            fields.push(("holder".to_string(), name.clone()));
        }
        if let Some(d) = receipt.legal_filing_date.as_ref() {
            fields.push(("legal_filing_date".to_string(), date_fr(d)));
        }
        fields.push((
            "verification_code".to_string(),
            receipt.verification_code.clone(),
        ));
        let seal = self
            .keys
            .seal("receipt", fields)
            .map_err(|e| tracing::error!(error = %e, "a receipt goes without its signed code"))
            .ok();
        self.write(
            &to,
            &receipt.reference,
            "receipt",
            &receipt_key(&receipt.reference),
            Body {
                subject: "récépissé de dépôt",
                paragraphs,
                seal: seal.as_deref(),
            },
        )
        .await
    }

    /// A delivery batch of `postal.letters`. The letters the notifier asks
    /// for are made together: one look for those already made, one insert,
    /// the acks sent together. A report's kit goes on its own, and so does
    /// every request if the batch cannot be recorded.
    pub async fn handle_batch(&self, batch: &[Delivery]) {
        let mut requests = Vec::with_capacity(batch.len());
        for delivery in batch {
            match (!delivery.routing_key.starts_with("report."))
                .then(|| pb::LetterRequest::decode(delivery.body.as_slice()).ok())
                .flatten()
            {
                Some(request) => requests.push((delivery, request)),
                // A report, or a request that does not decode (dead-lettered there).
                None => self.handle(delivery).await,
            }
        }
        if requests.is_empty() {
            return;
        }
        match self.for_requests(&requests).await {
            Ok(()) => {
                for acked in Delivery::ack_all(requests.iter().map(|(d, _)| *d)).await {
                    if let Err(e) = acked {
                        tracing::warn!(error = %e, "ack of a letter request failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %guichet_kit::error::error_chain(&e),
                    requests = requests.len(),
                    "cannot record a batch of letters; one by one"
                );
                for (delivery, _) in &requests {
                    self.handle(delivery).await;
                }
            }
        }
    }

    /// The letters of a batch of requests, each made once per key.
    async fn for_requests(
        &self,
        requests: &[(&Delivery, pb::LetterRequest)],
    ) -> Result<(), LetterError> {
        let keys: Vec<&str> = requests.iter().map(|(_, r)| r.key.as_str()).collect();
        let mut made = self.store.letters_made(&keys).await?;
        let mut letters = Vec::with_capacity(requests.len());
        for (_, request) in requests {
            if !postable(request) || !made.insert(request.key.clone()) {
                continue;
            }
            let (to, body) = self.request_parts(request).await?;
            let pdf = self.rendered(&to, &request.reference, body);
            letters.push(
                self.kept(&to, &request.reference, &request.kind, &request.key, pdf)
                    .await?,
            );
        }
        let new = self
            .store
            .insert_letters(&letters, self.clock.now())
            .await?;
        for kind in new {
            self.count(kind);
        }
        Ok(())
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
            match pb::LetterRequest::decode(delivery.body.as_slice()) {
                Ok(request) => self.for_request(&request).await,
                Err(e) => {
                    tracing::warn!(error = %e, "an undecodable letter request; letting the bus dead-letter it");
                    let _ = delivery.retry_later().await;
                    return;
                }
            }
        };
        let acked = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e @ LetterError::NoAddress(_)) => {
                tracing::error!(error = %e, "letting the bus dead-letter it");
                delivery.retry_later().await
            }
            Err(e) => {
                tracing::warn!(
                    error = %guichet_kit::error::error_chain(&e),
                    "cannot write a letter yet, retrying"
                );
                delivery.retry_later().await
            }
        };
        if let Err(e) = acked {
            tracing::warn!(error = %e, "ack of a case event failed");
        }
    }

    /// A letter the notifier asks for: the envelope it answers, when the
    /// dossier came by post, is named beside it.
    async fn for_request(&self, request: &pb::LetterRequest) -> Result<(), LetterError> {
        if !postable(request) {
            return Ok(());
        }
        let (to, body) = self.request_parts(request).await?;
        self.write(&to, &request.reference, &request.kind, &request.key, body)
            .await
    }

    /// Whom a requested letter goes to, and what it says; the envelope it
    /// answers, when the dossier came by post, is named beside it.
    async fn request_parts<'r>(
        &self,
        request: &'r pb::LetterRequest,
    ) -> Result<(Addressee, Body<'r>), LetterError> {
        let envelope_id = match self.store.envelope_of_reference(&request.reference).await? {
            Some(envelope) => envelope.id,
            None => String::new(),
        };
        Ok((
            Addressee {
                lines: request.addressee.clone(),
                envelope_id,
            },
            Body {
                subject: &request.subject,
                paragraphs: request.paragraphs.clone(),
                seal: Some(request.seal.as_str()).filter(|s| !s.is_empty()),
            },
        ))
    }

    /// Whether the receipt letter of dossier `reference` is made already.
    pub async fn receipt_made(&self, reference: &str) -> Result<bool, LetterError> {
        Ok(self.store.letter_made(&receipt_key(reference)).await?)
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
            // that got through anyway cannot be posted, and must not vanish
            // with an ack: the person would wait for a kit never sent.
            return Err(LetterError::NoAddress(report.id.clone()));
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
        self.post(&addressee, &report.id, "paper_kit", &key, pdf)
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
        body: Body<'_>,
    ) -> Result<(), LetterError> {
        if self.store.letter_made(event_key).await? {
            return Ok(());
        }
        let pdf = self.rendered(to, reference, body);
        self.post(to, reference, kind, event_key, pdf).await
    }

    fn rendered(&self, to: &Addressee, reference: &str, body: Body<'_>) -> Vec<u8> {
        let text = self.dated(to.lines.clone(), body.subject, body.paragraphs, reference);
        guichet_kit::pdf::sealed_letter_pdf(&text, body.seal)
    }

    /// Keeps a letter's PDF, to be listed for the mailroom once per key.
    async fn kept(
        &self,
        to: &Addressee,
        reference: &str,
        kind: &str,
        event_key: &str,
        pdf: Vec<u8>,
    ) -> Result<NewLetter, LetterError> {
        Ok(NewLetter {
            event_key: event_key.to_string(),
            reference: reference.to_string(),
            envelope_id: to.envelope_id.clone(),
            kind: kind.to_string(),
            sha256: self.documents.put(pdf).await?,
            // E-mail is the notifier's now.
            emailed_to: None,
            email_state: "none".into(),
        })
    }

    /// Keeps a letter's PDF and lists it for the mailroom, once per key.
    async fn post(
        &self,
        to: &Addressee,
        reference: &str,
        kind: &str,
        event_key: &str,
        pdf: Vec<u8>,
    ) -> Result<(), LetterError> {
        let letter = self.kept(to, reference, kind, event_key, pdf).await?;
        if self
            .store
            .insert_letter(&letter, self.clock.now())
            .await?
            .is_some()
        {
            self.count(letter.kind);
        }
        Ok(())
    }

    fn count(&self, kind: String) {
        PostalFigures::of(&self.metrics)
            .letters
            .get_or_create(&LetterLabels { kind })
            .inc();
    }
}

/// Whether a requested letter can be posted at all.
fn postable(request: &pb::LetterRequest) -> bool {
    if request.addressee.len() < 2 || request.key.is_empty() {
        tracing::warn!(reference = %request.reference, kind = %request.kind, "a letter request without an address: nothing to post");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{LetterText, letter_pdf};

    fn date(year: i32, month: i32, day: i32) -> Option<pb::CalendarDate> {
        Some(pb::CalendarDate { year, month, day })
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
