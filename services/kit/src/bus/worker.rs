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
/// How often an idle consumer looks at its queue.
const STALL_CHECK: Duration = Duration::from_secs(10);
/// Idle checks in a row with messages waiting before the subscription is
/// taken for dead. Seen with RabbitMQ 3.10: a consumer that subscribed to a
/// quorum queue while it was electing a new leader got `consume-ok` and then
/// nothing, while the queue filled up.
const STALL_CHECKS: u32 = 3;

/// Runs until `shutdown`: every batch is given to `handle`, which acks each
/// delivery once its effects are committed.
pub async fn consume_batches<F, Fut>(
    bus: SharedBus,
    queue: &str,
    consumer_tag: &str,
    prefetch: u16,
    max_batch: usize,
    shutdown: Shutdown,
    handle: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()>,
{
    consume_checking_every(
        bus,
        queue,
        consumer_tag,
        prefetch,
        max_batch,
        STALL_CHECK,
        shutdown,
        handle,
    )
    .await;
}

/// `consume_batches`, an idle consumer looking at its queue every `check`.
#[allow(clippy::too_many_arguments)]
async fn consume_checking_every<F, Fut>(
    bus: SharedBus,
    queue: &str,
    consumer_tag: &str,
    prefetch: u16,
    max_batch: usize,
    check: Duration,
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
        let mut idle_with_work = 0;
        loop {
            let first = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep(check) => {
                    // Idle is normal with an empty queue. Idle while messages
                    // wait (nothing is in flight here) means the broker no
                    // longer delivers to this subscription: subscribe again.
                    match bus.queue_depth(queue).await {
                        Ok(waiting) if waiting > 0 => idle_with_work += 1,
                        _ => idle_with_work = 0,
                    }
                    if idle_with_work >= STALL_CHECKS {
                        tracing::warn!(queue, "nothing delivered while messages wait, subscribing again");
                        break;
                    }
                    continue;
                }
                _ = shutdown.cancelled() => return,
            };
            idle_with_work = 0;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::bus::{Bus, BusError, DeliveryStream, OutgoingMessage};

    /// A broker that takes subscriptions and never delivers, with `waiting`
    /// messages in the queue.
    struct Silent {
        waiting: u32,
        subscriptions: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Bus for Silent {
        async fn publish(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), BusError>> {
            messages.iter().map(|_| Ok(())).collect()
        }
        async fn consume(&self, _: &str, _: &str, _: u16) -> Result<DeliveryStream, BusError> {
            self.subscriptions.fetch_add(1, Ordering::SeqCst);
            Ok(futures_util::stream::pending().boxed())
        }
        async fn queue_depth(&self, _: &str) -> Result<u32, BusError> {
            Ok(self.waiting)
        }
        async fn take(&self, _: &str, _: usize) -> Result<Vec<Delivery>, BusError> {
            Ok(Vec::new())
        }
        async fn ensure_ready(&self) -> Result<(), BusError> {
            Ok(())
        }
        async fn close(&self) {}
    }

    /// Subscriptions made by a consumer left idle for `checks` looks at its
    /// queue (and a little more); past `STALL_CHECKS`, until a second one.
    async fn subscriptions_after(waiting: u32, checks: u32) -> u32 {
        let check = Duration::from_millis(40);
        let bus = Arc::new(Silent {
            waiting,
            subscriptions: AtomicU32::new(0),
        });
        let shutdown = Shutdown::new();
        let consumer = tokio::spawn({
            let (bus, shutdown) = (bus.clone() as SharedBus, shutdown.clone());
            async move {
                consume_checking_every(bus, "q", "t", 1, 1, check, shutdown, |_| async {}).await;
            }
        });
        tokio::time::sleep(check * checks + check / 2).await;
        // Waiting for more is a bound on a slow machine, not a measure.
        if waiting > 0 && checks > STALL_CHECKS {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while bus.subscriptions.load(Ordering::SeqCst) < 2
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(check).await;
            }
        }
        shutdown.cancel();
        consumer.await.unwrap();
        bus.subscriptions.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_subscription_that_delivers_nothing_while_messages_wait_is_made_again() {
        // Messages waiting and nothing delivered: after STALL_CHECKS looks,
        // subscribed again (not before).
        assert_eq!(subscriptions_after(5, STALL_CHECKS - 1).await, 1);
        assert!(subscriptions_after(5, 2 * STALL_CHECKS + 2).await >= 2);
        // An empty queue: idle is normal, the subscription stays.
        assert_eq!(subscriptions_after(0, 4 * STALL_CHECKS).await, 1);
    }
}
