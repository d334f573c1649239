//! The online intake service: takes a web filing, checks it, gives it a
//! reference and a receipt, and hands the dossier to instruction through the
//! outbox, all in one transaction (`guichet_intake`). The gateway calls it
//! over gRPC.
#![forbid(unsafe_code)]

pub mod server;

pub use guichet_kit::service::Running;
pub use server::start;
