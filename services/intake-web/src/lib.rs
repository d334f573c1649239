//! The online intake service: takes a web filing, checks it, gives it a
//! reference and a receipt, and hands the dossier to instruction through the
//! outbox, all in one transaction. The gateway calls it over gRPC.
#![forbid(unsafe_code)]

mod group_commit;
pub mod ledger;
pub mod server;

pub use guichet_kit::service::Running;
pub use server::start;
