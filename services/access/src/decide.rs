//! Applying the table to one call.

use crate::{Caller, Facts, Grant, Rule, Who};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, by this grant: the caller may need a narrower view when it
    /// is the `anyone` one (the public queue).
    Allow(Grant),
    /// Who is calling is not established enough: signing in, naming the
    /// acting agent or giving the one-time code could change the answer
    /// (401 / `UNAUTHENTICATED`).
    Unauthenticated,
    /// Established, and not allowed (403 / `PERMISSION_DENIED`).
    Forbidden,
}

/// Whether `caller` may make the call `rule` covers, on the resource the
/// `facts` describe. The first grant that admits the caller wins.
pub fn decide(caller: &Caller, rule: &Rule, facts: &Facts<'_>) -> Decision {
    if let Some(grant) = rule.grants.iter().find(|g| admits(g, caller, facts)) {
        return Decision::Allow(*grant);
    }
    if could_prove_more(caller, rule) {
        Decision::Unauthenticated
    } else {
        Decision::Forbidden
    }
}

fn admits(grant: &Grant, caller: &Caller, facts: &Facts<'_>) -> bool {
    match (grant.who, caller) {
        // A station may only upload: even public calls are not its business.
        (Who::Anyone, Caller::Station(_)) => false,
        (Who::Anyone, _) => true,
        (Who::Person, Caller::Person(p)) => grant.scope.covers_person(p, facts),
        (Who::PersonWithCode, Caller::Person(p)) => {
            p.one_time_code && grant.scope.covers_person(p, facts)
        }
        (Who::Station, Caller::Station(_)) => true,
        (Who::Role(role), _) => caller.effective_agent().is_some_and(|(agent, holds)| {
            holds(role) && grant.scope.covers_agent(agent, role, facts)
        }),
        _ => false,
    }
}

/// What [`decide`] would answer were every fact in the caller's favour:
/// whether the caller is of a kind the rule admits at all. The gateway asks
/// this before looking anything up, so a caller with no chance is refused
/// without a look-up (and without learning whether the resource exists).
pub fn admissible(caller: &Caller, rule: &Rule) -> Decision {
    let could = |grant: &Grant| match (grant.who, caller) {
        (Who::Anyone, Caller::Station(_)) => false,
        (Who::Anyone, _) => true,
        // Anyone may turn out to be the person, by a proof in the request
        // itself (a secret link, a birth date) that the handler checks.
        (Who::Person | Who::PersonWithCode, Caller::Person(_) | Caller::Anonymous) => true,
        (Who::Station, Caller::Station(_)) => true,
        (Who::Role(role), _) => caller
            .effective_agent()
            .is_some_and(|(_, holds)| holds(role)),
        _ => false,
    };
    if let Some(grant) = rule.grants.iter().find(|g| could(g)) {
        return Decision::Allow(*grant);
    }
    if could_prove_more(caller, rule) {
        Decision::Unauthenticated
    } else {
        Decision::Forbidden
    }
}

impl Rule {
    /// Whether judging a call needs facts about the resource: some grant is
    /// scoped narrower than `any`.
    pub fn needs_facts(&self) -> bool {
        self.grants.iter().any(|g| g.scope != crate::Scope::Any)
    }
}

/// Whether the caller lacks a proof the rule asks for, rather than a right:
/// nobody signed in, a machine client that named no agent, a person
/// without the one-time code where the code would do.
fn could_prove_more(caller: &Caller, rule: &Rule) -> bool {
    let asks = |pred: fn(&Who) -> bool| rule.grants.iter().any(|g| pred(&g.who));
    match caller {
        Caller::Anonymous => true,
        Caller::Machine(m) => m.acting.is_none() && asks(|w| matches!(w, Who::Role(_))),
        Caller::Person(p) => !p.one_time_code && asks(|w| *w == Who::PersonWithCode),
        Caller::Agent(_) | Caller::Station(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Not;

    use super::*;
    use crate::policy::{grpc_method, rest};
    use crate::{Agent, ClientKind, Machine, Person, Role, Scope};

    fn rule(method: &str, path: &str) -> &'static Rule {
        rest(method, path).expect("a rule")
    }

    #[test]
    fn a_missing_fact_covers_nothing() {
        let i59 = Caller::Agent(Agent::new("i59", [Role::Instructor], ["59"]));
        let read = rule("GET", "/api/v1/agent/dossiers/{reference}");
        assert_eq!(decide(&i59, read, &Facts::none()), Decision::Forbidden);
        assert!(matches!(
            decide(&i59, read, &Facts::none().prefecture("59")),
            Decision::Allow(_)
        ));
        let decide_case = rule("POST", "/api/v1/agent/dossiers/{reference}/decision");
        assert_eq!(
            decide(&i59, decide_case, &Facts::none().prefecture("59")),
            Decision::Forbidden,
            "nobody said who holds it"
        );
        assert_eq!(
            decide(
                &i59,
                decide_case,
                &Facts::none().prefecture("59").held_by("i75")
            ),
            Decision::Forbidden,
            "held by another: take it over first"
        );
    }

    #[test]
    fn the_public_queue_is_the_last_resort() {
        let queue = rule("GET", "/api/v1/queue");
        let i59 = Caller::Agent(Agent::new("i59", [Role::Instructor], ["59"]));
        let Decision::Allow(own) = decide(&i59, queue, &Facts::none().prefecture("59")) else {
            panic!("allowed")
        };
        assert_eq!(own.scope, Scope::OwnPrefecture);
        let Decision::Allow(other) = decide(&i59, queue, &Facts::none().prefecture("75")) else {
            panic!("allowed")
        };
        assert_eq!(
            other.who,
            Who::Anyone,
            "another prefecture: the public view"
        );
        let Decision::Allow(public) = decide(&Caller::Anonymous, queue, &Facts::none()) else {
            panic!("allowed")
        };
        assert_eq!(public.who, Who::Anyone);
    }

    #[test]
    fn a_machine_client_must_name_its_agent_and_acts_in_its_kind_only() {
        let book = grpc_method("guichet.v1.Desk/Book").expect("a rule");
        let facts = Facts::none().prefecture("59");
        let anonymous_client = Caller::Machine(Machine {
            client_id: "desk-59".into(),
            kind: ClientKind::DeskSoftware,
            acting: None,
        });
        assert_eq!(
            decide(&anonymous_client, book, &facts),
            Decision::Unauthenticated
        );
        let desk = Agent::new("d59", [Role::DeskAgent], ["59"]);
        let acting = Caller::Machine(Machine {
            client_id: "desk-59".into(),
            kind: ClientKind::DeskSoftware,
            acting: Some(desk.clone()),
        });
        assert!(matches!(decide(&acting, book, &facts), Decision::Allow(_)));
        assert_eq!(
            decide(&acting, book, &Facts::none().prefecture("75")),
            Decision::Forbidden,
            "the agent's rights are checked too"
        );
        let wrong_software = Caller::Machine(Machine {
            client_id: "ccc".into(),
            kind: ClientKind::CallCentreSoftware,
            acting: Some(desk),
        });
        assert_eq!(decide(&wrong_software, book, &facts), Decision::Forbidden);
        let public = grpc_method("guichet.v1.Desk/ListSites").expect("a rule");
        assert!(matches!(
            decide(&anonymous_client, public, &facts),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_role_counts_only_in_the_prefectures_it_is_held_in() {
        let mixed = Caller::Agent(Agent::with_grants(
            "m",
            [
                (Role::Instructor, "59".to_string()),
                (Role::DeskAgent, "62".to_string()),
            ],
        ));
        let read = rule("GET", "/api/v1/agent/dossiers/{reference}");
        assert!(matches!(
            decide(&mixed, read, &Facts::none().prefecture("59")),
            Decision::Allow(_)
        ));
        assert_eq!(
            decide(&mixed, read, &Facts::none().prefecture("62")),
            Decision::Forbidden,
            "a desk agent in 62 is not an instructor there"
        );
    }

    #[test]
    fn admissible_refuses_early_only_who_no_fact_could_admit() {
        let read = rule("GET", "/api/v1/agent/dossiers/{reference}");
        assert_eq!(
            admissible(&Caller::Anonymous, read),
            Decision::Unauthenticated
        );
        assert!(
            matches!(
                admissible(&Caller::Anonymous, rule("GET", "/api/v1/appointments/{id}")),
                Decision::Allow(_)
            ),
            "the person's link is checked by the handler"
        );
        let desk = Caller::Agent(Agent::new("d", [Role::DeskAgent], ["59"]));
        assert_eq!(admissible(&desk, read), Decision::Forbidden);
        let i75 = Caller::Agent(Agent::new("i75", [Role::Instructor], ["75"]));
        assert!(
            matches!(admissible(&i75, read), Decision::Allow(_)),
            "the dossier's prefecture is not known yet"
        );
        let station = Caller::Station(crate::Station {
            client_id: "scanner".into(),
        });
        assert_eq!(
            admissible(&station, rule("GET", "/api/v1/sites")),
            Decision::Forbidden
        );
        assert!(rule("GET", "/api/v1/sites").needs_facts().not());
        assert!(read.needs_facts());
    }

    #[test]
    fn a_person_without_the_code_is_asked_for_it() {
        let view = rule("GET", "/api/v1/dossiers/{reference}");
        let facts = Facts::none().dossier("W26-0000-0001-A").prefecture("59");
        let mut person = Person {
            dossiers: ["W26-0000-0001-A".to_string()].into(),
            ..Person::default()
        };
        assert_eq!(
            decide(&Caller::Person(person.clone()), view, &facts),
            Decision::Unauthenticated
        );
        person.one_time_code = true;
        assert!(matches!(
            decide(&Caller::Person(person.clone()), view, &facts),
            Decision::Allow(_)
        ));
        let someone_else = Facts::none().dossier("W26-0000-0002-B").prefecture("59");
        assert_eq!(
            decide(&Caller::Person(person), view, &someone_else),
            Decision::Forbidden
        );
    }
}
