//! A consumer that survives the broker: it takes deliveries in batches (what
//! is ready now, up to a maximum) and hands them to a handler, and when the
//! connection goes it reconnects with backoff. Unacknowledged deliveries of a
//! lost connection come back from the broker; the inbox makes that harmless.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
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

/// What a consumer takes from its queue, and how much of it at once.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    pub queue: &'static str,
    pub consumer_tag: &'static str,
    /// Deliveries the broker lets the consumer hold unacknowledged.
    pub prefetch: u16,
    /// Most deliveries in one batch.
    pub max_batch: usize,
    /// Batches handled at once. Above one, a batch is taken while another
    /// waits on its commit: the handler must be safe to run beside itself,
    /// as two instances of its service are.
    pub batches_at_once: usize,
}

impl Subscription {
    /// One batch at a time, up to the prefetch.
    pub fn one_batch_at_a_time(
        queue: &'static str,
        consumer_tag: &'static str,
        prefetch: u16,
    ) -> Self {
        Self {
            queue,
            consumer_tag,
            prefetch,
            max_batch: usize::from(prefetch.max(1)),
            batches_at_once: 1,
        }
    }
}

/// Runs until `shutdown`: every batch is given to `handle`, which acks each
/// delivery once its effects are committed.
pub async fn consume_batches<F, Fut>(
    bus: SharedBus,
    subscription: Subscription,
    shutdown: Shutdown,
    handle: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()>,
{
    consume_checking_every(bus, subscription, STALL_CHECK, shutdown, handle).await;
}

/// `consume_batches`, an idle consumer looking at its queue every `check`.
async fn consume_checking_every<F, Fut>(
    bus: SharedBus,
    subscription: Subscription,
    check: Duration,
    shutdown: Shutdown,
    mut handle: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Subscription {
        queue,
        consumer_tag,
        prefetch,
        max_batch,
        batches_at_once,
    } = subscription;
    let batches_at_once = batches_at_once.max(1);
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
        // The batches being handled; a new one is taken while there is room.
        let mut handling = FuturesUnordered::new();
        loop {
            let first = tokio::select! {
                biased;
                Some(()) = handling.next(), if !handling.is_empty() => continue,
                _ = shutdown.cancelled() => {
                    // Each handler sees the shutdown itself; what it has not
                    // acked comes back from the broker.
                    while handling.next().await.is_some() {}
                    return;
                }
                next = stream.next(), if handling.len() < batches_at_once => next,
                _ = tokio::time::sleep(check), if handling.is_empty() => {
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
                handling.push(handle(batch));
            }
            if failed {
                break;
            }
        }
        // The batches of a lost subscription end before the next one starts:
        // their acks fail and the broker gives their deliveries back.
        tracing::debug!(
            queue,
            in_hand = handling.len(),
            "subscription ended, finishing the batches in hand"
        );
        while handling.next().await.is_some() {}
        tracing::debug!(
            queue,
            ?backoff,
            "batches in hand finished, subscribing again after the backoff"
        );
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
                let subscription = Subscription::one_batch_at_a_time("q", "t", 1);
                consume_checking_every(bus, subscription, check, shutdown, |_| async {}).await;
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

    /// Consumes six one-message batches from the in-process bus, at most
    /// `at_once` handled together; each handler waits until `at_once`
    /// batches are in hand (or all that remain), so a consumer that takes
    /// fewer at once never lets them through. Returns the most seen at once.
    async fn most_batches_in_hand(at_once: usize) -> usize {
        use crate::bus::{DOSSIERS_EXCHANGE, INSTRUCTION_QUEUE, LocalBus};
        use tokio::sync::watch;

        const MESSAGES: usize = 6;
        let dir = std::env::temp_dir().join(format!(
            "guichet-worker-{}-{at_once}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let bus: SharedBus = Arc::new(LocalBus::open(&dir.join("bus.sqlite"), 3).await.unwrap());
        let messages: Vec<OutgoingMessage> = (0..MESSAGES)
            .map(|i| {
                OutgoingMessage::traced(
                    DOSSIERS_EXCHANGE,
                    "dossier.submitted.web".into(),
                    vec![i as u8],
                )
            })
            .collect();
        for published in bus.publish(&messages).await {
            published.unwrap();
        }
        let (in_hand, watching) = watch::channel((0usize, 0usize)); // (now, handled)
        let most = Arc::new(AtomicU32::new(0));
        let shutdown = Shutdown::new();
        let subscription = Subscription {
            max_batch: 1,
            batches_at_once: at_once,
            ..Subscription::one_batch_at_a_time(INSTRUCTION_QUEUE, "t", MESSAGES as u16)
        };
        let consumer = tokio::spawn({
            let (bus, shutdown, most) = (bus.clone(), shutdown.clone(), most.clone());
            let in_hand = Arc::new(in_hand);
            consume_checking_every(
                bus,
                subscription,
                Duration::from_secs(60),
                shutdown,
                move |batch| {
                    let (in_hand, most) = (in_hand.clone(), most.clone());
                    let mut watching = in_hand.subscribe();
                    async move {
                        in_hand.send_modify(|(now, _)| *now += 1);
                        let now = in_hand.borrow().0;
                        most.fetch_max(now as u32, Ordering::SeqCst);
                        watching
                            .wait_for(|(now, handled)| *now >= at_once.min(MESSAGES - handled))
                            .await
                            .unwrap();
                        Delivery::ack_all(&batch).await;
                        in_hand.send_modify(|(now, handled)| {
                            *now -= 1;
                            *handled += batch.len();
                        });
                    }
                },
            )
        });
        let mut watching = watching;
        // A bound on a stuck consumer, not a measure.
        tokio::time::timeout(
            Duration::from_secs(30),
            watching.wait_for(|(_, handled)| *handled == MESSAGES),
        )
        .await
        .expect("every message handled")
        .unwrap();
        shutdown.cancel();
        consumer.await.unwrap();
        bus.close().await;
        std::fs::remove_dir_all(&dir).ok();
        most.load(Ordering::SeqCst) as usize
    }

    #[tokio::test]
    async fn a_consumer_handles_as_many_batches_at_once_as_it_is_given() {
        assert_eq!(most_batches_in_hand(1).await, 1);
        assert_eq!(most_batches_in_hand(2).await, 2);
        assert_eq!(most_batches_in_hand(3).await, 3);
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
