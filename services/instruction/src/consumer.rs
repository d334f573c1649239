//! From the queue to the database. Each batch: decode and check every
//! message; dead-letter (with the reason in its headers) what can never be
//! recorded; record the rest in one transaction; ack only after the commit.
//! While the database is down the batch is held and retried, never acked.

use std::time::Duration;

use guichet_kit::bus::{
    DEAD_EXCHANGE, DEATH_EXCHANGE_HEADER, DEATH_PUBLISHER_HEADER, DEATH_QUEUE_HEADER,
    DEATH_REASON_HEADER, DEATH_TIME_HEADER, Delivery, INSTRUCTION_QUEUE, OutgoingMessage,
    Publishers, SharedBus, WrongPublisher,
};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Database;
use guichet_kit::error::error_chain;
use guichet_kit::metrics::{ChannelLabels, DeadLetterLabels, QueueLabels};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Metrics, db, telemetry};
use guichet_proto::{convert, v1 as pb};
use prost::Message;
use tracing::Instrument;

use crate::store::{Incoming, Store};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a message can never be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poison {
    NoMessageId,
    Undecodable(String),
    UnknownSchemaVersion(u32),
    BreaksRule(String),
    /// Published by a service that does not file this channel's dossiers, or
    /// by someone who did not say who they are, while each channel has its
    /// own broker user: a forgery, or a service misconfigured.
    WrongPublisher(WrongPublisher),
    /// The database refuses it, alone, for a reason other than being down.
    Rejected(String),
}

enum Recorded {
    /// Committed; the references recorded for the first time.
    Done(Vec<String>),
    ShuttingDown,
    Failed(String),
}

impl Poison {
    pub fn reason(&self) -> String {
        match self {
            Poison::NoMessageId => "no message id: it cannot be deduplicated".into(),
            Poison::Undecodable(e) => format!("undecodable: {e}"),
            Poison::UnknownSchemaVersion(v) => format!("unknown schema version {v}"),
            Poison::BreaksRule(v) => format!("breaks a domain rule: {v}"),
            Poison::WrongPublisher(WrongPublisher::Unnamed) => {
                "no publisher: the message has no user_id".into()
            }
            Poison::WrongPublisher(WrongPublisher::NotTheChannels { channel, user }) => {
                format!("wrong publisher: {user} does not file {channel} dossiers")
            }
            Poison::Rejected(e) => format!("refused by the instruction database: {e}"),
        }
    }

    /// The reason as a metric label: a short, bounded name.
    pub fn label(&self) -> &'static str {
        match self {
            Poison::NoMessageId => "no_message_id",
            Poison::Undecodable(_) => "undecodable",
            Poison::UnknownSchemaVersion(_) => "unknown_schema",
            Poison::BreaksRule(_) => "breaks_rule",
            Poison::WrongPublisher(WrongPublisher::Unnamed) => "no_publisher",
            Poison::WrongPublisher(WrongPublisher::NotTheChannels { .. }) => "wrong_publisher",
            Poison::Rejected(_) => "rejected",
        }
    }
}

/// A span for the database write of one message's dossier, child of its
/// consumer span, so each dossier's trace runs down to the write even though
/// a batch is written in one transaction.
fn write_span(parent: &tracing::Span, db: &Database, batch: usize) -> tracing::Span {
    let system = match db {
        Database::Postgres(..) => "postgresql",
        Database::Sqlite(_) => "sqlite",
    };
    tracing::info_span!(
        parent: parent,
        "INSERT dossiers",
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = "INSERT",
        db.collection.name = "dossiers",
        db.operation.batch.size = batch,
    )
}

/// Reads one delivery into a dossier, or says why it never will be one.
/// With `publishers`, the dossier's channel must be one its publisher (the
/// broker-checked `user_id`) files.
pub fn decode(
    delivery: &Delivery,
    now: chrono::DateTime<chrono::Utc>,
    publishers: Option<&Publishers>,
) -> Result<(String, guichet_dossier::Dossier), Poison> {
    let message_id = delivery
        .message_id
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or(Poison::NoMessageId)?;
    let wire = pb::Dossier::decode(delivery.body.as_slice())
        .map_err(|e| Poison::Undecodable(e.to_string()))?;
    if !guichet_dossier::reads_schema_version(wire.schema_version) {
        return Err(Poison::UnknownSchemaVersion(wire.schema_version));
    }
    let dossier =
        convert::dossier_from_pb(&wire, now).map_err(|v| Poison::BreaksRule(v.to_string()))?;
    if let Some(publishers) = publishers {
        publishers
            .check(dossier.channel(), delivery.user_id.as_deref())
            .map_err(Poison::WrongPublisher)?;
    }
    Ok((message_id, dossier))
}

pub struct Consumer {
    pub store: Store,
    pub bus: SharedBus,
    pub clock: SharedClock,
    pub shutdown: Shutdown,
    /// Pokes the events relay once new case events are committed.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    pub metrics: Metrics,
    /// Who may publish each channel's dossiers, when the services have
    /// broker users of their own; `None` takes every publisher.
    pub publishers: Option<Publishers>,
}

impl Consumer {
    pub async fn handle(&self, batch: Vec<Delivery>) {
        let now = self.clock.now();
        let mut good = Vec::with_capacity(batch.len());
        let mut held = Vec::with_capacity(batch.len());
        for delivery in batch {
            let span = tracing::info_span!(
                "consume",
                otel.name = %format!("process {INSTRUCTION_QUEUE}"),
                otel.kind = "consumer",
                messaging.system = "rabbitmq",
                messaging.operation.name = "process",
                messaging.operation.type = "process",
                messaging.destination.name = INSTRUCTION_QUEUE,
                messaging.message.id = delivery.message_id.as_deref().unwrap_or(""),
                dossier = tracing::field::Empty,
            );
            telemetry::set_parent(&span, &delivery.trace_carrier());
            match decode(&delivery, now, self.publishers.as_ref()) {
                Ok((message_id, dossier)) => {
                    span.record("dossier", dossier.reference.as_str());
                    good.push(Incoming {
                        message_id,
                        trace_id: telemetry::trace_id(&span),
                        dossier,
                        encoded: delivery.body.clone(),
                    });
                    held.push((delivery, span));
                }
                Err(poison) => {
                    self.dead_letter(&delivery, &poison).instrument(span).await;
                }
            }
        }
        if good.is_empty() {
            return;
        }
        let writes: Vec<tracing::Span> = held
            .iter()
            .map(|(_, span)| write_span(span, self.store.db(), good.len()))
            .collect();
        let first = writes.first().cloned().unwrap_or_else(tracing::Span::none);
        match self.record_with_retry(&good).instrument(first).await {
            Recorded::Done(new) => {
                drop(writes);
                self.count_recorded(&good, &new);
                self.wake.notify_one();
                for acked in Delivery::ack_all(held.iter().map(|(d, _)| d)).await {
                    self.settle(acked);
                }
            }
            Recorded::ShuttingDown => {} // unacked deliveries come back to the next consumer
            Recorded::Failed(_) => {
                drop(writes);
                // Something in the batch fails on its own: one by one, so the
                // others are not held back, and what still fails alone is
                // dead-lettered with the database's reason.
                for (incoming, (delivery, span)) in good.iter().zip(held) {
                    let write = write_span(&span, self.store.db(), 1);
                    match self
                        .record_with_retry(std::slice::from_ref(incoming))
                        .instrument(write.clone())
                        .await
                    {
                        Recorded::Done(new) => {
                            drop(write);
                            self.count_recorded(std::slice::from_ref(incoming), &new);
                            self.settle(delivery.ack().instrument(span).await);
                        }
                        Recorded::ShuttingDown => return,
                        Recorded::Failed(reason) => {
                            drop(write);
                            let poison = Poison::Rejected(reason);
                            self.dead_letter(&delivery, &poison).instrument(span).await;
                        }
                    }
                }
                self.wake.notify_one();
            }
        }
    }

    /// Counts an acknowledged delivery; a failed ack is only logged, since
    /// the broker will redeliver and the inbox makes that harmless.
    fn settle(&self, acked: Result<(), guichet_kit::bus::BusError>) {
        match acked {
            Ok(()) => {
                self.metrics
                    .messages_consumed
                    .get_or_create(&QueueLabels {
                        queue: INSTRUCTION_QUEUE,
                    })
                    .inc();
            }
            Err(e) => tracing::warn!(error = %e, "ack failed"),
        }
    }

    /// Dossiers recorded for the first time, and how long they took from
    /// their receipt; a redelivered one is not counted twice.
    fn count_recorded(&self, batch: &[Incoming], new: &[String]) {
        let now = self.clock.now();
        for incoming in batch
            .iter()
            .filter(|i| new.iter().any(|r| r == i.dossier.reference.as_str()))
        {
            let labels = ChannelLabels {
                channel: incoming.dossier.channel().as_str(),
            };
            self.metrics.dossiers_recorded.get_or_create(&labels).inc();
            let waited = (now - incoming.dossier.received_at)
                .to_std()
                .unwrap_or_default();
            self.metrics
                .filing_to_instruction
                .get_or_create(&labels)
                .observe(waited.as_secs_f64());
        }
    }

    /// Records the batch, waiting out a database outage (never giving up on
    /// it); any other failure is reported for the caller to split the batch.
    async fn record_with_retry(&self, batch: &[Incoming]) -> Recorded {
        let mut backoff = MIN_BACKOFF;
        loop {
            // Each statement's answer has the pool's bound
            // (`Pool::answer_bound`, carried by `Database::Postgres`): a
            // connection gone silent mid-batch fails the batch, which is
            // recorded again on another.
            let recorded = self
                .store
                .record(batch, self.clock.now(), self.clock.today());
            match recorded.await {
                Ok(new) => {
                    tracing::debug!(received = batch.len(), new = new.len(), "dossiers recorded");
                    return Recorded::Done(new);
                }
                Err(e) if db::is_unavailable(&e) || db::is_retryable(&e) => {
                    tracing::warn!(error = %error_chain(&e), ?backoff, "cannot record dossiers, retrying");
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), records = batch.len(), "recording failed");
                    return Recorded::Failed(error_chain(&e));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return Recorded::ShuttingDown,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Moves a message to the dead-letter queue with the reason in its
    /// headers, then acks it. If that publish fails the message is given back,
    /// and the broker's delivery limit dead-letters it all the same.
    ///
    /// This is the one place instruction dead-letters a message: a counter of
    /// dead letters by reason belongs here, after the publish is confirmed.
    async fn dead_letter(&self, delivery: &Delivery, poison: &Poison) {
        let reason = poison.reason();
        tracing::warn!(reason = %reason, routing_key = %delivery.routing_key, "dead-lettering a message");
        let mut headers = delivery.headers.clone();
        headers.insert(DEATH_REASON_HEADER.into(), reason);
        headers.insert(DEATH_QUEUE_HEADER.into(), INSTRUCTION_QUEUE.into());
        headers.insert(DEATH_EXCHANGE_HEADER.into(), delivery.exchange.clone());
        if let Some(user) = &delivery.user_id {
            headers.insert(DEATH_PUBLISHER_HEADER.into(), user.clone());
        }
        headers.insert(
            DEATH_TIME_HEADER.into(),
            self.clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        let message = OutgoingMessage {
            message_id: delivery
                .message_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            exchange: DEAD_EXCHANGE.into(),
            routing_key: delivery.routing_key.clone(),
            headers,
            body: delivery.body.clone(),
        };
        let published = self.bus.publish(std::slice::from_ref(&message)).await;
        let outcome = match published.into_iter().next() {
            Some(Ok(())) => {
                self.metrics
                    .dead_letters
                    .get_or_create(&DeadLetterLabels {
                        queue: INSTRUCTION_QUEUE,
                        reason: poison.label(),
                    })
                    .inc();
                delivery.ack().await
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "dead-letter publish failed, giving the message back");
                delivery.retry_later().await
            }
            None => delivery.retry_later().await,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "ack after dead-lettering failed");
        }
    }
}
