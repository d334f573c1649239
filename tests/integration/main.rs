//! Every end-to-end test of the root package, in one test binary: one link
//! of the whole workspace instead of one per file. Each module is what was a
//! test file of its own; `common` is what they share (a database and a vhost
//! per test, the mesh or part of it, HTTP and gRPC helpers).
//!
//! `tests/tracing.rs` stays a binary of its own: the tracer provider is
//! process-wide, and that test must be the one that installs it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

mod access;
mod agents_pages;
mod bus_bounds;
mod bus_contract;
mod bus_tls;
mod bus_users;
mod channels;
mod cluster;
mod dates;
mod documents;
mod edge;
mod embedded_crash;
mod faults;
mod foundation;
mod gateway_grpc;
mod harness;
mod instances;
mod instruction;
mod notices;
mod observability;
mod open_data;
mod person_code;
mod pooler;
mod postal;
mod schema_parity;
mod secrets;
mod storage_contract;
mod store_contracts;
mod supervision;
mod upload_memory;
mod uploads;
mod web_pages;
