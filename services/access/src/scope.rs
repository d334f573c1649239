//! Which resources a grant covers, and what the gateway knows of the
//! resource a call is about.

use crate::{Agent, Person, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every resource the operation reaches.
    Any,
    /// Resources of one of the agent's prefectures (a dossier's, a site's,
    /// a report's, or the prefecture a listing is filtered on).
    OwnPrefecture,
    /// A case of one of the agent's prefectures that the agent holds (took
    /// from the queue, or took over).
    OwnHeldCase,
    /// A dossier whose reference, birth date and one-time code the person gave.
    OwnDossier,
    /// A report whose secret link the person followed.
    OwnReport,
    /// An appointment whose secret link the person followed.
    OwnAppointment,
}

/// A fact about the resource a scope needs to be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    Prefecture,
    HeldBy,
    Dossier,
    Report,
    Appointment,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Any => "any",
            Scope::OwnPrefecture => "own prefecture",
            Scope::OwnHeldCase => "own held case",
            Scope::OwnDossier => "own dossier",
            Scope::OwnReport => "own report",
            Scope::OwnAppointment => "own appointment",
        }
    }

    /// The facts the gateway must supply for this scope to be judged.
    pub const fn needs(self) -> &'static [Fact] {
        match self {
            Scope::Any => &[],
            Scope::OwnPrefecture => &[Fact::Prefecture],
            Scope::OwnHeldCase => &[Fact::Prefecture, Fact::HeldBy],
            Scope::OwnDossier => &[Fact::Dossier],
            Scope::OwnReport => &[Fact::Report],
            Scope::OwnAppointment => &[Fact::Appointment],
        }
    }

    /// Whether an agent's grant in this scope covers the resource. A fact
    /// the gateway did not supply covers nothing: the table fails closed.
    pub(crate) fn covers_agent(self, agent: &Agent, role: Role, facts: &Facts<'_>) -> bool {
        let in_prefecture = || {
            facts
                .prefecture
                .is_some_and(|p| agent.prefectures_of(role).any(|own| own == p))
        };
        match self {
            Scope::Any => true,
            Scope::OwnPrefecture => in_prefecture(),
            Scope::OwnHeldCase => in_prefecture() && facts.held_by == Some(agent.uid.as_str()),
            // A person's scopes never cover an agent.
            Scope::OwnDossier | Scope::OwnReport | Scope::OwnAppointment => false,
        }
    }

    /// The same for a person's grant.
    pub(crate) fn covers_person(self, person: &Person, facts: &Facts<'_>) -> bool {
        let proven = |fact: Option<&str>, set: &std::collections::BTreeSet<String>| {
            fact.is_some_and(|id| set.contains(id))
        };
        match self {
            Scope::Any => true,
            Scope::OwnDossier => proven(facts.dossier, &person.dossiers),
            Scope::OwnReport => proven(facts.report, &person.reports),
            Scope::OwnAppointment => proven(facts.appointment, &person.appointments),
            // An agent's scopes never cover a person.
            Scope::OwnPrefecture | Scope::OwnHeldCase => false,
        }
    }
}

/// What the gateway knows of the resource a call is about: from the path
/// (a reference, an appointment or report id), the query (the prefecture a
/// listing is filtered on), or a look-up (a dossier's prefecture and
/// holder, an appointment's site).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The department code the resource belongs to.
    pub prefecture: Option<&'a str>,
    /// The uid of the agent holding the case, if anyone holds it.
    pub held_by: Option<&'a str>,
    /// The dossier's reference.
    pub dossier: Option<&'a str>,
    pub report: Option<&'a str>,
    pub appointment: Option<&'a str>,
}

impl<'a> Facts<'a> {
    pub fn none() -> Self {
        Facts::default()
    }

    pub fn prefecture(mut self, code: &'a str) -> Self {
        self.prefecture = Some(code);
        self
    }

    pub fn held_by(mut self, uid: &'a str) -> Self {
        self.held_by = Some(uid);
        self
    }

    pub fn dossier(mut self, reference: &'a str) -> Self {
        self.dossier = Some(reference);
        self
    }

    pub fn report(mut self, id: &'a str) -> Self {
        self.report = Some(id);
        self
    }

    pub fn appointment(mut self, id: &'a str) -> Self {
        self.appointment = Some(id);
        self
    }
}
