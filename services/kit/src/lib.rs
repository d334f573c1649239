//! Guichet's runtime kit: everything a service needs to run, and no business
//! rule. Configuration, telemetry, shutdown, the clock, PostgreSQL pools and
//! migrations, the AMQP bus with its topology, the transactional outbox and
//! its relay, the inbox, the Prometheus figures, the document store, and the
//! one table that maps errors to HTTP and gRPC.
#![forbid(unsafe_code)]

pub mod bus;
pub mod capacity;
pub mod clock;
pub mod config;
pub mod db;
pub mod documents;
pub mod error;
pub mod grpc;
pub mod grpc_check;
pub mod inbox;
pub mod lease;
pub mod links;
pub mod metrics;
pub mod outbox;
pub mod pdf;
pub mod seal;
pub mod service;
pub mod shutdown;
pub mod sql;
pub mod telemetry;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{ErrorKind, ServiceError};
pub use metrics::Metrics;
