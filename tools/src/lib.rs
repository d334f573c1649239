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

/// Writes `text` and a line end to standard output. A reader that stopped
/// reading (`guichet verify ... | head -1`) is not an error: it has what it
/// wanted. Rust ignores SIGPIPE, so `println!` would panic there instead.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => done,
    }
}
