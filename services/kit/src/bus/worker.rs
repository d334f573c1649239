//! A consumer that survives the broker: it takes deliveries in batches (what
//! is ready now, up to a maximum) and hands them to a handler, and when the
//! connection goes it reconnects with backoff. Unacknowledged deliveries of a
//! lost connection come back from the broker; the inbox makes that harmless.

use std::future::Future;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::{Delivery, SharedBus};
use crate::shutdown::Shutdown;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown`: every batch is given to `handle`, which acks each
/// delivery once its effects are committed.
pub async fn consume_batches<F, Fut>(
    bus: SharedBus,
    queue: &str,
    consumer_tag: &str,
    prefetch: u16,
    max_batch: usize,
    shutdown: Shutdown,
    mut handle: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = MIN_BACKOFF;
    while !shutdown.is_cancelled() {
        let stream = match bus.consume(queue, consumer_tag, prefetch).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(queue, error = %crate::error::error_chain(&e), ?backoff, "cannot consume, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(queue, "consuming");
        let mut stream = stream;
        loop {
            let first = tokio::select! {
                next = stream.next() => next,
                _ = shutdown.cancelled() => return,
            };
            let Some(first) = first else {
                tracing::warn!(queue, "consumer stream ended, reconnecting");
                break;
            };
            let mut batch = Vec::with_capacity(max_batch);
            let mut failed = false;
            match first {
                Ok(d) => {
                    // Only a delivery proves the link works: a consume that
                    // succeeds on a connection about to drop must not reset
                    // the backoff, or a flapping broker is hammered.
                    backoff = MIN_BACKOFF;
                    batch.push(d);
                }
                Err(e) => {
                    tracing::warn!(queue, error = %crate::error::error_chain(&e), "consumer failed, reconnecting");
                    failed = true;
                }
            }
            // Take whatever else is already here, without waiting for more.
            while !failed && batch.len() < max_batch {
                match stream.next().now_or_never() {
                    Some(Some(Ok(d))) => batch.push(d),
                    Some(Some(Err(e))) => {
                        tracing::warn!(queue, error = %crate::error::error_chain(&e), "consumer failed, reconnecting");
                        failed = true;
                    }
                    Some(None) => failed = true,
                    None => break,
                }
            }
            if !batch.is_empty() {
                handle(batch).await;
            }
            if failed {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
