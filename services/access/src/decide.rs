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
        (Who::Role(role), _) => caller
            .effective_agent()
            .is_some_and(|(agent, holds)| holds(role) && grant.scope.covers_agent(agent, facts)),
        _ => false,
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
