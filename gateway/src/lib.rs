//! The gateway: the one door for browsers and channel software. REST/JSON in
//! front of the services' gRPC, with the tower layers every request passes:
//! request ids, a span per request in the caller's trace, timeouts, body
//! limits, and panics turned into a clean 500.
#![forbid(unsafe_code)]

pub mod api;
pub mod appointments;
pub mod cases;
pub mod error;
pub mod extract;
pub mod grpc_proxy;
pub mod health;
pub mod openapi;
pub mod ops;
pub mod postal;
pub mod server;

pub use server::{Running, Targets, start};
