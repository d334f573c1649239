//! Who may call what. Pure: no I/O, no clock, no framework.
//!
//! - [`Role`]: the roles Guichet assigns to agents (its own, not the
//!   identity provider's).
//! - [`Caller`]: who is calling, as the gateway established it (a session,
//!   a bearer token, a one-time code, a secret link).
//! - [`Scope`] and [`Facts`]: which resources a grant covers, and what the
//!   gateway knows of the resource a call is about.
//! - [`policy`]: the one table, every REST route and gRPC method → who may
//!   call it → in what scope; [`decide`] applies it. `docs/access.md` is
//!   rendered from it ([`doc::render`]).
#![forbid(unsafe_code)]

mod caller;
mod decide;
pub mod doc;
pub mod policy;
mod role;
mod scope;

pub use caller::{Agent, Caller, ClientKind, Machine, Person, Station};
pub use decide::{Decision, admissible, decide};
pub use policy::{Grant, Method, Operation, Rule, Who};
pub use role::{Role, UnknownRole};
pub use scope::{Fact, Facts, Scope};
