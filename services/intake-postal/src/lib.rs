//! The postal channel: paper forms with a signed QR code, scanning stations
//! uploading envelopes, the reading of codes and text, the mailroom's keying
//! queue, and letters that answer a paper filer on paper (and by e-mail
//! where they gave an address). Only a confirmed envelope becomes a dossier,
//! filed on its postmark date; anything else is routed with a reason.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod figures;
pub mod letters;
pub mod reader;
pub mod render;
pub mod scan;
pub mod server;
pub mod settings;
pub mod store;

pub use guichet_kit::service::Running;
pub use server::start;
