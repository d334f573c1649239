//! What each notice says, in French and English: a subject and paragraphs
//! (the e-mail's text and the letter's body), the document it carries (the
//! receipt or the attestation, as a PDF), and the SMS. Every date printed
//! comes from the event; a sentence whose date the event lacks is not
//! printed half.

use guichet_dossier::Language;
use guichet_dossier::notice::{self, NoticeKind};
use guichet_proto::{convert, v1 as pb};

use crate::event::{Event, Person};

/// A notice, ready to send on any medium.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub paragraphs: Vec<String>,
    /// The document the person keeps, when the notice is one.
    pub document: Option<Document>,
    /// The date or time the SMS names, when the notice is about one.
    pub when: Option<String>,
}

/// A document to keep: attached to the e-mail as a PDF, and the letter
/// itself on paper.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file_name: String,
    pub title: String,
    pub paragraphs: Vec<String>,
    /// What its signed 2D code says: the kind and the fields, each value
    /// exactly as the document prints it (so a checker can compare).
    pub seal: Option<SealFields>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SealFields {
    pub kind: &'static str,
    pub fields: Vec<(String, String)>,
}

fn field(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

fn t(language: Language, fr: impl Into<String>, en: impl Into<String>) -> String {
    match language {
        Language::Fr => fr.into(),
        Language::En => en.into(),
    }
}

/// A calendar date as the person reads it (both languages: dd/mm/yyyy).
pub fn date(d: &pb::CalendarDate) -> String {
    format!("{:02}/{:02}/{}", d.day, d.month, d.year)
}

/// A document kind as the person knows it.
fn document_name(kind: pb::DocumentKind, language: Language) -> &'static str {
    use pb::DocumentKind as K;
    let (fr, en) = match kind {
        K::Passport => ("passeport", "passport"),
        K::Photo => ("photographie d'identité", "identity photograph"),
        K::ProofOfAddress => ("justificatif de domicile", "proof of address"),
        K::CurrentTitle => ("titre de séjour actuel", "current residence permit"),
        K::BirthCertificate => ("acte de naissance", "birth certificate"),
        K::ProofOfResources => ("justificatif de ressources", "proof of resources"),
        K::EnrolmentCertificate => ("certificat de scolarité", "enrolment certificate"),
        K::EmploymentContract => ("contrat de travail", "employment contract"),
        K::MarriageCertificate => ("acte de mariage", "marriage certificate"),
        K::ProtectionDecision => (
            "décision de protection internationale",
            "international protection decision",
        ),
        K::MedicalCertificate => ("certificat médical", "medical certificate"),
        K::TaxNotice => ("avis d'imposition", "tax notice"),
        K::TaxStamp => ("timbre fiscal", "tax stamp"),
        K::Other | K::Unspecified => ("autre pièce", "other document"),
    };
    match language {
        Language::Fr => fr,
        Language::En => en,
    }
}

/// The notice `kind` for `event`, in the person's language; `None` when the
/// event lacks what the notice needs (it is then not sent at all).
pub fn render(kind: NoticeKind, event: &Event, person: &Person) -> Option<Rendered> {
    let l = person.language;
    match (kind, event) {
        (NoticeKind::Receipt, Event::Case(e)) => Some(receipt(e, person)),
        // Nothing named as missing: no letter saying "we still need: .".
        (NoticeKind::DocumentsMissing, Event::Case(e)) if e.missing.is_empty() => None,
        (NoticeKind::DocumentsMissing, Event::Case(e)) => Some(plain(
            t(l, "pièces à fournir", "documents to send"),
            missing_paragraphs(e, l),
        )),
        (NoticeKind::AttestationIssued, Event::Case(e)) => attestation(e, person),
        (NoticeKind::Decision, Event::Case(e)) => Some(decision(e, l)),
        (NoticeKind::Closed, Event::Case(e)) => Some(closed(e, l)),
        (NoticeKind::ExpiryAlert, Event::Title(a)) => expiry(a, l),
        (NoticeKind::ReportReceived, Event::Report { report, .. }) => {
            let mut p = vec![t(
                l,
                format!(
                    "Votre signalement est enregistré sous le numéro {}.",
                    report.id
                ),
                format!("Your report is recorded under number {}.", report.id),
            )];
            if let Some(d) = &report.deadline {
                p.push(t(
                    l,
                    format!(
                        "La préfecture vous proposera une autre façon de déposer votre demande au plus tard le {}.",
                        date(d)
                    ),
                    format!(
                        "The prefecture will offer you another way to file your application by {}.",
                        date(d)
                    ),
                ));
            }
            Some(plain(t(l, "signalement enregistré", "report recorded"), p))
        }
        (NoticeKind::AlternativeOffered, Event::Report { report, .. }) => {
            let alternative = report.alternative.clone().unwrap_or_default();
            let p = if alternative.kind == pb::AlternativeKind::PaperKit as i32 {
                t(
                    l,
                    "Un formulaire de demande pré-rempli vous est envoyé par courrier. Renvoyez-le complété avec vos pièces : la date du cachet de la poste vaudra date de dépôt.",
                    "A pre-filled application form is on its way to you by post. Send it back completed with your documents: the postmark will count as the filing date.",
                )
            } else {
                t(
                    l,
                    format!(
                        "Un rendez-vous au guichet de la préfecture vous est proposé (référence {}). Vous recevrez sa date et son heure.",
                        alternative.appointment_id
                    ),
                    format!(
                        "An appointment at the prefecture's desk is offered to you (reference {}). You will receive its date and time.",
                        alternative.appointment_id
                    ),
                )
            };
            Some(plain(
                t(
                    l,
                    "une solution pour votre demande",
                    "a way to file your application",
                ),
                vec![
                    t(
                        l,
                        format!("Suite à votre signalement {} :", report.id),
                        format!("Following your report {}:", report.id),
                    ),
                    p,
                ],
            ))
        }
        (
            NoticeKind::AppointmentBooked
            | NoticeKind::AppointmentMoved
            | NoticeKind::AppointmentCancelled
            | NoticeKind::AppointmentReminder,
            Event::Appointment { appointment, .. },
        ) => appointment_notice(kind, appointment, person),
        _ => None,
    }
}

fn plain(subject: String, paragraphs: Vec<String>) -> Rendered {
    Rendered {
        subject,
        paragraphs,
        document: None,
        when: None,
    }
}

/// A line per document received with the filing: what it is, and the
/// start of its digest, size and type, which identify the very file.
fn documents_received(e: &pb::CaseEvent, l: Language) -> Vec<String> {
    if e.documents.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![t(
        l,
        format!("Documents reçus ({}) :", e.documents.len()),
        format!("Documents received ({}):", e.documents.len()),
    )];
    for d in &e.documents {
        let name = pb::DocumentKind::try_from(d.kind)
            .map(|k| document_name(k, l))
            .unwrap_or("?");
        let digest: String = d.sha256.chars().take(16).collect();
        let kib = d.size_bytes.div_ceil(1024);
        lines.push(t(
            l,
            format!(
                "– {name} : {} Kio, {}, empreinte SHA-256 {digest}…",
                kib, d.media_type
            ),
            format!("– {name}: {} KiB, {}, SHA-256 {digest}…", kib, d.media_type),
        ));
    }
    lines
}

/// The documents asked for, by name. A kind this notifier does not know
/// yet (instruction updated first) is still listed, by its number: a list
/// shorter than what is missing would let the file be closed for a
/// document the person was never told of.
fn missing_list(e: &pb::CaseEvent, l: Language) -> String {
    e.missing
        .iter()
        .map(|k| match pb::DocumentKind::try_from(*k) {
            Ok(kind) => document_name(kind, l).to_string(),
            Err(_) => t(l, format!("pièce n° {k}"), format!("document no. {k}")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_paragraphs(e: &pb::CaseEvent, l: Language) -> Vec<String> {
    let send_by = match &e.documents_deadline {
        Some(d) => t(
            l,
            format!(
                "Envoyez-les par courrier au plus tard le {} en rappelant le numéro de dossier, ou déposez-les en ligne ou au guichet.",
                date(d)
            ),
            format!(
                "Send them by post by {} quoting the file number, or upload them online or bring them to the desk.",
                date(d)
            ),
        ),
        None => t(
            l,
            "Envoyez-les par courrier dès que possible en rappelant le numéro de dossier, ou déposez-les en ligne ou au guichet.",
            "Send them by post as soon as possible quoting the file number, or upload them online or bring them to the desk.",
        ),
    };
    vec![
        t(
            l,
            format!(
                "Pour instruire votre demande, il manque : {}.",
                missing_list(e, l)
            ),
            format!(
                "To examine your application, we still need: {}.",
                missing_list(e, l)
            ),
        ),
        send_by,
        t(
            l,
            "Votre demande reste enregistrée à sa date de dépôt.",
            "Your application keeps its filing date.",
        ),
    ]
}

fn receipt(e: &pb::CaseEvent, person: &Person) -> Rendered {
    let l = person.language;
    let legal = e.legal_filing_date.as_ref().map(date);
    let mut recorded = vec![t(
        l,
        format!(
            "Votre demande est enregistrée sous le numéro {}.",
            e.reference
        ),
        format!("Your application is recorded under number {}.", e.reference),
    )];
    if let Some(d) = &legal {
        recorded.push(t(
            l,
            format!("Elle compte à la date du {d} : c'est sa date de dépôt."),
            format!("It counts from {d}: that is its filing date."),
        ));
    }
    let mut paragraphs = recorded.clone();
    if e.missing.is_empty() {
        paragraphs.push(t(
            l,
            "Votre dossier est complet. Il est instruit dans l'ordre de dépôt.",
            "Your file is complete. It is examined in the order of filing.",
        ));
    } else {
        paragraphs.extend(missing_paragraphs(e, l));
    }
    paragraphs.push(t(
        l,
        "Conservez ce message et le récépissé : ils prouvent le dépôt de votre demande.",
        "Keep this message and the receipt: they prove you filed.",
    ));
    let mut document = recorded;
    document.insert(
        0,
        t(
            l,
            format!("Demandeur : {}.", person.full_name()),
            format!("Applicant: {}.", person.full_name()),
        ),
    );
    if !e.prefecture.is_empty() {
        document.push(t(
            l,
            format!("Préfecture compétente : {}.", e.prefecture),
            format!("Prefecture in charge: {}.", e.prefecture),
        ));
    }
    document.extend(documents_received(e, l));
    let title = t(l, "récépissé de dépôt", "filing receipt");
    let mut sealed = vec![
        field("document", title.clone()),
        field("reference", e.reference.clone()),
        field("holder", person.full_name()),
    ];
    if let Some(d) = legal {
        sealed.push(field("legal_filing_date", d));
    }
    Rendered {
        subject: t(l, "demande enregistrée", "application recorded"),
        paragraphs,
        document: Some(Document {
            file_name: format!("recepisse-{}.pdf", e.reference),
            title,
            paragraphs: document,
            seal: Some(SealFields {
                kind: "receipt",
                fields: sealed,
            }),
        }),
        when: None,
    }
}

/// `None` when the event lacks the attestation, its first day or its
/// verification code: a paper that proves a stay must not go out with a
/// blank date or a code nobody can check.
fn attestation(e: &pb::CaseEvent, person: &Person) -> Option<Rendered> {
    let l = person.language;
    let a = e.attestation.as_ref()?;
    let from = date(a.valid_from.as_ref()?);
    if a.verification_code.trim().is_empty() {
        return None;
    }
    let period = match a.valid_until.as_ref() {
        Some(until) => t(
            l,
            format!("du {from} au {}", date(until)),
            format!("from {from} to {}", date(until)),
        ),
        None => t(
            l,
            format!("à partir du {from} et jusqu'à la remise de votre titre"),
            format!("from {from} until your permit is handed to you"),
        ),
    };
    // What the paper is, by the attestation's kind: the title printed and
    // signed.
    let title = match a.kind.as_str() {
        "favourable_decision" => t(
            l,
            "attestation de décision favorable",
            "attestation of a favourable decision",
        ),
        "rights_creating" => t(
            l,
            "attestation de dépôt créatrice de droits",
            "attestation of a rights-creating application",
        ),
        _ => t(
            l,
            "attestation de prolongation d'instruction",
            "attestation of lawful stay",
        ),
    };
    let proof = vec![
        t(
            l,
            format!(
                "{} a demandé le renouvellement de son titre de séjour (dossier {}). Cette attestation prouve la régularité de son séjour {period}.",
                person.full_name(),
                e.reference
            ),
            format!(
                "{} has applied to renew their residence permit (file {}). This attestation proves their lawful stay {period}.",
                person.full_name(),
                e.reference
            ),
        ),
        t(
            l,
            "Elle permet de continuer à travailler et de garder ses droits sociaux.",
            "It allows them to keep working and to keep their social rights.",
        ),
        t(
            l,
            format!("Code de vérification : {}.", a.verification_code),
            format!("Verification code: {}.", a.verification_code),
        ),
    ];
    Some(Rendered {
        subject: t(
            l,
            "attestation de prolongation d'instruction",
            "attestation of lawful stay while your application is examined",
        ),
        paragraphs: vec![
            t(
                l,
                format!(
                    "Une attestation est délivrée pour votre dossier {} : elle prouve la régularité de votre séjour {period}.",
                    e.reference
                ),
                format!(
                    "An attestation is issued for your file {}: it proves your lawful stay {period}.",
                    e.reference
                ),
            ),
            t(
                l,
                "Elle est jointe à ce message. Montrez-la à votre employeur ou aux organismes sociaux qui la demandent.",
                "It is attached to this message. Show it to your employer or to any benefits office that asks for it.",
            ),
            t(
                l,
                format!("Code de vérification : {}.", a.verification_code),
                format!("Verification code: {}.", a.verification_code),
            ),
        ],
        document: Some(Document {
            file_name: format!("attestation-{}.pdf", e.reference),
            seal: Some(SealFields {
                kind: "attestation",
                fields: {
                    let mut f = vec![
                        field("document", title.clone()),
                        field("reference", e.reference.clone()),
                        field("holder", person.full_name()),
                        field("valid_from", from.clone()),
                    ];
                    if let Some(until) = a.valid_until.as_ref() {
                        f.push(field("valid_until", date(until)));
                    }
                    f.push(field("verification_code", a.verification_code.clone()));
                    f
                },
            }),
            title,
            paragraphs: proof,
        }),
        when: None,
    })
}

fn decision(e: &pb::CaseEvent, l: Language) -> Rendered {
    if e.kind == "decided_favourable" {
        plain(
            t(l, "décision favorable", "favourable decision"),
            vec![t(
                l,
                format!(
                    "Une décision favorable a été prise sur votre dossier {}. Vous serez convoqué(e) pour la remise de votre titre.",
                    e.reference
                ),
                format!(
                    "A favourable decision was made on your file {}. You will be invited to collect your permit.",
                    e.reference
                ),
            )],
        )
    } else {
        plain(
            t(l, "décision", "decision"),
            vec![
                t(
                    l,
                    format!(
                        "Votre demande {} n'a pas été acceptée : {}.",
                        e.reference, e.reason
                    ),
                    format!(
                        "Your application {} was not accepted: {}.",
                        e.reference, e.reason
                    ),
                ),
                t(
                    l,
                    "Vous pouvez former un recours dans un délai de deux mois.",
                    "You may appeal within two months.",
                ),
            ],
        )
    }
}

fn closed(e: &pb::CaseEvent, l: Language) -> Rendered {
    let text = if e.kind == "withdrawn" {
        t(
            l,
            format!(
                "Votre dossier {} est clos : la demande a été retirée ({}).",
                e.reference, e.reason
            ),
            format!(
                "Your file {} is closed: the application was withdrawn ({}).",
                e.reference, e.reason
            ),
        )
    } else {
        match &e.documents_deadline {
            Some(d) => t(
                l,
                format!(
                    "Votre dossier {} est clos : les pièces demandées ({}) ne sont pas arrivées au plus tard le {}.",
                    e.reference,
                    missing_list(e, l),
                    date(d)
                ),
                format!(
                    "Your file {} is closed: the documents asked for ({}) did not arrive by {}.",
                    e.reference,
                    missing_list(e, l),
                    date(d)
                ),
            ),
            None => t(
                l,
                format!(
                    "Votre dossier {} est clos : les pièces demandées ({}) ne sont pas arrivées à temps.",
                    e.reference,
                    missing_list(e, l)
                ),
                format!(
                    "Your file {} is closed: the documents asked for ({}) did not arrive in time.",
                    e.reference,
                    missing_list(e, l)
                ),
            ),
        }
    };
    plain(t(l, "clôture du dossier", "file closed"), vec![text])
}

fn expiry(a: &pb::TitleExpiryAlert, l: Language) -> Option<Rendered> {
    let expires = date(a.expires_on.as_ref()?);
    let mut p = vec![t(
        l,
        format!(
            "Votre titre de séjour se terminant par {} expire le {expires}.",
            a.number_ending
        ),
        format!(
            "Your residence permit ending in {} expires on {expires}.",
            a.number_ending
        ),
    )];
    if let Some(by) = &a.renew_by {
        p.push(t(
            l,
            format!(
                "Pour garder vos droits sans interruption, demandez son renouvellement avant le {} : en ligne, par téléphone, au guichet ou par courrier.",
                date(by)
            ),
            format!(
                "To keep your rights without a break, apply to renew it before {}: online, by phone, at the desk or by post.",
                date(by)
            ),
        ));
    }
    Some(Rendered {
        subject: t(
            l,
            "votre titre de séjour expire bientôt",
            "your residence permit expires soon",
        ),
        paragraphs: p,
        document: None,
        when: Some(expires),
    })
}

fn appointment_notice(kind: NoticeKind, a: &pb::Appointment, person: &Person) -> Option<Rendered> {
    let l = person.language;
    let starts = a.starts_at.as_ref().and_then(convert::timestamp_from_pb)?;
    let when = notice::paris_when(starts, l);
    let (subject, text) = match kind {
        NoticeKind::AppointmentBooked => (
            t(l, "rendez-vous confirmé", "appointment confirmed"),
            t(
                l,
                format!(
                    "Votre rendez-vous au guichet de la préfecture est fixé le {when} (site {}, référence {}).",
                    a.site_id, a.id
                ),
                format!(
                    "Your appointment at the prefecture's desk is on {when} (site {}, reference {}).",
                    a.site_id, a.id
                ),
            ),
        ),
        NoticeKind::AppointmentMoved => (
            t(l, "rendez-vous déplacé", "appointment moved"),
            t(
                l,
                format!(
                    "Votre rendez-vous est déplacé au {when} (site {}, référence {}).",
                    a.site_id, a.id
                ),
                format!(
                    "Your appointment is moved to {when} (site {}, reference {}).",
                    a.site_id, a.id
                ),
            ),
        ),
        NoticeKind::AppointmentCancelled => (
            t(l, "rendez-vous annulé", "appointment cancelled"),
            t(
                l,
                format!(
                    "Votre rendez-vous du {when} (référence {}) est annulé. Votre demande peut être déposée en ligne, par téléphone ou par courrier.",
                    a.id
                ),
                format!(
                    "Your appointment of {when} (reference {}) is cancelled. You can still file online, by phone or by post.",
                    a.id
                ),
            ),
        ),
        _ => (
            t(l, "rappel de rendez-vous", "appointment reminder"),
            t(
                l,
                format!(
                    "Rappel : votre rendez-vous au guichet de la préfecture est le {when} (site {}, référence {}). Apportez les originaux de vos pièces.",
                    a.site_id, a.id
                ),
                format!(
                    "Reminder: your appointment at the prefecture's desk is on {when} (site {}, reference {}). Bring the originals of your documents.",
                    a.site_id, a.id
                ),
            ),
        ),
    };
    // A booking or a move comes with the notice to show at the desk: a
    // paper to keep, signed like the others.
    let document = matches!(
        kind,
        NoticeKind::AppointmentBooked | NoticeKind::AppointmentMoved
    )
    .then(|| {
        let title = t(l, "convocation au guichet", "appointment notice");
        Document {
            file_name: format!("convocation-{}.pdf", a.id),
            title: title.clone(),
            paragraphs: vec![
                t(
                    l,
                    format!(
                        "{} est attendu(e) au guichet de la préfecture le {when}.",
                        person.full_name()
                    ),
                    format!(
                        "{} is expected at the prefecture's desk on {when}.",
                        person.full_name()
                    ),
                ),
                t(
                    l,
                    format!("Site : {}. Référence du rendez-vous : {}.", a.site_id, a.id),
                    format!("Site: {}. Appointment reference: {}.", a.site_id, a.id),
                ),
                t(
                    l,
                    "Présentez cette convocation et les originaux de vos pièces.",
                    "Show this notice and the originals of your documents.",
                ),
            ],
            seal: Some(SealFields {
                kind: "appointment",
                fields: vec![
                    field("document", title),
                    field("appointment", a.id.clone()),
                    field("holder", person.full_name()),
                    field("when", when.clone()),
                    field("site", a.site_id.clone()),
                ],
            }),
        }
    });
    Some(Rendered {
        subject,
        paragraphs: vec![text],
        document,
        when: Some(when),
    })
}

/// The e-mail's subject line.
pub fn email_subject(r: &Rendered, reference: &str, l: Language) -> String {
    let mut s = r.subject.clone();
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + &s[1..];
    }
    t(
        l,
        format!("{s} ({reference}) - Préfecture"),
        format!("{s} ({reference}) - Prefecture"),
    )
}

/// The plain-text body of the e-mail.
pub fn email_text(r: &Rendered, person: &Person) -> String {
    text_body(person.language, &greeting(person), &r.paragraphs)
}

/// The HTML body of the e-mail: the same text, in the person's language.
pub fn email_html(r: &Rendered, person: &Person) -> String {
    html_body(
        person.language,
        &r.subject,
        &greeting(person),
        &r.paragraphs,
    )
}

/// A message's plain-text body when no name goes with it.
pub fn plain_email_text(l: Language, paragraphs: &[String]) -> String {
    text_body(l, &t(l, "Bonjour,", "Hello,"), paragraphs)
}

/// The same as HTML.
pub fn plain_email_html(l: Language, subject: &str, paragraphs: &[String]) -> String {
    html_body(l, subject, &t(l, "Bonjour,", "Hello,"), paragraphs)
}

fn greeting(person: &Person) -> String {
    t(
        person.language,
        format!("Bonjour {},", person.full_name()),
        format!("Dear {},", person.full_name()),
    )
}

fn text_body(l: Language, greeting: &str, paragraphs: &[String]) -> String {
    let mut text = format!("{greeting}\n\n");
    for p in paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
    }
    text.push_str(&t(
        l,
        "Ce message est envoyé automatiquement : n'y répondez pas.\nPréfecture - Service des étrangers\n",
        "This message is sent automatically: please do not reply.\nPrefecture - Foreign nationals' department\n",
    ));
    text
}

fn html_body(l: Language, subject: &str, greeting: &str, paragraphs: &[String]) -> String {
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><p>{}</p>",
        l.as_str(),
        escape(subject),
        escape(greeting),
    );
    for p in paragraphs {
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    html.push_str(&format!(
        "<p><small>{}</small></p></body></html>",
        escape(&t(
            l,
            "Ce message est envoyé automatiquement : n'y répondez pas. Préfecture - Service des étrangers",
            "This message is sent automatically: please do not reply. Prefecture - Foreign nationals' department",
        ))
    ));
    html
}

/// The kind of the person's own link a notice carries (`appointment`,
/// `report`, as the gateway checks it), if any: the booking and each move
/// of an appointment, and a report received.
pub fn follow_up_of(kind: NoticeKind) -> Option<&'static str> {
    match kind {
        NoticeKind::AppointmentBooked | NoticeKind::AppointmentMoved => Some("appointment"),
        NoticeKind::ReportReceived => Some("report"),
        _ => None,
    }
}

/// The paragraph that gives the person their follow-up code.
pub fn follow_up(l: Language, of: &str, secret: &str) -> String {
    match of {
        "report" => t(
            l,
            format!(
                "Pour suivre ce signalement, votre code de suivi personnel : {secret}. Ne le donnez à personne."
            ),
            format!(
                "To follow this report, your personal follow-up code: {secret}. Do not give it to anyone."
            ),
        ),
        _ => t(
            l,
            format!(
                "Pour voir, déplacer ou annuler ce rendez-vous, votre code de suivi personnel : {secret}. Ne le donnez à personne."
            ),
            format!(
                "To see, move or cancel this appointment, your personal follow-up code: {secret}. Do not give it to anyone."
            ),
        ),
    }
}

/// The access code's subject and paragraphs. Nothing of the file is said:
/// whoever reads the mailbox learns only that a code was asked for.
pub fn access_code(
    l: Language,
    reference: &str,
    code: &str,
    minutes: u32,
) -> (String, Vec<String>) {
    (
        t(
            l,
            format!("Votre code pour consulter le dossier {reference}"),
            format!("Your code to see file {reference}"),
        ),
        vec![
            t(
                l,
                format!("Votre code : {code}"),
                format!("Your code: {code}"),
            ),
            t(
                l,
                format!(
                    "Il permet de consulter le dossier {reference} pendant {minutes} minutes. Ne le donnez à personne : aucun agent ne vous le demandera."
                ),
                format!(
                    "It lets you see file {reference} for {minutes} minutes. Do not give it to anyone: no agent will ask you for it."
                ),
            ),
            t(
                l,
                "Si vous n'avez pas demandé ce code, ignorez ce message : personne ne peut voir votre dossier sans lui.",
                "If you did not ask for this code, ignore this message: nobody can see your file without it.",
            ),
        ],
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(language: Language) -> Person {
        Person {
            given_names: "Amina".into(),
            family_name: "Benali".into(),
            email: Some("amina@example.org".into()),
            phone: None,
            address: vec!["3 rue de Paris".into(), "59000 Lille".into()],
            answer: None,
            language,
        }
    }

    fn case(kind: &str) -> pb::CaseEvent {
        pb::CaseEvent {
            reference: "W-2026-ABCD-EFGH-K".into(),
            kind: kind.into(),
            missing: vec![pb::DocumentKind::Photo as i32],
            legal_filing_date: Some(pb::CalendarDate {
                year: 2026,
                month: 11,
                day: 2,
            }),
            attestation: Some(pb::AttestationView {
                valid_from: Some(pb::CalendarDate {
                    year: 2026,
                    month: 12,
                    day: 1,
                }),
                valid_until: Some(pb::CalendarDate {
                    year: 2027,
                    month: 2,
                    day: 28,
                }),
                verification_code: "AB12CD34".into(),
                ..Default::default()
            }),
            reason: "pièces contradictoires".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_case_notice_renders_in_both_languages_with_its_dates() {
        let table: &[(&str, NoticeKind, &str, &str)] = &[
            (
                "found_incomplete",
                NoticeKind::Receipt,
                "il manque : photographie d'identité",
                "we still need: identity photograph",
            ),
            (
                "found_incomplete",
                NoticeKind::Receipt,
                "date du 02/11/2026",
                "counts from 02/11/2026",
            ),
            (
                "documents_requested",
                NoticeKind::DocumentsMissing,
                "dès que possible",
                "as soon as possible",
            ),
            (
                "attestation_issued",
                NoticeKind::AttestationIssued,
                "du 01/12/2026 au 28/02/2027",
                "from 01/12/2026 to 28/02/2027",
            ),
            (
                "decided_unfavourable",
                NoticeKind::Decision,
                "pièces contradictoires",
                "two months",
            ),
            ("withdrawn", NoticeKind::Closed, "retirée", "withdrawn"),
        ];
        for (kind, notice, fr, en) in table {
            let event = Event::Case(case(kind));
            for (language, expected) in [(Language::Fr, fr), (Language::En, en)] {
                let r = render(*notice, &event, &person(language)).expect("renders");
                let text = r.paragraphs.join(" ");
                assert!(text.contains(expected), "{kind} {language}: {text}");
            }
        }
    }

    #[test]
    fn the_receipt_and_the_attestation_carry_their_document() {
        let p = person(Language::Fr);
        let r = render(
            NoticeKind::Receipt,
            &Event::Case(case("found_complete")),
            &p,
        )
        .unwrap();
        let d = r.document.unwrap();
        assert_eq!(d.file_name, "recepisse-W-2026-ABCD-EFGH-K.pdf");
        assert!(d.paragraphs.iter().any(|p| p.contains("Amina BENALI")));
        // The documents received, each identified by its digest.
        let with_documents = pb::CaseEvent {
            documents: vec![pb::DocumentReceipt {
                kind: pb::DocumentKind::Passport as i32,
                sha256: "32b7b0a233ed8fadd282726a2c8a55e41d4226".into(),
                size_bytes: 180_000,
                media_type: "application/pdf".into(),
                ..Default::default()
            }],
            ..case("filed")
        };
        for (language, heading, line) in [
            (
                Language::Fr,
                "Documents reçus (1) :",
                "– passeport : 176 Kio, application/pdf, empreinte SHA-256 32b7b0a233ed8fad…",
            ),
            (
                Language::En,
                "Documents received (1):",
                "– passport: 176 KiB, application/pdf, SHA-256 32b7b0a233ed8fad…",
            ),
        ] {
            let r = render(
                NoticeKind::Receipt,
                &Event::Case(with_documents.clone()),
                &person(language),
            )
            .unwrap();
            let d = r.document.unwrap();
            assert!(
                d.paragraphs.iter().any(|p| p == heading),
                "{:?}",
                d.paragraphs
            );
            assert!(d.paragraphs.iter().any(|p| p == line), "{:?}", d.paragraphs);
        }
        let r = render(
            NoticeKind::AttestationIssued,
            &Event::Case(case("attestation_issued")),
            &p,
        )
        .unwrap();
        assert!(
            r.document
                .unwrap()
                .paragraphs
                .iter()
                .any(|p| p.contains("AB12CD34"))
        );
        let r = render(
            NoticeKind::Decision,
            &Event::Case(case("decided_favourable")),
            &p,
        )
        .unwrap();
        assert!(r.document.is_none());
    }

    #[test]
    fn a_notice_the_event_cannot_fill_is_not_sent() {
        let alert = pb::TitleExpiryAlert::default();
        assert!(
            render(
                NoticeKind::ExpiryAlert,
                &Event::Title(alert),
                &person(Language::Fr)
            )
            .is_none()
        );
        let appointment = Event::Appointment {
            step: "booked".into(),
            appointment: pb::Appointment::default(),
        };
        assert!(
            render(
                NoticeKind::AppointmentBooked,
                &appointment,
                &person(Language::En)
            )
            .is_none()
        );
        // An attestation without itself, its first day or its code: a paper
        // proving a stay "from  until ..." or with no code to check.
        let without_attestation = pb::CaseEvent {
            attestation: None,
            ..case("attestation_issued")
        };
        let mut without_first_day = case("attestation_issued");
        if let Some(a) = without_first_day.attestation.as_mut() {
            a.valid_from = None;
        }
        let mut without_code = case("attestation_issued");
        if let Some(a) = without_code.attestation.as_mut() {
            a.verification_code = " ".into();
        }
        let nothing_missing = pb::CaseEvent {
            missing: Vec::new(),
            ..case("documents_requested")
        };
        assert!(
            render(
                NoticeKind::DocumentsMissing,
                &Event::Case(nothing_missing),
                &person(Language::Fr)
            )
            .is_none()
        );
        for e in [without_attestation, without_first_day, without_code] {
            let rendered = render(
                NoticeKind::AttestationIssued,
                &Event::Case(e),
                &person(Language::Fr),
            );
            assert!(rendered.is_none());
        }
        let whole = render(
            NoticeKind::AttestationIssued,
            &Event::Case(case("attestation_issued")),
            &person(Language::Fr),
        );
        assert!(whole.is_some());
    }

    /// A kind this notifier does not know yet is named by its number, not
    /// left out of the list.
    #[test]
    fn a_document_kind_not_known_yet_is_still_listed() {
        let e = pb::CaseEvent {
            missing: vec![pb::DocumentKind::Photo as i32, 9_999],
            ..case("documents_requested")
        };
        for (l, expected) in [
            (Language::Fr, "photographie d'identité, pièce n° 9999"),
            (Language::En, "identity photograph, document no. 9999"),
        ] {
            assert_eq!(missing_list(&e, l), expected);
        }
    }

    #[test]
    fn html_is_escaped_and_says_its_language() {
        let mut e = case("decided_unfavourable");
        e.reason = "<script>".into();
        let p = person(Language::En);
        let r = render(NoticeKind::Decision, &Event::Case(e), &p).unwrap();
        let html = email_html(&r, &p);
        assert!(html.contains("lang=\"en\""));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert_eq!(
            email_subject(&r, "W-1", Language::En),
            "Decision (W-1) - Prefecture"
        );
    }
}
