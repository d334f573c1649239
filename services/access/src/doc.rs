//! `docs/access.md`, rendered from the table: the document cannot say
//! something the code does not do (a test compares the two).

use std::fmt::Write;

use crate::policy::{Operation, Rule, TABLE};
use crate::{Role, Scope};

const HEADER: &str = "\
# Who may call what

<!-- Rendered from services/access/src/policy.rs by its tests; do not edit.
     After changing the table: UPDATE_ACCESS_DOC=1 cargo test -p guichet-access -->

Every REST route and gRPC method the gateway serves has one row here: who may
call it, and over which resources. Anything not listed is refused. A call
whose caller is not established enough (no sign-in, a machine client that
names no agent, a person without the one-time code where it would do) gets
401 / `UNAUTHENTICATED`; an established caller without the right gets 403 /
`PERMISSION_DENIED`, with no personal data in the refusal.

A row's grants are tried in order; the first that admits the caller decides
(so the queue shows an instructor their prefecture in full, and anyone else
the public view).
";

fn callers() -> String {
    let mut out = String::from(
        "\n## Callers\n\n\
         - **anyone**: no sign-in needed (a scanning station excepted: it may only upload).\n\
         - **person**: a person by what they proved: a dossier's reference and birth date, \
         or an appointment's or report's secret link.\n\
         - **person with one-time code**: the same, having also given the code sent to \
         the contact on their dossier (or signed in with the citizens' provider).\n\
         - **scanning station**: a mailroom station's client; it uploads batches and \
         nothing else.\n\
         - **agents**, signed in with OpenID Connect, by the roles and prefectures \
         Guichet assigns them:\n",
    );
    for role in Role::ALL {
        let _ = writeln!(out, "  - `{}`: {}.", role.as_str(), role.purpose());
    }
    out.push_str(
        "- **machine clients** (call-centre and desk software) name the human agent \
         acting; the agent's rights apply, limited to the roles the software's kind \
         allows (call-centre software: `call_centre_agent`; desk software: `desk_agent`).\n",
    );
    out
}

fn scopes() -> String {
    let mut out = String::from("\n## Scopes\n\n");
    for (scope, what) in [
        (Scope::Any, "every resource the operation reaches"),
        (
            Scope::OwnPrefecture,
            "resources of one of the agent's prefectures (a dossier's, a site's, a \
             report's, or the prefecture a listing is filtered on)",
        ),
        (
            Scope::OwnHeldCase,
            "a case of the agent's prefectures that the agent holds; another's case \
             needs a recorded take-over first",
        ),
        (
            Scope::OwnDossier,
            "the dossier whose reference, birth date and one-time code the person gave",
        ),
        (
            Scope::OwnReport,
            "the report whose secret link the person followed",
        ),
        (
            Scope::OwnAppointment,
            "the appointment whose secret link the person followed",
        ),
    ] {
        let _ = writeln!(out, "- *{}*: {what}.", scope.as_str());
    }
    out
}

fn grants_text(rule: &Rule) -> String {
    rule.grants
        .iter()
        .map(|g| match g.scope {
            Scope::Any => format!("{}", g.who),
            scope => format!("{} ({})", g.who, scope.as_str()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn table(title: &str, rules: &[&Rule]) -> String {
    let mut out = format!("\n## {title}\n\n| operation | who (scope) | why |\n|---|---|---|\n");
    for rule in rules {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            rule.operation,
            grants_text(rule),
            rule.why
        );
    }
    out
}

/// The whole document.
pub fn render() -> String {
    let rest: Vec<&Rule> = TABLE
        .iter()
        .filter(|r| matches!(r.operation, Operation::Rest { .. }))
        .collect();
    let grpc: Vec<&Rule> = TABLE
        .iter()
        .filter(|r| matches!(r.operation, Operation::Grpc { .. }))
        .collect();
    let mut out = String::from(HEADER);
    out.push_str(&callers());
    out.push_str(&scopes());
    out.push_str(&table("REST routes", &rest));
    out.push_str(&table("gRPC methods", &grpc));
    out
}
