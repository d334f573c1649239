//! The message bus: the topology every service agrees on, what a message is,
//! and one contract with two implementations: RabbitMQ (`amqp`, production)
//! and a durable in-process bus on SQLite (`local`, the embedded default).
//! Both give at-least-once delivery with manual acks, a delivery limit and a
//! dead-letter queue; the inbox on the consuming side makes repeats harmless.

pub mod amqp;
pub mod local;
pub mod users;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;

pub use amqp::AmqpBus;
pub use local::LocalBus;
pub use users::{BusUsers, Credentials, Publishers, WrongPublisher};
pub use worker::{Subscription, consume_batches};

/// Where channels publish normalized dossiers (`dossier.submitted.<channel>`).
pub const DOSSIERS_EXCHANGE: &str = "guichet.dossiers";
/// Where instruction publishes what happened to a dossier.
pub const EVENTS_EXCHANGE: &str = "guichet.events";
/// Where messages go that cannot be processed.
pub const DEAD_EXCHANGE: &str = "guichet.dead";
/// The instruction service's queue of submitted dossiers.
pub const INSTRUCTION_QUEUE: &str = "instruction.dossiers";
/// Every dead-lettered message, kept for inspection and replay.
pub const DEAD_LETTER_QUEUE: &str = "guichet.dead.letters";
/// What happened to each case (routing key `case.<kind>.<channel>`), titles
/// nearing expiry (`title.expiry_alert.<channel>`), blocked-user reports
/// (`report.<step>.<prefecture>`) and appointments
/// (`appointment.<step>.<site>`), for the notifier to tell the person on
/// their channel.
pub const NOTIFIER_QUEUE: &str = "notifier.case-events";
/// The letters the notifier asks the mailroom to print and post
/// (`letter.<kind>.<prefecture>`), for anyone answered on paper whatever
/// their channel. Also the alternatives offered to reports
/// (`report.alternative_offered.<prefecture>`): a paper kit is printed there.
pub const POSTAL_LETTERS_QUEUE: &str = "postal.letters";

/// Header naming why a message was dead-lettered.
pub const DEATH_REASON_HEADER: &str = "x-guichet-death-reason";
/// Header naming the queue a dead-lettered message came from.
pub const DEATH_QUEUE_HEADER: &str = "x-guichet-death-queue";
/// Header naming the exchange a dead-lettered message was first published to,
/// where a replay sends it back.
pub const DEATH_EXCHANGE_HEADER: &str = "x-guichet-death-exchange";
/// Header naming who first published a dead-lettered message (its AMQP
/// `user_id`), since the dead letter itself is published by the consumer.
pub const DEATH_PUBLISHER_HEADER: &str = "x-guichet-death-publisher";
/// Header with the time (RFC 3339) a message was dead-lettered.
pub const DEATH_TIME_HEADER: &str = "x-guichet-death-time";
/// RabbitMQ's own dead-lettering history (every death: queue, reason,
/// count, time), as JSON text in `Delivery::headers`.
pub const BROKER_DEATH_HEADER: &str = "x-death";
/// RabbitMQ's reason for the first death (`delivery_limit`, `rejected`, ...).
pub const BROKER_FIRST_DEATH_REASON: &str = "x-first-death-reason";
/// RabbitMQ's record of the exchange the message was first published to.
pub const BROKER_FIRST_DEATH_EXCHANGE: &str = "x-first-death-exchange";

pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Every exchange (all topic exchanges).
pub const EXCHANGES: [&str; 3] = [DOSSIERS_EXCHANGE, EVENTS_EXCHANGE, DEAD_EXCHANGE];

/// How much a queue may hold. Past `max_length` messages, publishing to it
/// is refused (the publisher keeps the message: an outbox row stays unsent
/// and is tried again), never dropped. A message older than `max_age` is
/// dead-lettered as `expired`, once the dead-letter queue has taken it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub max_length: u32,
    pub max_age: Option<Duration>,
}

/// A queue, what it is bound to, whether it has a delivery limit with
/// dead-lettering to `guichet.dead`, and its bound.
pub struct QueueSpec {
    pub name: &'static str,
    pub bindings: &'static [(&'static str, &'static str)],
    pub dead_letters: bool,
    pub bound: Bound,
}

/// The queues, as data: both buses declare and route from this one table.
///
/// Changing a bound changes the queue's arguments on RabbitMQ, which a broker
/// refuses for a queue already declared (see `BusError::QueueArguments`).
pub const QUEUES: [QueueSpec; 4] = [
    QueueSpec {
        name: INSTRUCTION_QUEUE,
        bindings: &[(DOSSIERS_EXCHANGE, "dossier.submitted.*")],
        dead_letters: true,
        // About a month of national filings (~3,000 a day); a legacy replay
        // bigger than that waits in the channels' outboxes. A dossier never
        // expires: the person's right does not lapse in a queue.
        bound: Bound {
            max_length: 100_000,
            max_age: None,
        },
    },
    QueueSpec {
        name: NOTIFIER_QUEUE,
        bindings: &[
            (EVENTS_EXCHANGE, "case.#"),
            (EVENTS_EXCHANGE, "title.#"),
            (EVENTS_EXCHANGE, "report.#"),
            (EVENTS_EXCHANGE, "appointment.#"),
        ],
        dead_letters: true,
        // A week of events at a national peak (~30,000 a day), so the age
        // bound acts first: an event no notifier took within a week goes to
        // an operator, instead of stopping instruction's events (postal
        // letters included) once the queue is full.
        bound: Bound {
            max_length: 200_000,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        },
    },
    QueueSpec {
        name: POSTAL_LETTERS_QUEUE,
        bindings: &[
            (EVENTS_EXCHANGE, "letter.#"),
            (EVENTS_EXCHANGE, "report.alternative_offered.*"),
        ],
        dead_letters: true,
        // Weeks of paper answers; a letter is owed however late, so it
        // never expires.
        bound: Bound {
            max_length: 50_000,
            max_age: None,
        },
    },
    QueueSpec {
        name: DEAD_LETTER_QUEUE,
        bindings: &[(DEAD_EXCHANGE, "#")],
        dead_letters: false,
        // More than operators can look at; past it, a message due to die
        // waits in its own queue (at-least-once dead-lettering), never lost.
        bound: Bound {
            max_length: 50_000,
            max_age: None,
        },
    },
];

/// The bounds a bus applies: the table's, or lower ones a test sets so it
/// can fill a queue with a few messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds([Bound; QUEUES.len()]);

impl Default for Bounds {
    fn default() -> Self {
        Self(QUEUES.map(|q| q.bound))
    }
}

impl Bounds {
    /// `queue`'s bound replaced by `bound`; a name not in the table is
    /// refused.
    pub fn with(mut self, queue: &str, bound: Bound) -> Result<Self, BusError> {
        let i = QUEUES
            .iter()
            .position(|q| q.name == queue)
            .ok_or_else(|| BusError::UnknownQueue(queue.to_string()))?;
        self.0[i] = bound;
        Ok(self)
    }

    /// `queue`'s bound; `None` for a name not in the table.
    pub fn of(&self, queue: &str) -> Option<Bound> {
        QUEUES
            .iter()
            .position(|q| q.name == queue)
            .map(|i| self.0[i])
    }

    /// Every queue with its bound.
    pub fn iter(&self) -> impl Iterator<Item = (&'static QueueSpec, Bound)> + '_ {
        QUEUES.iter().zip(self.0.iter().copied())
    }
}

/// The queues a message published to `exchange` with `routing_key` reaches.
pub fn route(exchange: &str, routing_key: &str) -> Vec<&'static str> {
    QUEUES
        .iter()
        .filter(|q| {
            q.bindings
                .iter()
                .any(|(e, pattern)| *e == exchange && topic_matches(pattern, routing_key))
        })
        .map(|q| q.name)
        .collect()
}

/// AMQP topic matching: words split on dots, `*` is one word, `#` any number.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach the broker")]
    Connect(#[source] lapin::Error),
    #[error("broker operation failed: {operation}")]
    Amqp {
        operation: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("in-process bus storage failed: {operation}")]
    Local {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// With every queue bounded (`x-overflow: reject-publish`), a nack
    /// mostly means a queue the message routes to is full; the broker does
    /// not say which.
    #[error(
        "the broker refused the message (nack): a queue it routes to is full, or the broker could not store it"
    )]
    Nacked,
    #[error(
        "queue {queue} is full ({max_length} messages): the message was not taken, send it again once the queue drains"
    )]
    QueueFull {
        queue: &'static str,
        max_length: u32,
    },
    #[error(
        "queue {queue} exists on the broker with other arguments than this version declares ({broker}). \
         The broker cannot change them in place: stop what publishes to it (outboxes keep every message), \
         let its consumer empty it or move its messages elsewhere (e.g. a shovel), delete it with \
         `rabbitmqctl delete_queue --vhost <vhost> {queue} --if-empty`, and start again: it is declared anew"
    )]
    QueueArguments { queue: &'static str, broker: String },
    #[error("no queue {0} in the topology")]
    UnknownQueue(String),
    #[error("the message is unroutable: {0}")]
    Unroutable(String),
    #[error("the broker did not confirm in time")]
    ConfirmTimeout,
    #[error("the bus is not connected: {0}")]
    Unavailable(String),
    /// The connection is taken for broken: the next operation reconnects.
    #[error("the broker did not answer {operation} in time")]
    NoAnswer { operation: &'static str },
}

/// A message ready to publish: persistent, mandatory, confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique and stable across retries: consumers dedupe on it.
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    /// Text headers: trace context, reference, schema version.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl OutgoingMessage {
    /// A new message (fresh id) carrying the current span's trace context,
    /// so whoever consumes it continues the trace.
    pub fn traced(exchange: &str, routing_key: String, body: Vec<u8>) -> Self {
        OutgoingMessage {
            message_id: uuid::Uuid::now_v7().to_string(),
            exchange: exchange.to_string(),
            routing_key,
            headers: crate::telemetry::inject(&tracing::Span::current())
                .into_iter()
                .collect(),
            body,
        }
    }

    /// The same, with one more header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_string(), value.into());
        self
    }
}

pub type DeliveryStream = BoxStream<'static, Result<Delivery, BusError>>;

/// The contract both buses keep.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes every message; the result is per message, in order. `Ok`
    /// means stored by the bus (confirmed): only then may the sender forget it.
    async fn publish(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), BusError>>;

    /// Deliveries from `queue`, at most `prefetch` unacknowledged at once.
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        prefetch: u16,
    ) -> Result<DeliveryStream, BusError>;

    /// Messages waiting in `queue` (not counting those being delivered).
    async fn queue_depth(&self, queue: &str) -> Result<u32, BusError>;

    /// The bounds this bus gives its queues.
    fn bounds(&self) -> Bounds {
        Bounds::default()
    }

    /// Takes up to `max` messages waiting in `queue`, without a consumer, for
    /// an operator's tool (`guichet dlq`) to look at and settle one by one:
    /// `ack` removes a message; dropping a delivery gives it back.
    async fn take(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError>;

    /// Connects (if needed) and declares the topology.
    async fn ensure_ready(&self) -> Result<(), BusError>;

    async fn close(&self);
}

pub type SharedBus = Arc<dyn Bus>;

/// The bus of a process that neither publishes nor consumes (the gateway
/// run alone, which only calls the services): every use is refused, so a
/// mistake shows at once instead of a connection opened for nothing.
pub struct NoBus(pub &'static str);

impl NoBus {
    fn refuse(&self) -> BusError {
        BusError::Unavailable(format!("{} has no bus", self.0))
    }
}

#[async_trait::async_trait]
impl Bus for NoBus {
    async fn publish(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), BusError>> {
        messages.iter().map(|_| Err(self.refuse())).collect()
    }

    async fn consume(&self, _: &str, _: &str, _: u16) -> Result<DeliveryStream, BusError> {
        Err(self.refuse())
    }

    async fn queue_depth(&self, _: &str) -> Result<u32, BusError> {
        Err(self.refuse())
    }

    async fn take(&self, _: &str, _: usize) -> Result<Vec<Delivery>, BusError> {
        Err(self.refuse())
    }

    async fn ensure_ready(&self) -> Result<(), BusError> {
        Err(self.refuse())
    }

    async fn close(&self) {}
}

/// One message received, to be acknowledged once its effects are committed.
pub struct Delivery {
    pub message_id: Option<String>,
    /// The exchange the message was published to.
    pub exchange: String,
    pub routing_key: String,
    /// Who published it, as the broker checked (AMQP `user_id`); `None` on
    /// the in-process bus, or when the publisher did not say.
    pub user_id: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub redelivered: bool,
    /// Deliveries of this message before this one.
    pub delivery_count: u32,
    acker: Acker,
}

enum Acker {
    Amqp(amqp::AmqpAcker),
    Local(local::LocalAcker),
}

impl Delivery {
    /// Done with: the bus forgets the message.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Amqp(a) => amqp::ack(a).await,
            Acker::Local(a) => a.ack().await,
        }
    }

    /// Acks a batch, the results in its order. Over AMQP all at once: the
    /// client then writes the acks together, where one after the other each
    /// waited for its own turn of the connection's loop (a batch is up to
    /// the prefetch). On the in-process bus one after the other: each is a
    /// write of the bus file, which takes one writer at a time.
    pub async fn ack_all<'a>(
        batch: impl IntoIterator<Item = &'a Delivery>,
    ) -> Vec<Result<(), BusError>> {
        let batch: Vec<&Delivery> = batch.into_iter().collect();
        if batch.iter().all(|d| matches!(d.acker, Acker::Amqp(_))) {
            return futures_util::future::join_all(batch.iter().map(|d| d.ack())).await;
        }
        let mut results = Vec::with_capacity(batch.len());
        for d in batch {
            results.push(d.ack().await);
        }
        results
    }

    /// Gives the message back for another try; the bus counts the delivery
    /// and dead-letters it past the delivery limit.
    pub async fn retry_later(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Amqp(a) => amqp::retry_later(a).await,
            Acker::Local(a) => a.retry_later().await,
        }
    }

    /// The trace headers the publisher attached.
    pub fn trace_carrier(&self) -> HashMap<String, String> {
        crate::telemetry::TRACE_HEADERS
            .iter()
            .filter_map(|h| self.headers.get(*h).map(|v| (h.to_string(), v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching_table() {
        let table = [
            ("dossier.submitted.*", "dossier.submitted.web", true),
            ("dossier.submitted.*", "dossier.submitted", false),
            ("dossier.submitted.*", "dossier.submitted.web.extra", false),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("dossier.#", "dossier", true),
            ("dossier.#", "dossier.a.b", true),
            ("*.submitted.#", "dossier.submitted", true),
            ("a.b", "a.c", false),
        ];
        for (pattern, key, expected) in table {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} ~ {key}");
        }
    }

    #[test]
    fn every_queue_is_bounded() {
        // A change here changes the queues' arguments, which a broker refuses
        // for queues already declared: see `BusError::QueueArguments`.
        let week = Some(Duration::from_secs(7 * 24 * 3600));
        let table = [
            (INSTRUCTION_QUEUE, 100_000, None),
            (NOTIFIER_QUEUE, 200_000, week),
            (POSTAL_LETTERS_QUEUE, 50_000, None),
            (DEAD_LETTER_QUEUE, 50_000, None),
        ];
        assert_eq!(table.len(), QUEUES.len());
        for (name, max_length, max_age) in table {
            let q = QUEUES.iter().find(|q| q.name == name).unwrap();
            assert_eq!(
                q.bound,
                Bound {
                    max_length,
                    max_age
                },
                "{name}"
            );
            // An expired message is dead-lettered, never dropped: only a queue
            // that dead-letters may have an age bound.
            assert!(max_age.is_none() || q.dead_letters, "{name}");
        }
    }

    #[test]
    fn a_bound_is_lowered_for_one_queue_only() {
        let low = Bound {
            max_length: 3,
            max_age: Some(Duration::from_secs(1)),
        };
        let bounds = Bounds::default().with(NOTIFIER_QUEUE, low).unwrap();
        assert_eq!(bounds.of(NOTIFIER_QUEUE), Some(low));
        assert_eq!(bounds.of(INSTRUCTION_QUEUE), Some(QUEUES[0].bound));
        assert_eq!(bounds.of("nobody.here"), None);
        assert!(matches!(
            Bounds::default().with("nobody.here", low),
            Err(BusError::UnknownQueue(_))
        ));
    }

    #[test]
    fn routes_follow_the_topology() {
        assert_eq!(
            route(DOSSIERS_EXCHANGE, "dossier.submitted.postal"),
            vec![INSTRUCTION_QUEUE]
        );
        assert_eq!(
            route(DEAD_EXCHANGE, "dossier.submitted.web"),
            vec![DEAD_LETTER_QUEUE]
        );
        assert!(route(DOSSIERS_EXCHANGE, "nothing.here").is_empty());
        // A postal filer is told by the notifier, like everyone; what it
        // asks the mailroom to print comes back as a letter request.
        assert_eq!(
            route(EVENTS_EXCHANGE, "case.attestation_issued.postal"),
            vec![NOTIFIER_QUEUE]
        );
        assert_eq!(
            route(EVENTS_EXCHANGE, "letter.attestation_issued.59"),
            vec![POSTAL_LETTERS_QUEUE]
        );
        assert_eq!(
            route(EVENTS_EXCHANGE, "case.attestation_issued.web"),
            vec![NOTIFIER_QUEUE]
        );
        assert_eq!(
            route(EVENTS_EXCHANGE, "report.alternative_offered.59"),
            vec![NOTIFIER_QUEUE, POSTAL_LETTERS_QUEUE]
        );
        assert_eq!(
            route(EVENTS_EXCHANGE, "report.opened.59"),
            vec![NOTIFIER_QUEUE]
        );
        assert!(route(EVENTS_EXCHANGE, "attestation.issued").is_empty());
    }
}
