//! Who is calling, once the gateway has checked what the request carried:
//! nothing, a person's proofs, an agent's session or token, or a machine
//! client's token (with the human agent it acts for).

use std::collections::{BTreeMap, BTreeSet};

use crate::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nothing checked: no session, no token, no proof.
    Anonymous,
    /// A person about their own files, by what they proved.
    Person(Person),
    /// A signed-in agent (browser session or bearer token).
    Agent(Agent),
    /// Call-centre or desk software, naming the human agent acting.
    Machine(Machine),
    /// A mailroom scanning station: it uploads batches and nothing else.
    Station(Station),
}

/// An agent as Guichet knows them: the identity provider's `uid`, and the
/// roles Guichet assigned them, each in the prefectures where they hold it
/// (an instructor in 59 and a desk agent in 62 are not an instructor in 62).
/// A national role (call centre, mailroom, operator) is held with no
/// prefecture: its grants are not scoped to one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    pub uid: String,
    /// Role → department codes ("59", "2A", "974") where it is held.
    pub grants: BTreeMap<Role, BTreeSet<String>>,
}

impl Agent {
    /// Every role in every prefecture given.
    pub fn new(
        uid: impl Into<String>,
        roles: impl IntoIterator<Item = Role>,
        prefectures: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let prefectures: BTreeSet<String> = prefectures.into_iter().map(Into::into).collect();
        Agent {
            uid: uid.into(),
            grants: roles
                .into_iter()
                .map(|r| (r, prefectures.clone()))
                .collect(),
        }
    }

    /// From (role, prefecture) pairs; an empty prefecture is a national grant.
    pub fn with_grants(
        uid: impl Into<String>,
        grants: impl IntoIterator<Item = (Role, String)>,
    ) -> Self {
        let mut agent = Agent {
            uid: uid.into(),
            grants: BTreeMap::new(),
        };
        for (role, prefecture) in grants {
            let places = agent.grants.entry(role).or_default();
            if !prefecture.is_empty() {
                places.insert(prefecture);
            }
        }
        agent
    }

    pub fn holds(&self, role: Role) -> bool {
        self.grants.contains_key(&role)
    }

    /// Where the agent holds `role`; empty for a role they do not hold.
    pub fn prefectures_of(&self, role: Role) -> impl Iterator<Item = &str> {
        self.grants
            .get(&role)
            .into_iter()
            .flat_map(|p| p.iter().map(String::as_str))
    }
}

/// What a person proved in this request or session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Dossiers whose reference and birth date they gave (instruction
    /// checked the pair).
    pub dossiers: BTreeSet<String>,
    /// They also gave the one-time code sent to those dossiers' contact
    /// (or signed in with the citizens' provider): enough to see personal
    /// details and documents.
    pub one_time_code: bool,
    /// Appointments whose secret link they followed.
    pub appointments: BTreeSet<String>,
    /// Blocked-user reports whose secret link they followed.
    pub reports: BTreeSet<String>,
}

/// What kind of software a machine client is: it may act only in the roles
/// its kind allows, whatever else the acting agent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    CallCentreSoftware,
    DeskSoftware,
}

impl ClientKind {
    pub const fn roles(self) -> &'static [Role] {
        match self {
            ClientKind::CallCentreSoftware => &[Role::CallCentreAgent],
            ClientKind::DeskSoftware => &[Role::DeskAgent],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The OAuth2 client (client credentials) or certificate subject.
    pub client_id: String,
    pub kind: ClientKind,
    /// The human agent on whose behalf the call is made, as Guichet knows
    /// them; `None` when the client named nobody (or nobody Guichet knows).
    pub acting: Option<Agent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    pub client_id: String,
}

impl Caller {
    /// The agent whose rights apply, with only the roles this call may use:
    /// a machine client's acting agent keeps the roles its kind allows.
    pub fn effective_agent(&self) -> Option<(&Agent, impl Fn(Role) -> bool + '_)> {
        let (agent, kind) = match self {
            Caller::Agent(a) => (a, None),
            Caller::Machine(Machine {
                acting: Some(a),
                kind,
                ..
            }) => (a, Some(*kind)),
            _ => return None,
        };
        let holds =
            move |role: Role| agent.holds(role) && kind.is_none_or(|k| k.roles().contains(&role));
        Some((agent, holds))
    }

    /// Who is calling, for logs and the audit trail: an agent's or client's
    /// id, never a person's data.
    pub fn actor(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".to_string(),
            Caller::Person(_) => "person".to_string(),
            Caller::Agent(a) => format!("agent:{}", a.uid),
            Caller::Machine(m) => match &m.acting {
                Some(a) => format!("agent:{} via client:{}", a.uid, m.client_id),
                None => format!("client:{}", m.client_id),
            },
            Caller::Station(s) => format!("station:{}", s.client_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_client_acts_only_in_the_roles_its_kind_allows() {
        let both = Agent::new("a1", [Role::DeskAgent, Role::Instructor], ["59"]);
        let via_desk = Caller::Machine(Machine {
            client_id: "desk-59".into(),
            kind: ClientKind::DeskSoftware,
            acting: Some(both.clone()),
        });
        let (agent, holds) = via_desk.effective_agent().expect("an acting agent");
        assert_eq!(agent.uid, "a1");
        assert!(holds(Role::DeskAgent));
        assert!(!holds(Role::Instructor), "desk software cannot instruct");

        let direct = Caller::Agent(both);
        let (_, holds) = direct.effective_agent().expect("an agent");
        assert!(holds(Role::Instructor));
        assert!(!holds(Role::Supervisor));

        let nobody = Caller::Machine(Machine {
            client_id: "ccc".into(),
            kind: ClientKind::CallCentreSoftware,
            acting: None,
        });
        assert!(nobody.effective_agent().is_none());
        assert_eq!(nobody.actor(), "client:ccc");
    }
}
