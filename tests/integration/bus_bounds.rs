//! Every queue is bounded, on both buses: a full queue refuses the next
//! publish (the outbox keeps the row until the queue drains, then sends it),
//! and a message older than its queue's age bound is dead-lettered as
//! `expired`, never dropped. The bounds are lowered here so a few messages
//! fill a queue.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, TestEnv, count};
use futures_util::StreamExt;
use guichet_kit::bus::{
    BROKER_FIRST_DEATH_REASON, Bound, Bounds, BusError, DEAD_LETTER_QUEUE, DEATH_EXCHANGE_HEADER,
    DEATH_QUEUE_HEADER, DEATH_REASON_HEADER, DEATH_TIME_HEADER, DOSSIERS_EXCHANGE, Delivery,
    DeliveryStream, EVENTS_EXCHANGE, INSTRUCTION_QUEUE, NOTIFIER_QUEUE, OutgoingMessage, SharedBus,
};
use guichet_kit::db::{Database, Migrations};
use guichet_kit::outbox::{self, OutboxRelay};

const WAIT: Duration = Duration::from_secs(20);
/// The lowered length bound.
const FULL_AT: u32 = 3;

static KIT_ONLY: Migrations = Migrations {
    postgres: &[],
    sqlite: &[],
};

fn dossier(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id.into(),
        exchange: DOSSIERS_EXCHANGE.into(),
        routing_key: "dossier.submitted.web".into(),
        headers: BTreeMap::from([("x-test".to_string(), id.to_string())]),
        body: format!("body of {id}").into_bytes(),
    }
}

/// A case event, which only the notifier's queue takes.
fn case_event(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        exchange: EVENTS_EXCHANGE.into(),
        routing_key: "case.receipt_issued.web".into(),
        ..dossier(id)
    }
}

fn lowered(queue: &str, bound: Bound) -> Bounds {
    Bounds::default().with(queue, bound).unwrap()
}

async fn next(stream: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a delivery in time")
        .expect("the stream goes on")
        .expect("a delivery, not an error")
}

async fn depth_becomes(bus: &SharedBus, queue: &str, n: u32) {
    common::eventually(WAIT, &format!("{queue} holding {n}"), || async {
        (bus.queue_depth(queue).await.ok()? == n).then_some(())
    })
    .await;
}

on_both_backends!(a_full_queue_refuses_and_the_outbox_sends_once_it_drains);
async fn a_full_queue_refuses_and_the_outbox_sends_once_it_drains(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bounds = lowered(
        INSTRUCTION_QUEUE,
        Bound {
            max_length: FULL_AT,
            max_age: None,
        },
    );
    let bus = env.open_bus_with_bounds(bounds).await;
    bus.ensure_ready().await.unwrap();

    // Filled one confirmed publish at a time, until the queue refuses.
    let mut accepted = Vec::new();
    let refused = loop {
        let m = dossier(&format!("fill-{}", accepted.len()));
        match bus.publish(std::slice::from_ref(&m)).await.remove(0) {
            Ok(()) => accepted.push(m),
            Err(e) => break e,
        }
        assert!(accepted.len() <= 10, "the queue never refused");
    };
    let accepted_n = accepted.len() as u32;
    match backend {
        Backend::Embedded => {
            assert_eq!(accepted_n, FULL_AT);
            assert!(
                matches!(
                    refused,
                    BusError::QueueFull {
                        queue: INSTRUCTION_QUEUE,
                        max_length: FULL_AT
                    }
                ),
                "{refused:?}"
            );
        }
        Backend::Servers => {
            // A quorum queue finds itself over its bound after an enqueue,
            // so it takes one more than the bound before it refuses.
            assert!(
                (FULL_AT..=FULL_AT + 1).contains(&accepted_n),
                "{accepted_n} accepted"
            );
            assert!(matches!(refused, BusError::Nacked), "{refused:?}");
        }
    }

    // A filing's outbox row meets the full queue: it stays unsent.
    let db = Database::open(
        env.database_url.as_deref(),
        &env.data_dir,
        "bounds",
        guichet_kit::db::Pool::sized(2),
        &KIT_ONLY,
    )
    .await
    .unwrap();
    let waiting = dossier("waiting");
    match &db {
        Database::Postgres(p, _) => {
            let mut tx = p.begin().await.unwrap();
            outbox::enqueue_postgres(&mut tx, &waiting).await.unwrap();
            tx.commit().await.unwrap();
        }
        Database::Sqlite(p) => {
            let mut tx = p.begin().await.unwrap();
            outbox::enqueue_sqlite(&mut tx, &waiting).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
    let relay = OutboxRelay::new(db.clone(), bus.clone(), 10);
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.failed), (0, 1), "{outcome:?}");
    assert_eq!(outbox::backlog(&db).await.unwrap(), 1, "the row waits");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE message_id = 'waiting' AND sent_at IS NULL \
             AND last_error IS NOT NULL"
        )
        .await,
        1
    );

    // The consumer drains the queue; the relay's next tries get through.
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "bounds", 10).await.unwrap();
    for m in &accepted {
        let d = next(&mut stream).await;
        assert_eq!(d.message_id.as_deref(), Some(m.message_id.as_str()));
        d.ack().await.unwrap();
    }
    common::eventually(WAIT, "the waiting row sent", || async {
        let outcome = relay.relay_once().await.unwrap();
        (outcome.sent == 1).then_some(())
    })
    .await;
    assert_eq!(outbox::backlog(&db).await.unwrap(), 0);
    let d = next(&mut stream).await;
    assert_eq!(d.message_id.as_deref(), Some("waiting"));
    assert_eq!(d.body, waiting.body, "delivered whole");
    d.ack().await.unwrap();
    drop(stream);
    depth_becomes(&bus, INSTRUCTION_QUEUE, 0).await;
    bus.close().await;
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(an_expired_message_is_dead_lettered_with_its_reason);
async fn an_expired_message_is_dead_lettered_with_its_reason(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bounds = lowered(
        NOTIFIER_QUEUE,
        Bound {
            max_length: 100,
            max_age: Some(Duration::from_millis(500)),
        },
    );
    let bus = env.open_bus_with_bounds(bounds).await;
    bus.ensure_ready().await.unwrap();
    let event = case_event("unheard");
    assert!(bus.publish(std::slice::from_ref(&event)).await[0].is_ok());

    depth_becomes(&bus, DEAD_LETTER_QUEUE, 1).await;
    depth_becomes(&bus, NOTIFIER_QUEUE, 0).await;
    let mut dead = bus
        .consume(DEAD_LETTER_QUEUE, "bounds-dead", 1)
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.message_id.as_deref(), Some("unheard"));
    assert_eq!(d.body, event.body, "dead-lettered whole");
    assert_eq!(d.routing_key, event.routing_key);
    assert_eq!(d.headers["x-test"], "unheard", "its own headers kept");
    match backend {
        Backend::Embedded => {
            assert_eq!(d.headers[DEATH_REASON_HEADER], "expired", "{:?}", d.headers);
            assert_eq!(d.headers[DEATH_QUEUE_HEADER], NOTIFIER_QUEUE);
            assert_eq!(d.headers[DEATH_EXCHANGE_HEADER], EVENTS_EXCHANGE);
            assert!(d.headers.contains_key(DEATH_TIME_HEADER));
        }
        Backend::Servers => {
            assert_eq!(
                d.headers[BROKER_FIRST_DEATH_REASON], "expired",
                "{:?}",
                d.headers
            );
            assert_eq!(d.headers["x-first-death-queue"], NOTIFIER_QUEUE);
            assert_eq!(d.headers["x-first-death-exchange"], EVENTS_EXCHANGE);
        }
    }
    d.ack().await.unwrap();
    drop(dead);
    bus.close().await;
    env.cleanup().await;
}

/// At-least-once dead-lettering on the in-process bus: a message that
/// expires while the dead-letter queue is full waits in its own queue,
/// never delivered, and moves once there is room. (RabbitMQ does the same,
/// but retries every 3 minutes, `dead_letter_worker_publisher_confirm_timeout`:
/// too slow for a test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_waits_for_room_in_the_dead_letter_queue() {
    let env = TestEnv::on(Backend::Embedded).await;
    let bounds = lowered(
        NOTIFIER_QUEUE,
        Bound {
            max_length: 100,
            max_age: Some(Duration::from_millis(500)),
        },
    )
    .with(
        DEAD_LETTER_QUEUE,
        Bound {
            max_length: 1,
            max_age: None,
        },
    )
    .unwrap();
    let bus = env.open_bus_with_bounds(bounds).await;
    for id in ["first", "second"] {
        assert!(bus.publish(&[case_event(id)]).await[0].is_ok());
    }
    depth_becomes(&bus, DEAD_LETTER_QUEUE, 1).await;
    depth_becomes(&bus, NOTIFIER_QUEUE, 0).await;
    // Expired, waiting for room, and never delivered meanwhile.
    let mut notifier = bus.consume(NOTIFIER_QUEUE, "bounds", 10).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), notifier.next())
            .await
            .is_err(),
        "an expired message was delivered"
    );
    // A publish to the full dead-letter queue is refused too.
    let mut poison = dossier("poison");
    poison.exchange = guichet_kit::bus::DEAD_EXCHANGE.into();
    assert!(matches!(
        bus.publish(&[poison]).await.remove(0),
        Err(BusError::QueueFull {
            queue: DEAD_LETTER_QUEUE,
            max_length: 1
        })
    ));

    let taken = bus.take(DEAD_LETTER_QUEUE, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].message_id.as_deref(), Some("first"));
    taken[0].ack().await.unwrap();
    drop(taken);
    common::eventually(WAIT, "the second dead-lettered", || async {
        let taken = bus.take(DEAD_LETTER_QUEUE, 10).await.ok()?;
        let id = taken.first()?.message_id.clone();
        (id.as_deref() == Some("second")).then_some(())
    })
    .await;
    drop(notifier);
    bus.close().await;
    env.cleanup().await;
}

/// A broker whose queue was declared with other arguments (an older
/// version's, before the bounds) refuses the new declaration: the error
/// names the queue and what to do, and nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_otherwise_is_named_with_what_to_do() {
    let env = TestEnv::on(Backend::Servers).await;
    let bus = env.open_bus().await;
    bus.ensure_ready().await.unwrap();
    assert!(bus.publish(&[dossier("kept")]).await[0].is_ok());
    bus.close().await;

    let other = lowered(
        INSTRUCTION_QUEUE,
        Bound {
            max_length: FULL_AT,
            max_age: None,
        },
    );
    let refused = env
        .open_bus_with_bounds(other)
        .await
        .ensure_ready()
        .await
        .unwrap_err();
    let BusError::QueueArguments { queue, broker } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(queue, &INSTRUCTION_QUEUE);
    assert!(broker.contains("x-max-length"), "{broker}");
    let said = refused.to_string();
    assert!(
        said.contains("rabbitmqctl delete_queue") && said.contains("--if-empty"),
        "{said}"
    );

    // The queue is still there, with its message and its bound.
    let queue: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/api/queues/{}/{INSTRUCTION_QUEUE}",
            common::rabbitmq_api(),
            env.name
        ))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let args = &queue["arguments"];
    assert_eq!(args["x-max-length"], 100_000, "{args}");
    assert_eq!(args["x-overflow"], "reject-publish", "{args}");
    let bus = env.open_bus().await;
    depth_becomes(&bus, INSTRUCTION_QUEUE, 1).await;
    bus.close().await;
    env.cleanup().await;
}
