//! The gateway: the one door for browsers and channel software. REST/JSON in
//! front of the services' gRPC, with the tower layers every request passes:
//! request ids, a span per request in the caller's trace, timeouts, body
//! limits, and panics turned into a clean 500.
//!
//! One module per area of the API, each with its own router: `dossiers`
//! (filing and the public look-ups of `status`), `agents`, `appointments`,
//! `postal`, `ops` (operations: figures, health, the API's description) and
//! `grpc_proxy` (channel software's gRPC, passed on).
#![forbid(unsafe_code)]

pub mod admin;
pub mod agents;
pub mod appointments;
pub mod caller;
pub mod directory;
pub mod dossiers;
pub mod error;
pub mod extract;
pub mod grpc_access;
pub mod grpc_proxy;
mod head_deadline;
pub mod health;
pub mod openapi;
pub mod ops;
pub mod origin;
pub mod person_code;
pub mod policy;
pub mod postal;
pub mod server;
pub mod session;
pub mod settings;
pub mod state;
pub mod status;
pub mod tries;
pub mod uploads;
pub mod views;
pub mod web;

pub use guichet_kit::links;
pub use server::{Running, start};
pub use settings::AccessSettings;
pub use state::{AppState, Targets};
