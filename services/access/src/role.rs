//! The roles Guichet gives its agents. The identity provider says who an
//! agent is; what they may do is assigned here, per agent, with the
//! prefectures they work for.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Instructs the dossiers of their prefectures: takes, reads, decides.
    Instructor,
    /// Receives people at a prefecture's desk: appointments, assisted filing.
    DeskAgent,
    /// Answers the call centre: files on a caller's behalf, opens reports.
    CallCentreAgent,
    /// Works the postal channel: keying, routing, letters, separators.
    MailroomOperator,
    /// Leads instruction in their prefectures: everything an instructor
    /// does, and the prefecture's sites.
    Supervisor,
    /// Runs the system or audits it: figures and the audit log, no dossier.
    Operator,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Instructor,
        Role::DeskAgent,
        Role::CallCentreAgent,
        Role::MailroomOperator,
        Role::Supervisor,
        Role::Operator,
    ];

    /// The name used in the API, the command line, the audit log and the docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Instructor => "instructor",
            Role::DeskAgent => "desk_agent",
            Role::CallCentreAgent => "call_centre_agent",
            Role::MailroomOperator => "mailroom_operator",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
        }
    }

    /// Held for the whole country, not in prefectures: its grants in the
    /// table are never scoped to a prefecture.
    pub const fn is_national(self) -> bool {
        matches!(
            self,
            Role::CallCentreAgent | Role::MailroomOperator | Role::Operator
        )
    }

    /// Whether a supervisor may grant this role (in their own prefectures)
    /// through the API. Supervisors, operators and the national roles are
    /// granted on the servers, with `guichet agents grant`.
    pub const fn grantable_by_supervisor(self) -> bool {
        matches!(self, Role::Instructor | Role::DeskAgent)
    }

    /// What the role is for, in a few words (for `docs/access.md`).
    pub const fn purpose(self) -> &'static str {
        match self {
            Role::Instructor => "instructs the dossiers of their prefectures",
            Role::DeskAgent => "receives people at a prefecture's desk",
            Role::CallCentreAgent => "answers the call centre, for every prefecture",
            Role::MailroomOperator => "works the postal channel",
            Role::Supervisor => {
                "leads instruction in their prefectures; what an instructor may, and the sites"
            }
            Role::Operator => "runs or audits the system: figures and the audit log, no dossier",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {given:?}; the roles are instructor, desk_agent, call_centre_agent, mailroom_operator, supervisor, operator"
)]
pub struct UnknownRole {
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole {
                given: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        let e = "admin".parse::<Role>().expect_err("not a role");
        assert!(e.to_string().contains("\"admin\""));
        assert!("Instructor".parse::<Role>().is_err(), "names are exact");
    }
}
