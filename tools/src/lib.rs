//! The tools beside the product: `guichet bench` and `bench-postal` (the
//! mesh under load, beside the bare pipeline), `guichet simulate` (a year of
//! filings through the real rules) and `guichet dlq` (the dead-letter queue).
//! None of it runs in a service; the `guichet` command exposes them.
#![forbid(unsafe_code)]

pub mod bench;
pub mod dlq;
pub mod progress;
pub mod simulate;
pub mod verify;
