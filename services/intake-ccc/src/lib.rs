//! The call-centre channel (CCC): an agent files on behalf of a caller who
//! consented on the recorded call; a person the online route blocks gets a
//! report (signalement) that the prefecture of residence must answer with an
//! alternative before its deadline; and a caller can ask where their file
//! stands. Call-centre software reaches it over gRPC through the gateway.
#![forbid(unsafe_code)]

pub mod reports;
pub mod server;
pub mod settings;

pub use guichet_kit::service::Running;
pub use server::start;
