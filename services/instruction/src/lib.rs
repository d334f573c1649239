//! The instruction service: where every channel's dossiers meet. It consumes
//! `instruction.dossiers`, records each dossier and its history exactly once
//! in PostgreSQL, and serves the queue ordered by urgency, then legal filing
//! date, never by channel or arrival.
#![forbid(unsafe_code)]

pub mod api;
pub mod cases;
pub mod consumer;
pub mod equity;
pub mod server;
pub mod settings;
pub mod store;
pub mod titles;

pub use guichet_kit::service::Running;
pub use server::start;
