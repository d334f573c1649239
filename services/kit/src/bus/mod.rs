//! The message bus: the topology every service agrees on, what a message is,
//! and the AMQP implementation over RabbitMQ (lapin).

pub mod amqp;
pub mod worker;

use std::collections::BTreeMap;

pub use amqp::{AmqpBus, BusError, Delivery};
pub use worker::consume_batches;

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

/// Header naming why a consumer dead-lettered a message.
pub const DEATH_REASON_HEADER: &str = "x-guichet-death-reason";
/// Header naming the queue a dead-lettered message came from.
pub const DEATH_QUEUE_HEADER: &str = "x-guichet-death-queue";

pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// A message ready to publish: persistent, mandatory, confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique and stable across retries: consumers dedupe on it.
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    /// Text headers: trace context, message type, schema version.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}
