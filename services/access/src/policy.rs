//! The one policy table: every REST route (method and path template, as
//! axum's `MatchedPath` shows it) and every gRPC method (full name) → who
//! may call it → in what scope. Reviewed as data; `docs/access.md` is
//! rendered from it and a test keeps the two the same.
//!
//! A rule's grants are tried in order and the first that admits the caller
//! wins, so a rule lists its wider views first (the queue: an instructor's
//! full view of their prefecture before anyone's public one).

use std::fmt;

use crate::{Role, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// `GET`, `get`, ...; `None` for a method no route uses (HEAD is
    /// answered as GET by axum, so it is judged as GET).
    pub fn parse(s: &str) -> Option<Method> {
        [
            Method::Get,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .or_else(|| s.eq_ignore_ascii_case("HEAD").then_some(Method::Get))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A REST route: its method and path template (`/api/v1/appointments/{id}`).
    Rest { method: Method, path: &'static str },
    /// A gRPC method by full name (`guichet.v1.Desk/UpsertSite`).
    Grpc { method: &'static str },
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Rest { method, path } => write!(f, "{} {path}", method.as_str()),
            Operation::Grpc { method } => f.write_str(method),
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// Anyone, signed in or not; not a scanning station, which may only upload.
    Anyone,
    /// A person by what they proved: a dossier's reference and birth date,
    /// or an appointment's or report's secret link.
    Person,
    /// A person who also gave the one-time code sent to their contact.
    PersonWithCode,
    /// An agent holding the role (directly, or through a machine client of
    /// a kind allowed that role).
    Role(Role),
    /// A mailroom scanning station.
    Station,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Anyone => f.write_str("anyone"),
            Who::Person => f.write_str("person"),
            Who::PersonWithCode => f.write_str("person with one-time code"),
            Who::Role(r) => f.write_str(r.as_str()),
            Who::Station => f.write_str("scanning station"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    pub who: Who,
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub operation: Operation,
    pub grants: &'static [Grant],
    /// Why, in a few words, for the reviewer and `docs/access.md`.
    pub why: &'static str,
}

const fn grant(who: Who, scope: Scope) -> Grant {
    Grant { who, scope }
}

const fn role(r: Role, scope: Scope) -> Grant {
    grant(Who::Role(r), scope)
}

const fn get(path: &'static str) -> Operation {
    Operation::Rest {
        method: Method::Get,
        path,
    }
}

const fn post(path: &'static str) -> Operation {
    Operation::Rest {
        method: Method::Post,
        path,
    }
}

const fn put(path: &'static str) -> Operation {
    Operation::Rest {
        method: Method::Put,
        path,
    }
}

const fn delete(path: &'static str) -> Operation {
    Operation::Rest {
        method: Method::Delete,
        path,
    }
}

const fn grpc(method: &'static str) -> Operation {
    Operation::Grpc { method }
}

const fn rule(operation: Operation, grants: &'static [Grant], why: &'static str) -> Rule {
    Rule {
        operation,
        grants,
        why,
    }
}

use Role::{CallCentreAgent, DeskAgent, Instructor, MailroomOperator, Operator, Supervisor};
use Scope::{Any, OwnAppointment, OwnDossier, OwnHeldCase, OwnPrefecture, OwnReport};

// ---- who, by kind of work ------------------------------------------------------

const ANYONE: &[Grant] = &[grant(Who::Anyone, Any)];
/// Instruction in the agent's prefectures.
const INSTRUCTION: &[Grant] = &[
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
];
/// Acts on a case: only by the agent holding it.
const HOLDER: &[Grant] = &[role(Instructor, OwnHeldCase), role(Supervisor, OwnHeldCase)];
/// The queue: agents see their prefectures' in full, anyone else a public
/// view without references.
const QUEUE: &[Grant] = &[
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    grant(Who::Anyone, Any),
];
/// A dossier's state and history: its holder once they gave the code, and
/// the agents who deal with it.
const DOSSIER_VIEW: &[Grant] = &[
    grant(Who::PersonWithCode, OwnDossier),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(DeskAgent, OwnPrefecture),
    role(CallCentreAgent, Any),
];
/// A document arrived for a dossier: whoever received it.
const DOCUMENT_RECEIVERS: &[Grant] = &[
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(DeskAgent, OwnPrefecture),
    role(MailroomOperator, Any),
];
/// The card handed over at a desk: the desk agents and supervisors of its
/// prefecture.
const CARD_DESKS: &[Grant] = &[
    role(DeskAgent, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
];
/// Documents sent later for a dossier: its person with their code, or the
/// agent who received them.
const DOCUMENT_SENDERS: &[Grant] = &[
    grant(Who::PersonWithCode, OwnDossier),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(DeskAgent, OwnPrefecture),
    role(MailroomOperator, Any),
];
/// A document's bytes: its person with their code, and the agents of its
/// prefecture who instruct it or meet the person.
const DOCUMENT_READERS: &[Grant] = &[
    grant(Who::PersonWithCode, OwnDossier),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(DeskAgent, OwnPrefecture),
];
/// Where a file stands: anyone with its reference and birth date; whom it
/// names too, for its person with the code.
const STATUS: &[Grant] = &[
    grant(Who::PersonWithCode, OwnDossier),
    grant(Who::Anyone, Any),
];
/// The person of a dossier, by what they proved of it.
const PERSON: &[Grant] = &[grant(Who::Person, OwnDossier)];
/// An appointment: its person by their link, and the agents who book.
const APPOINTMENT: &[Grant] = &[
    grant(Who::Person, OwnAppointment),
    role(DeskAgent, OwnPrefecture),
    role(CallCentreAgent, Any),
];
/// A report, as its person follows it by their link.
const REPORT_READERS: &[Grant] = &[
    grant(Who::Person, OwnReport),
    role(CallCentreAgent, Any),
    role(DeskAgent, OwnPrefecture),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
];
/// Reports, for the agents: the call centre everywhere, the prefecture
/// that must answer for its own.
const REPORT_AGENTS: &[Grant] = &[
    role(CallCentreAgent, Any),
    role(DeskAgent, OwnPrefecture),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
];
/// A report answered with an alternative: the call centre, which books a
/// desk appointment on the phone (the decree's non-digital route), or the
/// prefecture that must answer.
const REPORT_ANSWERS: &[Grant] = &[
    role(CallCentreAgent, Any),
    role(DeskAgent, OwnPrefecture),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
];
const CALL_CENTRE: &[Grant] = &[role(CallCentreAgent, Any)];
const DESK: &[Grant] = &[role(DeskAgent, OwnPrefecture)];
/// Appointments through the agents' software.
const BOOKING_AGENTS: &[Grant] = &[role(DeskAgent, OwnPrefecture), role(CallCentreAgent, Any)];
const SITE_ADMIN: &[Grant] = &[role(Supervisor, OwnPrefecture)];
const MAILROOM: &[Grant] = &[role(MailroomOperator, Any)];
const UPLOADERS: &[Grant] = &[grant(Who::Station, Any), role(MailroomOperator, Any)];
/// Forms, blank or pre-filled: whoever sends a person a paper kit.
const FORM_PRINTERS: &[Grant] = &[
    role(MailroomOperator, Any),
    role(CallCentreAgent, Any),
    role(DeskAgent, Any),
];

/// A document shown in the agents' workspace: the agents of its
/// prefecture who instruct it or meet the person.
const AGENT_DOCUMENT_READERS: &[Grant] = &[
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(DeskAgent, OwnPrefecture),
];

/// What was sent to a person and where it stands: the agents who answer
/// them, and the operators who chase what failed.
const NOTICE_READERS: &[Grant] = &[
    role(CallCentreAgent, Any),
    role(DeskAgent, OwnPrefecture),
    role(Instructor, OwnPrefecture),
    role(Supervisor, OwnPrefecture),
    role(Operator, Any),
];

/// Agents and their roles: supervisors for their prefectures, operators
/// (who audit) everywhere.
const AGENT_ADMINS: &[Grant] = &[role(Supervisor, OwnPrefecture), role(Operator, Any)];
/// Changing an agent's roles: a supervisor, in their prefectures; national
/// roles are granted with `guichet agents grant` on the servers.
const AGENT_GRANTORS: &[Grant] = &[role(Supervisor, OwnPrefecture)];
/// The audit log: supervisors for their prefectures, auditors everywhere.
const AUDITORS: &[Grant] = &[role(Supervisor, OwnPrefecture), role(Operator, Any)];

// ---- the table ---------------------------------------------------------------------

pub const TABLE: &[Rule] = &[
    // -- the person and the public
    rule(
        post("/api/v1/dossiers"),
        ANYONE,
        "filing online needs no account",
    ),
    rule(
        get("/api/v1/dossiers/{reference}"),
        DOSSIER_VIEW,
        "history of a dossier: the reference alone must not reveal it",
    ),
    rule(
        get("/api/v1/dossiers/{reference}/notices"),
        NOTICE_READERS,
        "what the person was sent and whether it reached them, without addresses",
    ),
    rule(
        get("/api/v1/dossiers/{reference}/status"),
        STATUS,
        "the birth date is the check; wrong ones are rate-limited; state, cover, attestations and delay only (whom the file names too, with the person's code)",
    ),
    rule(
        post("/api/v1/dossiers/{reference}/documents"),
        DOCUMENT_SENDERS,
        "files for a dossier, each screened and virus-scanned; a receipt each, completeness recomputed",
    ),
    rule(
        get("/api/v1/dossiers/{reference}/documents/{sha256}"),
        DOCUMENT_READERS,
        "a document's bytes, only of the dossier it was received for, as an attachment",
    ),
    rule(
        get("/api/v1/dossiers/{reference}/papers"),
        DOCUMENT_READERS,
        "the receipt and attestations the person keeps: listed",
    ),
    rule(
        get("/api/v1/dossiers/{reference}/papers/{id}"),
        DOCUMENT_READERS,
        "one of them as a PDF with its signed code, in French or English",
    ),
    rule(
        post("/api/v1/dossiers/{reference}/code"),
        ANYONE,
        "the birth date is the check; the code goes only to the contact on the file, three per 15 minutes",
    ),
    rule(
        get("/api/v1/queue"),
        QUEUE,
        "agents see their prefectures in full; the public view shows no reference",
    ),
    rule(get("/api/v1/processing-times"), ANYONE, "published figures"),
    rule(
        get("/api/v1/attestations/{code}"),
        ANYONE,
        "an employer checks an attestation: name, kind, validity only; rate-limited",
    ),
    rule(
        get("/api/v1/equity"),
        ANYONE,
        "published figures, no personal data",
    ),
    // -- instruction
    rule(
        post("/api/v1/agent/queue/next"),
        INSTRUCTION,
        "takes the next case of the prefecture asked, one of the agent's",
    ),
    rule(
        get("/api/v1/agent/dossiers/{reference}"),
        INSTRUCTION,
        "the whole file, personal data included; every read audited",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/document-requests"),
        HOLDER,
        "acts on the case: its holder only",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/documents"),
        DOCUMENT_RECEIVERS,
        "records a document received at the desk, by post or by the instructor",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/decision"),
        HOLDER,
        "a decision issues attestations: its holder only, after a recorded take-over if another held it",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/card-handover"),
        CARD_DESKS,
        "the card in the person's hands ends the favourable-decision attestation; the desks of its prefecture",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/withdrawal"),
        HOLDER,
        "ends the case: its holder only",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/link"),
        HOLDER,
        "links two filings: the holder of the second",
    ),
    rule(
        post("/api/v1/agent/dossiers/{reference}/takeover"),
        INSTRUCTION,
        "takes a case held by another agent, or by nobody: recorded with its reason",
    ),
    // -- the agents' workspace (`/agents`, and under `/en` in English): the
    // same operations as the agents' API, under the same grants, signed in
    // by the browser session.
    rule(
        get("/agents"),
        ANYONE,
        "the workspace's door: sign in, then what the agent's roles open",
    ),
    rule(
        post("/agents/deconnexion"),
        ANYONE,
        "ends the browser session, whoever holds it",
    ),
    rule(
        get("/agents/instruction"),
        INSTRUCTION,
        "the queue of the agent's prefectures with its filters, as GET /api/v1/queue in full",
    ),
    rule(
        post("/agents/instruction/suivant"),
        INSTRUCTION,
        "as POST /api/v1/agent/queue/next",
    ),
    rule(
        get("/agents/dossiers/{reference}"),
        INSTRUCTION,
        "as GET /api/v1/agent/dossiers/{reference}: the whole case; every read audited",
    ),
    rule(
        get("/agents/dossiers/{reference}/documents/{sha256}"),
        AGENT_DOCUMENT_READERS,
        "a document beside its case, in the browser's own viewer",
    ),
    rule(
        get("/agents/dossiers/{reference}/documents/{sha256}/fichier"),
        AGENT_DOCUMENT_READERS,
        "the document's bytes inline for that viewer: exact type, no sniffing, framed by Guichet only",
    ),
    rule(
        post("/agents/dossiers/{reference}/reprise"),
        INSTRUCTION,
        "as POST /api/v1/agent/dossiers/{reference}/takeover",
    ),
    rule(
        post("/agents/dossiers/{reference}/pieces"),
        HOLDER,
        "as POST /api/v1/agent/dossiers/{reference}/document-requests",
    ),
    rule(
        post("/agents/dossiers/{reference}/decision"),
        HOLDER,
        "as POST /api/v1/agent/dossiers/{reference}/decision",
    ),
    rule(
        post("/agents/dossiers/{reference}/desistement"),
        HOLDER,
        "as POST /api/v1/agent/dossiers/{reference}/withdrawal",
    ),
    rule(
        post("/agents/dossiers/{reference}/rapprochement"),
        HOLDER,
        "as POST /api/v1/agent/dossiers/{reference}/link",
    ),
    rule(
        get("/agents/centre-appels"),
        CALL_CENTRE,
        "the call centre's desk: look-up, new report, reports waiting on their clock",
    ),
    rule(
        post("/agents/centre-appels/consultation"),
        CALL_CENTRE,
        "as the call centre's status look-up: the caller's birth date is the check",
    ),
    rule(
        get("/agents/centre-appels/depot"),
        CALL_CENTRE,
        "the filing form the agent fills in on the phone",
    ),
    rule(
        post("/agents/centre-appels/depot"),
        CALL_CENTRE,
        "files for the caller with their recorded consent, as guichet.v1.CallCentre/FileOnBehalf",
    ),
    rule(
        post("/agents/signalements"),
        CALL_CENTRE,
        "opens a report for a blocked caller, as guichet.v1.CallCentre/OpenReport",
    ),
    rule(
        get("/agents/signalements/{id}"),
        REPORT_AGENTS,
        "a report with the person's contact, on its clock",
    ),
    rule(
        post("/agents/signalements/{id}/rendez-vous"),
        REPORT_ANSWERS,
        "books a desk appointment of the report's prefecture by phone and offers it",
    ),
    rule(
        post("/agents/signalements/{id}/kit"),
        REPORT_ANSWERS,
        "offers a paper filing kit sent to the report's address",
    ),
    rule(
        get("/agents/courrier"),
        MAILROOM,
        "envelopes waiting for keying, letters to print and post",
    ),
    rule(
        get("/agents/courrier/plis/{id}"),
        MAILROOM,
        "the keying screen: page images beside the fields read",
    ),
    rule(
        post("/agents/courrier/plis/{id}/saisie"),
        MAILROOM,
        "as POST /api/v1/postal/envelopes/{id}/confirmation",
    ),
    rule(
        post("/agents/courrier/plis/{id}/orientation"),
        MAILROOM,
        "as POST /api/v1/postal/envelopes/{id}/routing",
    ),
    rule(
        post("/agents/courrier/plis/{id}/rattachement"),
        MAILROOM,
        "as POST /api/v1/postal/envelopes/{id}/attachment",
    ),
    rule(
        post("/agents/courrier/lettres/{id}/impression"),
        MAILROOM,
        "a letter marked printed, as guichet.v1.Postal/MarkLetter",
    ),
    rule(
        post("/agents/courrier/lettres/{id}/envoi"),
        MAILROOM,
        "a letter marked posted, as guichet.v1.Postal/MarkLetter",
    ),
    rule(
        get("/agents/supervision"),
        AGENT_ADMINS,
        "agents and roles of the supervisor's prefectures, reports past their deadline",
    ),
    rule(
        post("/agents/supervision/habilitations"),
        AGENT_GRANTORS,
        "as PUT /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}",
    ),
    rule(
        post("/agents/supervision/habilitations/retrait"),
        AGENT_GRANTORS,
        "as DELETE /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}",
    ),
    rule(
        get("/agents/journal"),
        AUDITORS,
        "as GET /api/v1/admin/audit",
    ),
    rule(
        get("/agents/guichet"),
        CARD_DESKS,
        "a site's appointments of the day, with names and contacts",
    ),
    rule(
        post("/agents/guichet/rendez-vous/{id}/presence"),
        CARD_DESKS,
        "came or did not, as guichet.v1.Desk/RecordAttendance",
    ),
    rule(
        get("/agents/guichet/depot"),
        DESK,
        "the filing form the desk fills in with the person present",
    ),
    rule(
        post("/agents/guichet/depot"),
        DESK,
        "files at the desk with the documents scanned there, as guichet.v1.Desk/FileAssisted",
    ),
    rule(
        post("/agents/guichet/remise"),
        CARD_DESKS,
        "as POST /api/v1/agent/dossiers/{reference}/card-handover",
    ),
    // -- the open data of the independent evaluation
    rule(
        get("/donnees"),
        ANYONE,
        "the evaluation's figures with charts, and their downloads",
    ),
    rule(
        get("/donnees/schema.json"),
        ANYONE,
        "the downloads' documented schema",
    ),
    rule(
        get("/donnees/{year}/evaluation.csv"),
        ANYONE,
        "open data, no personal data: cells under the minimum count withheld",
    ),
    rule(
        get("/donnees/{year}/evaluation.json"),
        ANYONE,
        "the same, with each month's national totals",
    ),
    // -- the persons' pages (`/`, and the same under `/en` in English). A
    // page shows what the API route it fronts shows, under the same grants.
    rule(
        get("/"),
        ANYONE,
        "home: what one can do here and every other way to file",
    ),
    rule(
        get("/formulaire"),
        ANYONE,
        "the blank paper form, to file by post; nothing kept",
    ),
    rule(
        get("/static/{file}"),
        ANYONE,
        "the pages' stylesheet (DSFR and Guichet's rules)",
    ),
    rule(
        get("/dsfr/{version}/{*path}"),
        ANYONE,
        "the design system's fonts and icons",
    ),
    rule(
        get("/deposer"),
        ANYONE,
        "how filing online goes, and resuming a saved filing",
    ),
    rule(
        post("/deposer"),
        ANYONE,
        "starts a draft filing, kept by the hash of its link's secret",
    ),
    rule(
        post("/deposer/reprendre"),
        ANYONE,
        "back to a draft by the secret of its link",
    ),
    rule(
        get("/deposer/{draft}/etape/{step}"),
        ANYONE,
        "a step of a draft: its link's secret is the check",
    ),
    rule(
        post("/deposer/{draft}/etape/{step}"),
        ANYONE,
        "saves a step of a draft, checked by intake's rules: its link's secret is the check",
    ),
    rule(
        post("/deposer/{draft}/documents"),
        ANYONE,
        "a draft's documents, screened and virus-scanned as they stream: its link's secret is the check",
    ),
    rule(
        post("/deposer/{draft}/envoi"),
        ANYONE,
        "files the draft with intake, as POST /api/v1/dossiers does",
    ),
    rule(
        get("/deposer/{draft}/recepisse"),
        ANYONE,
        "the receipt's page: what the filing's answer said, by the draft's link",
    ),
    rule(
        get("/deposer/{draft}/recepisse/pdf"),
        PERSON,
        "the sealed receipt: the draft's link proves the person who filed",
    ),
    rule(
        get("/mon-dossier"),
        ANYONE,
        "asks for a reference and a birth date",
    ),
    rule(
        post("/mon-dossier"),
        STATUS,
        "as GET /api/v1/dossiers/{reference}/status: the birth date is the check, with the code the file's details",
    ),
    rule(
        post("/mon-dossier/code"),
        ANYONE,
        "as POST /api/v1/dossiers/{reference}/code: the code goes only to the contact on the file",
    ),
    rule(
        post("/mon-dossier/documents"),
        DOCUMENT_SENDERS,
        "missing documents, with the person's code, as POST /api/v1/dossiers/{reference}/documents",
    ),
    rule(
        post("/mon-dossier/papier"),
        DOCUMENT_READERS,
        "a receipt or attestation as a PDF, with the person's code (posted, never in an address)",
    ),
    rule(get("/rendez-vous"), ANYONE, "the desks of a département"),
    rule(
        get("/rendez-vous/lieu/{site}"),
        ANYONE,
        "a desk's free slots on a day",
    ),
    rule(
        post("/rendez-vous/lieu/{site}"),
        ANYONE,
        "books online, as POST /api/v1/appointments",
    ),
    rule(
        get("/rendez-vous/suivi/{id}"),
        APPOINTMENT,
        "an appointment, by its person's link",
    ),
    rule(
        post("/rendez-vous/suivi/{id}/annulation"),
        APPOINTMENT,
        "cancels an appointment, by its person's link",
    ),
    rule(
        post("/rendez-vous/suivi/{id}/deplacement"),
        APPOINTMENT,
        "moves an appointment, by its person's link",
    ),
    rule(
        get("/bloque"),
        ANYONE,
        "how to say the site failed, and what will be offered",
    ),
    rule(
        post("/bloque"),
        ANYONE,
        "opens a report on the call centre's clock for a person the site failed",
    ),
    rule(
        get("/bloque/{id}"),
        REPORT_READERS,
        "a report, by its person's link",
    ),
    rule(
        get("/verifier"),
        ANYONE,
        "checking an attestation: the form",
    ),
    rule(
        post("/verifier"),
        ANYONE,
        "as GET /api/v1/attestations/{code}, or by a 2D code's signed text; rate-limited the same",
    ),
    // -- agents' browser sign-in
    rule(
        get("/auth/login"),
        ANYONE,
        "starts the sign-in at the identity provider",
    ),
    rule(
        get("/auth/callback"),
        ANYONE,
        "the provider's answer, checked (state, PKCE, ID token) before a session opens",
    ),
    rule(
        get("/auth/session"),
        ANYONE,
        "who the session's cookie signs in, and its CSRF token; 401 without one",
    ),
    rule(
        post("/auth/logout"),
        ANYONE,
        "ends the session (with its CSRF token)",
    ),
    // -- agents, roles and the audit log
    rule(
        get("/api/v1/admin/agents"),
        AGENT_ADMINS,
        "who works where, with which roles: no dossier",
    ),
    rule(
        put("/api/v1/admin/agents/{uid}/grants/{role}/{prefecture}"),
        AGENT_GRANTORS,
        "grants a role in one prefecture; audited",
    ),
    rule(
        delete("/api/v1/admin/agents/{uid}/grants/{role}/{prefecture}"),
        AGENT_GRANTORS,
        "revokes it; audited",
    ),
    rule(
        get("/api/v1/admin/audit"),
        AUDITORS,
        "who read or changed what, when, from where",
    ),
    // -- appointments and reports
    rule(get("/api/v1/sites"), ANYONE, "where one can be received"),
    rule(
        get("/api/v1/sites/{site}/slots"),
        ANYONE,
        "free places, no names",
    ),
    rule(
        post("/api/v1/appointments"),
        ANYONE,
        "booking online needs no account; the answer carries the appointment's secret link",
    ),
    rule(
        get("/api/v1/appointments/{id}"),
        APPOINTMENT,
        "names and contact: the person's link or a booking agent, not the id alone",
    ),
    rule(
        get("/api/v1/appointments/{id}/notice"),
        APPOINTMENT,
        "the convocation as a sealed PDF: its person by their link, or a booking agent",
    ),
    rule(
        post("/api/v1/appointments/{id}/move"),
        APPOINTMENT,
        "the person's link or a booking agent, not the id alone",
    ),
    rule(
        post("/api/v1/appointments/{id}/cancellation"),
        APPOINTMENT,
        "the person's link or a booking agent, not the id alone",
    ),
    rule(
        get("/api/v1/reports/{id}"),
        REPORT_READERS,
        "the person follows their report by its link; the prefecture sees its own",
    ),
    rule(
        post("/api/v1/agent/reports/{id}/alternative"),
        REPORT_ANSWERS,
        "the prefecture of residence answers the report, or the call centre with a desk appointment it books",
    ),
    // -- the postal channel
    rule(
        post("/api/v1/postal/forms"),
        FORM_PRINTERS,
        "prints a form (stored, signed): agents sending a paper kit",
    ),
    rule(
        get("/api/v1/postal/separators"),
        MAILROOM,
        "separator sheets for stacks",
    ),
    rule(
        post("/api/v1/postal/batches"),
        UPLOADERS,
        "a scanning station uploads, and nothing else",
    ),
    rule(
        get("/api/v1/postal/batches/{id}"),
        MAILROOM,
        "pages and their outcome",
    ),
    rule(
        get("/api/v1/postal/keying"),
        MAILROOM,
        "envelopes waiting, with OCR text",
    ),
    rule(
        get("/api/v1/postal/envelopes/{id}"),
        MAILROOM,
        "an envelope's pages and OCR text",
    ),
    rule(
        post("/api/v1/postal/envelopes/{id}/confirmation"),
        MAILROOM,
        "the operator's keying makes a dossier",
    ),
    rule(
        post("/api/v1/postal/envelopes/{id}/routing"),
        MAILROOM,
        "sends on what is not a filing",
    ),
    rule(
        post("/api/v1/postal/envelopes/{id}/attachment"),
        MAILROOM,
        "an envelope answering a request for documents: its pages become the dossier's documents",
    ),
    rule(
        get("/api/v1/postal/pages/{sha256}"),
        MAILROOM,
        "a scanned page",
    ),
    rule(
        get("/api/v1/postal/letters"),
        MAILROOM,
        "letters to print, with addresses",
    ),
    rule(
        get("/api/v1/postal/letters/{id}"),
        MAILROOM,
        "a letter to print",
    ),
    // -- the system
    rule(
        get("/api/openapi.json"),
        ANYONE,
        "the API's own description",
    ),
    rule(
        get("/ops"),
        ANYONE,
        "key figures, no personal data (the same as /metrics)",
    ),
    rule(
        get("/metrics"),
        ANYONE,
        "figures for the scraper, no personal data; keep the port inside the network",
    ),
    rule(get("/healthz"), ANYONE, "liveness for the orchestrator"),
    rule(
        get("/.well-known/jwks.json"),
        ANYONE,
        "the public keys persons' documents are signed with: anyone checks a paper",
    ),
    rule(get("/readyz"), ANYONE, "readiness for the orchestrator"),
    // -- gRPC: call centre
    rule(
        grpc("guichet.v1.CallCentre/FileOnBehalf"),
        CALL_CENTRE,
        "files for a caller, with their recorded consent",
    ),
    rule(
        grpc("guichet.v1.CallCentre/OpenReport"),
        CALL_CENTRE,
        "opens a report for a blocked caller",
    ),
    rule(
        grpc("guichet.v1.CallCentre/GetReport"),
        REPORT_AGENTS,
        "a report, with the person's contact",
    ),
    rule(
        grpc("guichet.v1.CallCentre/ListReports"),
        REPORT_AGENTS,
        "reports with phone numbers: a prefecture's agents filter on their own",
    ),
    rule(
        grpc("guichet.v1.CallCentre/OfferAlternative"),
        REPORT_ANSWERS,
        "the prefecture of residence answers the report, or the call centre with a desk appointment it books",
    ),
    rule(
        grpc("guichet.v1.CallCentre/RecordOutcome"),
        REPORT_AGENTS,
        "how the report ended",
    ),
    rule(
        grpc("guichet.v1.CallCentre/LookUpStatus"),
        CALL_CENTRE,
        "the caller's birth date is the check",
    ),
    // -- gRPC: desk
    rule(
        grpc("guichet.v1.Desk/UpsertSite"),
        SITE_ADMIN,
        "a site's opening hours and desks: its prefecture's supervisors",
    ),
    rule(
        grpc("guichet.v1.Desk/ListSites"),
        ANYONE,
        "public, as over REST",
    ),
    rule(
        grpc("guichet.v1.Desk/ListSlots"),
        ANYONE,
        "public, as over REST",
    ),
    rule(
        grpc("guichet.v1.Desk/Book"),
        BOOKING_AGENTS,
        "booking by phone or at the desk",
    ),
    rule(
        grpc("guichet.v1.Desk/Move"),
        BOOKING_AGENTS,
        "by phone or at the desk",
    ),
    rule(
        grpc("guichet.v1.Desk/Cancel"),
        BOOKING_AGENTS,
        "by phone or at the desk",
    ),
    rule(
        grpc("guichet.v1.Desk/RecordAttendance"),
        DESK,
        "the desk records who came",
    ),
    rule(
        grpc("guichet.v1.Desk/GetAppointment"),
        BOOKING_AGENTS,
        "names and contact",
    ),
    rule(
        grpc("guichet.v1.Desk/ListAppointments"),
        CARD_DESKS,
        "a site's day, with names and contacts: the desks of its prefecture",
    ),
    rule(
        grpc("guichet.v1.Desk/FileAssisted"),
        DESK,
        "files with the person present",
    ),
    // -- gRPC: postal
    rule(
        grpc("guichet.v1.Postal/PrintForm"),
        FORM_PRINTERS,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/PrintSeparators"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/UploadBatch"),
        UPLOADERS,
        "a scanning station uploads, and nothing else",
    ),
    rule(grpc("guichet.v1.Postal/GetBatch"), MAILROOM, "as over REST"),
    rule(
        grpc("guichet.v1.Postal/ListKeying"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/GetEnvelope"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/ConfirmEnvelope"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/RouteEnvelope"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/AttachEnvelope"),
        MAILROOM,
        "closes the envelope only: a gRPC client records the pages first with InstructionDesk/AddDocument, as the REST route does",
    ),
    rule(grpc("guichet.v1.Postal/GetPage"), MAILROOM, "as over REST"),
    rule(
        grpc("guichet.v1.Postal/ListLetters"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/GetLetter"),
        MAILROOM,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Postal/MarkLetter"),
        MAILROOM,
        "a letter printed, then posted, by the operator named",
    ),
    // -- gRPC: notifier (on the notifier's own address, not passed on)
    rule(
        grpc("guichet.v1.Notifier/ListNotices"),
        NOTICE_READERS,
        "the messages sent about a file, without their addresses",
    ),
    rule(
        grpc("guichet.v1.Notifier/ListPapers"),
        DOCUMENT_READERS,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Notifier/GetPaper"),
        DOCUMENT_READERS,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.Notifier/SendCode"),
        PERSON,
        "sent by the gateway once the person gave the file's reference and birth date, to that file's contact",
    ),
    // -- gRPC: instruction (on instruction's own address today, not passed on)
    rule(
        grpc("guichet.v1.InstructionReader/GetDossier"),
        INSTRUCTION,
        "the whole filing, personal data included",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/ListQueue"),
        INSTRUCTION,
        "the full queue, with references: agents only",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/GetStatus"),
        ANYONE,
        "the birth date is the check, as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/ProcessingTimes"),
        ANYONE,
        "published figures",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/VerifyAttestation"),
        ANYONE,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/Evaluation"),
        ANYONE,
        "open data: counts per month, prefecture and channel, small cells withheld",
    ),
    rule(
        grpc("guichet.v1.InstructionReader/Equity"),
        ANYONE,
        "published figures",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/TakeNext"),
        INSTRUCTION,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/ReadCase"),
        INSTRUCTION,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/RequestDocuments"),
        HOLDER,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/AddDocument"),
        DOCUMENT_RECEIVERS,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/Decide"),
        HOLDER,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/HandOverCard"),
        CARD_DESKS,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/Withdraw"),
        HOLDER,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/TakeOver"),
        INSTRUCTION,
        "as over REST",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/CaseFacts"),
        INSTRUCTION,
        "a case's prefecture and holder, no personal data: what the gateway judges agents' calls by",
    ),
    rule(
        grpc("guichet.v1.InstructionDesk/ConfirmLink"),
        HOLDER,
        "as over REST",
    ),
    // -- gRPC: web intake (behind the gateway's REST filing)
    rule(
        grpc("guichet.v1.OnlineIntake/SubmitFiling"),
        ANYONE,
        "as over REST",
    ),
    // -- gRPC: the standard services the gateway answers itself
    rule(
        grpc("grpc.health.v1.Health/Check"),
        ANYONE,
        "for load balancers and probes",
    ),
    rule(
        grpc("grpc.health.v1.Health/Watch"),
        ANYONE,
        "for load balancers and probes",
    ),
    rule(
        grpc("grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
        ANYONE,
        "lists the contracts, no data",
    ),
    rule(
        grpc("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
        ANYONE,
        "lists the contracts, no data",
    ),
];

/// The rule of a REST route: `method` as the request has it, `path` the
/// route's template (`MatchedPath`), not the path requested.
pub fn rest(method: &str, path: &str) -> Option<&'static Rule> {
    let method = Method::parse(method)?;
    let path = page_in_french(path);
    TABLE.iter().find(|r| {
        matches!(r.operation, Operation::Rest { method: m, path: p } if m == method && p == path)
    })
}

/// The first segments of the persons' HTML pages and their files: not
/// API, so not in the OpenAPI document (the table still owns them).
pub const PAGE_ROOTS: &[&str] = &[
    "/deposer",
    "/formulaire",
    "/mon-dossier",
    "/rendez-vous",
    "/bloque",
    "/verifier",
    "/agents",
    "/donnees",
    "/static/",
    "/dsfr/",
];

/// Whether `path` (a route's template) is one of the persons' pages.
pub fn is_page(path: &str) -> bool {
    let path = page_in_french(path);
    path == "/" || PAGE_ROOTS.iter().any(|root| path.starts_with(root))
}

/// An English page (`/en/...`) is judged as its French one: one row each.
pub fn page_in_french(path: &str) -> &str {
    match path.strip_prefix("/en") {
        Some(rest) if rest.starts_with('/') && !rest.starts_with("/api/") => rest,
        _ => path,
    }
}

/// The rule of a gRPC method, by its full name (`guichet.v1.Desk/Book`) or
/// its HTTP/2 path (`/guichet.v1.Desk/Book`).
pub fn grpc_method(full_name: &str) -> Option<&'static Rule> {
    let name = full_name.strip_prefix('/').unwrap_or(full_name);
    TABLE
        .iter()
        .find(|r| matches!(r.operation, Operation::Grpc { method } if method == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_operation_has_one_rule_and_every_rule_a_grant() {
        let mut seen = HashSet::new();
        for r in TABLE {
            assert!(seen.insert(r.operation), "{} twice", r.operation);
            assert!(!r.grants.is_empty(), "{} grants nobody", r.operation);
            assert!(!r.why.is_empty(), "{} says not why", r.operation);
        }
    }

    #[test]
    fn scopes_fit_who_they_are_granted_to() {
        for r in TABLE {
            for g in r.grants {
                let fits = match g.who {
                    Who::Anyone | Who::Station => g.scope == Any,
                    // A person's own dossier by reference and birth date
                    // alone: only to be sent the code (nothing is shown).
                    Who::Person => matches!(g.scope, OwnDossier | OwnAppointment | OwnReport),
                    Who::PersonWithCode => {
                        matches!(g.scope, OwnDossier | OwnAppointment | OwnReport)
                    }
                    Who::Role(_) => matches!(g.scope, Any | OwnPrefecture | OwnHeldCase),
                };
                assert!(
                    fits,
                    "{}: {} cannot have scope {:?}",
                    r.operation, g.who, g.scope
                );
            }
        }
    }

    #[test]
    fn an_anyone_grant_comes_last() {
        // Grants are tried in order: an earlier `anyone` would hide the
        // agents' wider view behind the public one.
        for r in TABLE {
            if let Some(i) = r.grants.iter().position(|g| g.who == Who::Anyone) {
                assert_eq!(i, r.grants.len() - 1, "{}", r.operation);
            }
        }
    }

    #[test]
    fn rules_are_found_by_route_template_and_by_grpc_path() {
        let r = rest("get", "/api/v1/appointments/{id}").expect("a rule");
        assert_eq!(r.grants, APPOINTMENT);
        assert!(rest("HEAD", "/healthz").is_some(), "HEAD is judged as GET");
        let english = rest("POST", "/en/deposer/{draft}/envoi").expect("an English page's rule");
        assert_eq!(english.operation.to_string(), "POST /deposer/{draft}/envoi");
        assert!(rest("GET", "/en/").is_some_and(|r| r.operation.to_string() == "GET /"));
        assert!(
            rest("GET", "/en/api/v1/queue").is_none(),
            "only pages have an English twin"
        );
        assert!(is_page("/en/mon-dossier") && is_page("/") && !is_page("/api/v1/queue"));
        assert!(
            rest("GET", "/api/v1/appointments/42").is_none(),
            "templates only"
        );
        assert!(rest("TRACE", "/healthz").is_none());
        let by_path = grpc_method("/guichet.v1.Desk/UpsertSite").expect("a rule");
        let by_name = grpc_method("guichet.v1.Desk/UpsertSite").expect("a rule");
        assert_eq!(by_path, by_name);
        assert!(grpc_method("guichet.v1.Desk/DropTables").is_none());
    }
}
