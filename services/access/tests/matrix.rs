//! The access matrix, written out by hand: every operation × every
//! kind of caller, on a resource of prefecture 59 (a case held by the
//! instructor of 59, the person's own dossier, appointment and report). It
//! says the same as the table in other words, so a change to the table
//! that was not meant shows here.

use guichet_access::policy::{self, TABLE};
use guichet_access::{
    Agent, Caller, ClientKind, Decision, Facts, Machine, Person, Role, Station, decide,
};

const REFERENCE: &str = "W26-0000-0001-A";
const APPOINTMENT: &str = "apt-1";
const REPORT: &str = "rep-1";

/// The callers, in the matrix's column order.
fn callers() -> Vec<(&'static str, Caller)> {
    let person = |code| Person {
        dossiers: [REFERENCE.to_string()].into(),
        one_time_code: code,
        appointments: [APPOINTMENT.to_string()].into(),
        reports: [REPORT.to_string()].into(),
    };
    let agent = |uid: &str, role, prefectures: &[&str]| {
        Caller::Agent(Agent::new(uid, [role], prefectures.iter().copied()))
    };
    vec![
        ("anonymous", Caller::Anonymous),
        ("person without code", Caller::Person(person(false))),
        ("person with code", Caller::Person(person(true))),
        ("instructor of 59", agent("i59", Role::Instructor, &["59"])),
        ("instructor of 75", agent("i75", Role::Instructor, &["75"])),
        ("desk agent of 59", agent("d59", Role::DeskAgent, &["59"])),
        ("call-centre agent", agent("c1", Role::CallCentreAgent, &[])),
        (
            "mailroom station",
            Caller::Station(Station {
                client_id: "scanner-1".into(),
            }),
        ),
        ("supervisor of 59", agent("s59", Role::Supervisor, &["59"])),
        ("operator", agent("o1", Role::Operator, &[])),
        (
            "mailroom operator",
            agent("m1", Role::MailroomOperator, &[]),
        ),
    ]
}

fn facts() -> Facts<'static> {
    Facts::none()
        .prefecture("59")
        .held_by("i59")
        .dossier(REFERENCE)
        .report(REPORT)
        .appointment(APPOINTMENT)
}

#[rustfmt::skip]
// anon  p-   p+   i59  i75  desk ccc  stat sup  op   mo
const MATRIX: &[(&str, &str)] = &[
    ("POST /api/v1/dossiers",                                  "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/dossiers/{reference}",                       "401  401  ok   ok   403  ok   ok   403  ok   403  403"),
    ("POST /api/v1/dossiers/{reference}/documents",            "401  401  ok   ok   403  ok   403  403  ok   403  ok"),
    ("GET /api/v1/dossiers/{reference}/documents/{sha256}",    "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("GET /api/v1/dossiers/{reference}/papers",                "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("GET /api/v1/dossiers/{reference}/papers/{id}",           "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("GET /api/v1/dossiers/{reference}/status",                "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /api/v1/dossiers/{reference}/code",                 "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/queue",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/processing-times",                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/attestations/{code}",                        "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/equity",                                     "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /api/v1/agent/queue/next",                          "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("GET /api/v1/dossiers/{reference}/notices",               "401  403  403  ok   403  ok   ok   403  ok   ok   403"),
    ("GET /api/v1/agent/dossiers/{reference}",                 "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/document-requests", "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/documents",      "401  403  403  ok   403  ok   403  403  ok   403  ok"),
    ("POST /api/v1/agent/dossiers/{reference}/decision",       "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/withdrawal",     "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/card-handover",  "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/link",           "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /api/v1/agent/dossiers/{reference}/takeover",       "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("GET /api/v1/admin/agents",                               "401  403  403  403  403  403  403  403  ok   ok   403"),
    ("PUT /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}", "401  403  403  403  403  403  403  403  ok   403  403"),
    ("DELETE /api/v1/admin/agents/{uid}/grants/{role}/{prefecture}", "401  403  403  403  403  403  403  403  ok   403  403"),
    ("GET /api/v1/admin/audit",                                "401  403  403  403  403  403  403  403  ok   ok   403"),
    // the persons' pages
    ("GET /",                                                 "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /formulaire",                                        "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /static/{file}",                                    "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /dsfr/{version}/{*path}",                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /deposer",                                          "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /deposer",                                         "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /deposer/reprendre",                               "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /deposer/{draft}/etape/{step}",                     "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /deposer/{draft}/etape/{step}",                    "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /deposer/{draft}/documents",                       "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /deposer/{draft}/envoi",                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /deposer/{draft}/recepisse",                        "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /deposer/{draft}/recepisse/pdf",                    "401  ok   ok   403  403  403  403  403  403  403  403"),
    ("GET /mon-dossier",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /mon-dossier",                                     "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /mon-dossier/code",                                "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /mon-dossier/documents",                            "401  401  ok   ok   403  ok   403  403  ok   403  ok"),
    ("POST /mon-dossier/papier",                              "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("GET /rendez-vous",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /rendez-vous/lieu/{site}",                          "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /rendez-vous/lieu/{site}",                         "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /rendez-vous/suivi/{id}",                           "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("POST /rendez-vous/suivi/{id}/annulation",               "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("POST /rendez-vous/suivi/{id}/deplacement",               "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("GET /bloque",                                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /bloque",                                          "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /bloque/{id}",                                      "401  ok   ok   ok   403  ok   ok   403  ok   403  403"),
    ("GET /verifier",                                         "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /verifier",                                        "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /auth/login",                                        "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /auth/callback",                                     "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /auth/session",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /auth/logout",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/sites",                                      "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/sites/{site}/slots",                         "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /api/v1/appointments",                              "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /api/v1/appointments/{id}",                          "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("GET /api/v1/appointments/{id}/notice",                   "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("POST /api/v1/appointments/{id}/move",                    "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("POST /api/v1/appointments/{id}/cancellation",            "401  ok   ok   403  403  ok   ok   403  403  403  403"),
    ("GET /api/v1/reports/{id}",                               "401  ok   ok   ok   403  ok   ok   403  ok   403  403"),
    ("POST /api/v1/agent/reports/{id}/alternative",            "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("POST /api/v1/postal/forms",                              "401  403  403  403  403  ok   ok   403  403  403  ok"),
    ("GET /api/v1/postal/separators",                          "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /api/v1/postal/batches",                            "401  403  403  403  403  403  403  ok   403  403  ok"),
    ("GET /api/v1/postal/batches/{id}",                        "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/v1/postal/keying",                              "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/v1/postal/envelopes/{id}",                      "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /api/v1/postal/envelopes/{id}/confirmation",        "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /api/v1/postal/envelopes/{id}/routing",             "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /api/v1/postal/envelopes/{id}/attachment",          "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/v1/postal/pages/{sha256}",                      "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/v1/postal/letters",                             "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/v1/postal/letters/{id}",                        "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /api/openapi.json",                                  "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /agents",                                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("POST /agents/deconnexion",                              "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /agents/instruction",                               "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("POST /agents/instruction/suivant",                      "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("GET /agents/dossiers/{reference}",                      "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("GET /agents/dossiers/{reference}/documents/{sha256}",   "401  403  403  ok   403  ok   403  403  ok   403  403"),
    ("GET /agents/dossiers/{reference}/documents/{sha256}/fichier", "401  403  403  ok   403  ok   403  403  ok   403  403"),
    ("POST /agents/dossiers/{reference}/reprise",             "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("POST /agents/dossiers/{reference}/pieces",              "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /agents/dossiers/{reference}/decision",            "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /agents/dossiers/{reference}/desistement",         "401  403  403  ok   403  403  403  403  403  403  403"),
    ("POST /agents/dossiers/{reference}/rapprochement",       "401  403  403  ok   403  403  403  403  403  403  403"),
    ("GET /agents/centre-appels",                             "401  403  403  403  403  403  ok   403  403  403  403"),
    ("POST /agents/centre-appels/consultation",               "401  403  403  403  403  403  ok   403  403  403  403"),
    ("GET /agents/centre-appels/depot",                       "401  403  403  403  403  403  ok   403  403  403  403"),
    ("POST /agents/centre-appels/depot",                      "401  403  403  403  403  403  ok   403  403  403  403"),
    ("POST /agents/signalements",                             "401  403  403  403  403  403  ok   403  403  403  403"),
    ("GET /agents/signalements/{id}",                         "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("POST /agents/signalements/{id}/rendez-vous",            "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("POST /agents/signalements/{id}/kit",                    "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("GET /agents/courrier",                                  "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /agents/courrier/plis/{id}",                        "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /agents/courrier/plis/{id}/saisie",                "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /agents/courrier/plis/{id}/orientation",           "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /agents/courrier/plis/{id}/rattachement",          "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /agents/courrier/lettres/{id}/impression",         "401  403  403  403  403  403  403  403  403  403  ok"),
    ("POST /agents/courrier/lettres/{id}/envoi",              "401  403  403  403  403  403  403  403  403  403  ok"),
    ("GET /agents/supervision",                               "401  403  403  403  403  403  403  403  ok   ok   403"),
    ("POST /agents/supervision/habilitations",                "401  403  403  403  403  403  403  403  ok   403  403"),
    ("POST /agents/supervision/habilitations/retrait",        "401  403  403  403  403  403  403  403  ok   403  403"),
    ("GET /agents/journal",                                   "401  403  403  403  403  403  403  403  ok   ok   403"),
    ("GET /agents/guichet",                                   "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("POST /agents/guichet/rendez-vous/{id}/presence",        "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("GET /agents/guichet/depot",                             "401  403  403  403  403  ok   403  403  403  403  403"),
    ("POST /agents/guichet/depot",                            "401  403  403  403  403  ok   403  403  403  403  403"),
    ("POST /agents/guichet/remise",                           "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("GET /donnees",                                          "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /donnees/schema.json",                              "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /donnees/{year}/evaluation.csv",                    "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /donnees/{year}/evaluation.json",                   "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /ops",                                               "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /metrics",                                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /healthz",                                           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /.well-known/jwks.json",                             "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("GET /readyz",                                            "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.CallCentre/FileOnBehalf",                     "401  403  403  403  403  403  ok   403  403  403  403"),
    ("guichet.v1.CallCentre/OpenReport",                       "401  403  403  403  403  403  ok   403  403  403  403"),
    ("guichet.v1.CallCentre/GetReport",                        "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("guichet.v1.CallCentre/ListReports",                      "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("guichet.v1.CallCentre/OfferAlternative",                 "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("guichet.v1.CallCentre/RecordOutcome",                    "401  403  403  ok   403  ok   ok   403  ok   403  403"),
    ("guichet.v1.CallCentre/LookUpStatus",                     "401  403  403  403  403  403  ok   403  403  403  403"),
    ("guichet.v1.Desk/UpsertSite",                             "401  403  403  403  403  403  403  403  ok   403  403"),
    ("guichet.v1.Desk/ListSites",                              "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.Desk/ListSlots",                              "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.Desk/Book",                                   "401  403  403  403  403  ok   ok   403  403  403  403"),
    ("guichet.v1.Desk/Move",                                   "401  403  403  403  403  ok   ok   403  403  403  403"),
    ("guichet.v1.Desk/Cancel",                                 "401  403  403  403  403  ok   ok   403  403  403  403"),
    ("guichet.v1.Desk/RecordAttendance",                       "401  403  403  403  403  ok   403  403  403  403  403"),
    ("guichet.v1.Desk/GetAppointment",                         "401  403  403  403  403  ok   ok   403  403  403  403"),
    ("guichet.v1.Desk/ListAppointments",                       "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("guichet.v1.Desk/FileAssisted",                           "401  403  403  403  403  ok   403  403  403  403  403"),
    ("guichet.v1.Postal/PrintForm",                            "401  403  403  403  403  ok   ok   403  403  403  ok"),
    ("guichet.v1.Postal/PrintSeparators",                      "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/UploadBatch",                          "401  403  403  403  403  403  403  ok   403  403  ok"),
    ("guichet.v1.Postal/GetBatch",                             "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/ListKeying",                           "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/GetEnvelope",                          "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/ConfirmEnvelope",                      "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/RouteEnvelope",                        "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/AttachEnvelope",                       "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/GetPage",                              "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/ListLetters",                          "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/GetLetter",                            "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Postal/MarkLetter",                           "401  403  403  403  403  403  403  403  403  403  ok"),
    ("guichet.v1.Notifier/SendCode",                           "401  ok   ok   403  403  403  403  403  403  403  403"),
    ("guichet.v1.Notifier/ListPapers",                         "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("guichet.v1.Notifier/GetPaper",                           "401  401  ok   ok   403  ok   403  403  ok   403  403"),
    ("guichet.v1.Notifier/ListNotices",                        "401  403  403  ok   403  ok   ok   403  ok   ok   403"),
    ("guichet.v1.InstructionReader/GetDossier",                "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionReader/ListQueue",                 "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionReader/GetStatus",                 "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.InstructionReader/ProcessingTimes",           "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.InstructionReader/VerifyAttestation",         "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.InstructionReader/Evaluation",                "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.InstructionReader/Equity",                    "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("guichet.v1.InstructionDesk/TakeNext",                    "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionDesk/ReadCase",                    "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionDesk/RequestDocuments",            "401  403  403  ok   403  403  403  403  403  403  403"),
    ("guichet.v1.InstructionDesk/AddDocument",                 "401  403  403  ok   403  ok   403  403  ok   403  ok"),
    ("guichet.v1.InstructionDesk/Decide",                      "401  403  403  ok   403  403  403  403  403  403  403"),
    ("guichet.v1.InstructionDesk/Withdraw",                    "401  403  403  ok   403  403  403  403  403  403  403"),
    ("guichet.v1.InstructionDesk/HandOverCard",                "401  403  403  403  403  ok   403  403  ok   403  403"),
    ("guichet.v1.InstructionDesk/TakeOver",                    "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionDesk/CaseFacts",                   "401  403  403  ok   403  403  403  403  ok   403  403"),
    ("guichet.v1.InstructionDesk/ConfirmLink",                 "401  403  403  ok   403  403  403  403  403  403  403"),
    ("guichet.v1.OnlineIntake/SubmitFiling",                   "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("grpc.health.v1.Health/Check",                            "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("grpc.health.v1.Health/Watch",                            "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
    ("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "ok   ok   ok   ok   ok   ok   ok   403  ok   ok   ok"),
];

fn outcome(d: Decision) -> &'static str {
    match d {
        Decision::Allow(_) => "ok",
        Decision::Unauthenticated => "401",
        Decision::Forbidden => "403",
    }
}

fn rule_of(operation: &str) -> &'static policy::Rule {
    let found = match operation.split_once(' ') {
        Some((method, path)) => policy::rest(method, path),
        None => policy::grpc_method(operation),
    };
    found.unwrap_or_else(|| panic!("{operation} has no rule"))
}

#[test]
fn every_operation_for_every_caller() {
    let callers = callers();
    let mut wrong = Vec::new();
    for (operation, expected) in MATRIX {
        let expected: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(
            expected.len(),
            callers.len(),
            "{operation}: one cell per caller"
        );
        let rule = rule_of(operation);
        for ((name, caller), want) in callers.iter().zip(expected) {
            let got = outcome(decide(caller, rule, &facts()));
            if got != want {
                wrong.push(format!("{operation} as {name}: {got}, expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_matrix_has_a_line_for_every_rule() {
    for rule in TABLE {
        let name = rule.operation.to_string();
        assert!(
            MATRIX.iter().any(|(op, _)| *op == name),
            "{name} is in the table but not in the matrix"
        );
    }
    assert_eq!(
        MATRIX.len(),
        TABLE.len(),
        "an operation twice in the matrix"
    );
}

/// Call-centre and desk software acting for an agent get exactly the
/// agent's answers; naming nobody gets 401 wherever an agent is needed.
#[test]
fn machine_clients_answer_as_their_acting_agent() {
    let desk = Agent::new("d59", [Role::DeskAgent], ["59"]);
    let ccc = Agent::new("c1", [Role::CallCentreAgent], Vec::<String>::new());
    for (kind, agent) in [
        (ClientKind::DeskSoftware, desk),
        (ClientKind::CallCentreSoftware, ccc),
    ] {
        let direct = Caller::Agent(agent.clone());
        let via = |acting| {
            Caller::Machine(Machine {
                client_id: "software".into(),
                kind,
                acting,
            })
        };
        for rule in TABLE {
            let f = facts();
            assert_eq!(
                decide(&via(Some(agent.clone())), rule, &f),
                decide(&direct, rule, &f),
                "{} via {kind:?}",
                rule.operation
            );
            let nobody = decide(&via(None), rule, &f);
            let anonymous = decide(&Caller::Anonymous, rule, &f);
            let for_agents = rule.grants.iter().any(|g| {
                matches!(
                    g.who,
                    guichet_access::Who::Role(_) | guichet_access::Who::Anyone
                )
            });
            if for_agents {
                assert_eq!(nobody, anonymous, "{} naming nobody", rule.operation);
            } else {
                // Software is never the person: naming someone would not help.
                assert_eq!(
                    nobody,
                    Decision::Forbidden,
                    "{} naming nobody",
                    rule.operation
                );
            }
        }
    }
}
