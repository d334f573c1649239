//! `guichet dlq`: what the dead-letter queue (`guichet.dead.letters`) holds,
//! and putting messages back where they came from or away for good. The same
//! on RabbitMQ and on the embedded bus: it goes through `Bus::take`, so a
//! message is only ever removed by an ack, after its replay is confirmed or
//! its drop asked for.

use crate::progress::Progress;
use std::collections::BTreeSet;

use guichet_kit::bus::{
    BROKER_DEATH_HEADER, BROKER_FIRST_DEATH_EXCHANGE, BROKER_FIRST_DEATH_REASON, DEAD_LETTER_QUEUE,
    DEATH_EXCHANGE_HEADER, DEATH_QUEUE_HEADER, DEATH_REASON_HEADER, DEATH_TIME_HEADER, Delivery,
    OutgoingMessage, SharedBus,
};
use serde::Serialize;

/// Header a replayed message carries: when it was put back.
pub const REPLAYED_AT_HEADER: &str = "x-guichet-replayed-at";

/// What an operator needs to decide about one dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub routing_key: String,
    /// Where a replay sends it; unknown for a message that says nothing.
    pub original_exchange: Option<String>,
    /// Why it died: Guichet's own reason, or the broker's (`delivery_limit`).
    pub reason: String,
    /// The queue it died in.
    pub queue: Option<String>,
    /// When it first died (RFC 3339).
    pub first_death: Option<String>,
    /// Body size in bytes.
    pub size: usize,
}

impl DeadLetter {
    pub fn of(d: &Delivery) -> Self {
        let header = |name: &str| d.headers.get(name).cloned();
        let broker_deaths: Vec<serde_json::Value> = header(BROKER_DEATH_HEADER)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let reason = match (
            header(DEATH_REASON_HEADER),
            header(BROKER_FIRST_DEATH_REASON),
        ) {
            (Some(ours), _) => ours,
            (None, Some(broker)) => format!("broker: {broker}"),
            (None, None) => "unknown".into(),
        };
        Self {
            message_id: d.message_id.clone().unwrap_or_default(),
            routing_key: d.routing_key.clone(),
            original_exchange: header(DEATH_EXCHANGE_HEADER)
                .or_else(|| header(BROKER_FIRST_DEATH_EXCHANGE)),
            reason,
            queue: header(DEATH_QUEUE_HEADER).or_else(|| header("x-first-death-queue")),
            // RFC 3339 times in UTC sort as text.
            first_death: header(DEATH_TIME_HEADER).or_else(|| {
                broker_deaths
                    .iter()
                    .filter_map(|death| death["time"].as_str())
                    .min()
                    .map(str::to_string)
            }),
            size: d.body.len(),
        }
    }
}

/// Which dead letters a command is about.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Ids(BTreeSet<String>),
}

impl Selection {
    fn contains(&self, message_id: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(message_id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Bus(#[from] guichet_kit::bus::BusError),
    #[error("not in the dead-letter queue: {}; nothing was changed", .0.join(", "))]
    NotFound(Vec<String>),
}

/// What a replay or a drop did, message by message.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<DeadLetter>,
    /// Still in the dead-letter queue, and why.
    pub failed: Vec<(DeadLetter, String)>,
}

/// Up to `limit` dead letters, oldest first, and how many more wait beyond
/// them; all of them stay in the queue.
pub async fn list(bus: &SharedBus, limit: usize) -> Result<(Vec<DeadLetter>, u32), DlqError> {
    let taken = bus.take(DEAD_LETTER_QUEUE, limit).await?;
    let letters = taken.iter().map(DeadLetter::of).collect();
    // Counted while the taken ones are held, so they are not counted twice.
    let more = bus.queue_depth(DEAD_LETTER_QUEUE).await;
    give_back(taken).await;
    Ok((letters, more?))
}

/// Publishes each selected message again to the exchange and routing key it
/// was first published with, and removes it from the dead-letter queue only
/// once the bus confirmed that publish. Its message id is kept, so a
/// consumer that already applied it skips it.
pub async fn replay(
    bus: &SharedBus,
    selection: &Selection,
    limit: usize,
) -> Result<Outcome, DlqError> {
    let chosen = choose(bus, selection, limit).await?;
    let mut outcome = Outcome::default();
    let mut sendable = Vec::new();
    let mut messages = Vec::new();
    for d in chosen {
        let letter = DeadLetter::of(&d);
        match &letter.original_exchange {
            Some(exchange) => {
                messages.push(replayed(&d, exchange));
                sendable.push((d, letter));
            }
            None => {
                outcome
                    .failed
                    .push((letter, "the exchange it came from is not recorded".into()));
                give_back(vec![d]).await;
            }
        }
    }
    let published = bus.publish(&messages).await;
    let mut progress = Progress::new("replaying", Some(sendable.len() as u64));
    for ((d, letter), result) in sendable.into_iter().zip(published) {
        progress.add(1);
        let settled = match result {
            Ok(()) => d.ack().await.map_err(|e| e.to_string()),
            Err(e) => {
                let _ = d.retry_later().await;
                Err(format!("not replayed: {e}"))
            }
        };
        match settled {
            Ok(()) => outcome.done.push(letter),
            Err(why) => outcome.failed.push((letter, why)),
        }
    }
    Ok(outcome)
}

/// Removes each selected message for good.
pub async fn discard(
    bus: &SharedBus,
    selection: &Selection,
    limit: usize,
) -> Result<Outcome, DlqError> {
    let chosen = choose(bus, selection, limit).await?;
    let mut outcome = Outcome::default();
    for d in chosen {
        let letter = DeadLetter::of(&d);
        match d.ack().await {
            Ok(()) => outcome.done.push(letter),
            Err(e) => outcome.failed.push((letter, e.to_string())),
        }
    }
    Ok(outcome)
}

/// Takes the dead letters and keeps the selected ones, giving the others
/// back; every id asked for must be there, or nothing is selected.
async fn choose(
    bus: &SharedBus,
    selection: &Selection,
    limit: usize,
) -> Result<Vec<Delivery>, DlqError> {
    let taken = bus.take(DEAD_LETTER_QUEUE, limit).await?;
    let (chosen, others): (Vec<Delivery>, Vec<Delivery>) = taken
        .into_iter()
        .partition(|d| selection.contains(d.message_id.as_deref().unwrap_or("")));
    if let Selection::Ids(ids) = selection {
        let found: BTreeSet<&str> = chosen
            .iter()
            .filter_map(|d| d.message_id.as_deref())
            .collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains(id.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            give_back(chosen).await;
            give_back(others).await;
            return Err(DlqError::NotFound(missing));
        }
    }
    give_back(others).await;
    Ok(chosen)
}

/// Puts taken messages back in the queue, as they were.
async fn give_back(deliveries: Vec<Delivery>) {
    for d in deliveries {
        if let Err(e) = d.retry_later().await {
            tracing::warn!(error = %e, "could not give a dead letter back; the bus will when the tool exits");
        }
    }
}

/// The message as it was first published: same id, body and routing key,
/// its headers without the record of its death.
fn replayed(d: &Delivery, exchange: &str) -> OutgoingMessage {
    let mut headers = d.headers.clone();
    headers.retain(|name, _| !is_death_header(name));
    headers.insert(
        REPLAYED_AT_HEADER.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    OutgoingMessage {
        message_id: d
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        exchange: exchange.to_string(),
        routing_key: d.routing_key.clone(),
        headers,
        body: d.body.clone(),
    }
}

fn is_death_header(name: &str) -> bool {
    name == BROKER_DEATH_HEADER
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
        || name.starts_with("x-guichet-death-")
        || name == "x-delivery-count"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_headers_are_the_ones_a_replay_leaves_behind() {
        let table = [
            ("x-death", true),
            ("x-first-death-reason", true),
            ("x-last-death-queue", true),
            ("x-guichet-death-reason", true),
            ("x-guichet-death-exchange", true),
            ("x-delivery-count", true),
            ("traceparent", false),
            ("x-guichet-reference", false),
            ("x-guichet-schema-version", false),
        ];
        for (name, death) in table {
            assert_eq!(is_death_header(name), death, "{name}");
        }
    }
}
