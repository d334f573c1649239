//! The bus contract, one suite run against both buses: RabbitMQ (a vhost of
//! its own per test) and the in-process bus (a file of its own per test).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, TestEnv};
use futures_util::StreamExt;
use guichet_kit::bus::{
    BusError, DEAD_LETTER_QUEUE, DEATH_REASON_HEADER, DOSSIERS_EXCHANGE, Delivery,
    INSTRUCTION_QUEUE, OutgoingMessage, SharedBus,
};

const LIMIT: u32 = 3;
const WAIT: Duration = Duration::from_secs(10);

async fn open(env: &TestEnv) -> SharedBus {
    env.open_bus().await
}

fn message(id: &str) -> OutgoingMessage {
    let mut headers = BTreeMap::new();
    headers.insert(
        "traceparent".to_string(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
    );
    OutgoingMessage {
        message_id: id.to_string(),
        exchange: DOSSIERS_EXCHANGE.to_string(),
        routing_key: "dossier.submitted.web".to_string(),
        headers,
        body: format!("body of {id}").into_bytes(),
    }
}

/// The next delivery, which must come within `WAIT`.
async fn next(stream: &mut guichet_kit::bus::DeliveryStream) -> guichet_kit::bus::Delivery {
    let next = tokio::time::timeout(WAIT, stream.next()).await;
    next.unwrap().unwrap().unwrap()
}

async fn depth_becomes(bus: &SharedBus, queue: &str, n: u32) {
    common::eventually(WAIT, &format!("{queue} holding {n}"), || async {
        (bus.queue_depth(queue).await.ok()? == n).then_some(())
    })
    .await;
}

on_both_backends!(a_message_is_delivered_whole_and_an_ack_removes_it);
async fn a_message_is_delivered_whole_and_an_ack_removes_it(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    let sent = message("m-1");
    assert!(bus.publish(std::slice::from_ref(&sent)).await[0].is_ok());
    depth_becomes(&bus, INSTRUCTION_QUEUE, 1).await;

    let mut stream = bus
        .consume(INSTRUCTION_QUEUE, "contract", 10)
        .await
        .unwrap();
    let d = next(&mut stream).await;
    assert_eq!(d.message_id.as_deref(), Some("m-1"));
    assert_eq!(d.routing_key, "dossier.submitted.web");
    assert_eq!(d.body, sent.body);
    assert_eq!(d.headers["traceparent"], sent.headers["traceparent"]);
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    d.ack().await.unwrap();
    drop(stream);
    depth_becomes(&bus, INSTRUCTION_QUEUE, 0).await;
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(an_unroutable_message_is_refused);
async fn an_unroutable_message_is_refused(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    let mut lost = message("m-2");
    lost.routing_key = "nobody.listens.here".into();
    let results = bus.publish(&[lost, message("m-3")]).await;
    assert!(
        matches!(results[0], Err(BusError::Unroutable(_))),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(a_message_given_back_comes_again_counted);
async fn a_message_given_back_comes_again_counted(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    assert!(bus.publish(&[message("m-4")]).await[0].is_ok());
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "contract", 1).await.unwrap();
    let first = next(&mut stream).await;
    first.retry_later().await.unwrap();
    let second = next(&mut stream).await;
    assert_eq!(second.message_id.as_deref(), Some("m-4"));
    assert!(second.redelivered);
    assert_eq!(second.delivery_count, 1);
    second.ack().await.unwrap();
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(past_the_delivery_limit_a_message_is_dead_lettered);
async fn past_the_delivery_limit_a_message_is_dead_lettered(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    assert!(bus.publish(&[message("m-5")]).await[0].is_ok());
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "contract", 1).await.unwrap();
    let mut deliveries = 0;
    while bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 0 {
        let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await
        else {
            continue;
        };
        deliveries += 1;
        assert!(deliveries <= LIMIT + 1, "delivered {deliveries} times");
        d.retry_later().await.unwrap();
    }
    assert!(
        deliveries >= LIMIT,
        "dead-lettered after {deliveries} deliveries"
    );
    drop(stream);
    let mut dead = bus
        .consume(DEAD_LETTER_QUEUE, "contract-dead", 1)
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.message_id.as_deref(), Some("m-5"));
    assert_eq!(d.body, message("m-5").body, "dead-lettered whole");
    if backend == Backend::Embedded {
        assert!(
            d.headers[DEATH_REASON_HEADER].contains("delivery limit"),
            "{:?}",
            d.headers
        );
    }
    d.ack().await.unwrap();
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(prefetch_bounds_what_a_consumer_holds);
async fn prefetch_bounds_what_a_consumer_holds(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    let batch: Vec<OutgoingMessage> = (0..5).map(|i| message(&format!("p-{i}"))).collect();
    assert!(bus.publish(&batch).await.iter().all(Result::is_ok));
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "contract", 2).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(next(&mut stream).await);
    }
    // Nothing more while two are unacknowledged.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .is_err()
    );
    held.remove(0).ack().await.unwrap();
    let third = next(&mut stream).await;
    assert_eq!(third.message_id.as_deref(), Some("p-2"), "in order");
    bus.close().await;
    env.cleanup().await;
}

/// The instruction queue's unacknowledged messages, as the broker's
/// management API counts them (it samples every few seconds).
async fn unacknowledged_becomes(env: &TestEnv, n: u64) {
    let http = reqwest::Client::new();
    common::eventually(
        Duration::from_secs(30),
        &format!("{n} unacknowledged on {INSTRUCTION_QUEUE}"),
        || async {
            let q = common::management_queue(&http, &env.name, INSTRUCTION_QUEUE).await?;
            (q["messages_unacknowledged"].as_u64() == Some(n)).then_some(())
        },
    )
    .await;
}

on_both_backends!(a_batch_acked_at_once_removes_those_messages_and_no_other);
async fn a_batch_acked_at_once_removes_those_messages_and_no_other(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    let sent: Vec<OutgoingMessage> = (0..300).map(|i| message(&format!("b-{i:03}"))).collect();
    assert!(bus.publish(&sent).await.iter().all(Result::is_ok));
    depth_becomes(&bus, INSTRUCTION_QUEUE, 300).await;
    let bus = {
        let mut stream = bus.consume(INSTRUCTION_QUEUE, "batch", 256).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..200 {
            held.push(next(&mut stream).await);
        }
        // The first 150 acked at once; the next 50 stay held.
        let results = Delivery::ack_all(&held[..150]).await;
        assert_eq!(results.len(), 150);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        match backend {
            // A new connection: what the old channel held comes back. An
            // ack has no answer, so the broker's own count says when the
            // 150 are taken (closing first could drop acks still unsent):
            // the 50 held and the last 100, sent once the acks freed room.
            Backend::Servers => {
                unacknowledged_becomes(&env, 150).await;
                drop(stream);
                bus.close().await;
                open(&env).await
            }
            Backend::Embedded => {
                drop(stream);
                drop(held);
                bus
            }
        }
    };
    depth_becomes(&bus, INSTRUCTION_QUEUE, 150).await;
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "after", 256).await.unwrap();
    let mut left = std::collections::BTreeSet::new();
    for _ in 0..150 {
        let d = next(&mut stream).await;
        left.insert(d.message_id.clone().unwrap());
        d.ack().await.unwrap();
    }
    let expected: std::collections::BTreeSet<String> =
        (150..300).map(|i| format!("b-{i:03}")).collect();
    assert_eq!(left, expected, "exactly the messages not acked are left");
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(what_a_vanished_consumer_held_is_delivered_again);
async fn what_a_vanished_consumer_held_is_delivered_again(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    assert!(bus.publish(&[message("m-6")]).await[0].is_ok());
    {
        let mut stream = bus
            .consume(INSTRUCTION_QUEUE, "vanishing", 1)
            .await
            .unwrap();
        let d = next(&mut stream).await;
        assert_eq!(d.message_id.as_deref(), Some("m-6"));
        // Dropped without ack: the consumer is gone.
    }
    let bus = match backend {
        // A new connection: the old channel's unacked message comes back.
        Backend::Servers => {
            bus.close().await;
            open(&env).await
        }
        Backend::Embedded => bus,
    };
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "second", 1).await.unwrap();
    let d = next(&mut stream).await;
    assert_eq!(d.message_id.as_deref(), Some("m-6"));
    d.ack().await.unwrap();
    bus.close().await;
    env.cleanup().await;
}

on_both_backends!(a_confirmed_message_survives_a_restart);
async fn a_confirmed_message_survives_a_restart(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let bus = open(&env).await;
    bus.ensure_ready().await.unwrap();
    assert!(bus.publish(&[message("m-7")]).await[0].is_ok());
    // Leased by a consumer, never acked, then the process "dies".
    let mut stream = bus.consume(INSTRUCTION_QUEUE, "doomed", 1).await.unwrap();
    let d = next(&mut stream).await;
    std::mem::forget(d); // no ack, no clean give-back
    drop(stream);
    bus.close().await;
    drop(bus);

    let reopened = open(&env).await;
    reopened.ensure_ready().await.unwrap();
    let mut stream = reopened
        .consume(INSTRUCTION_QUEUE, "after-restart", 1)
        .await
        .unwrap();
    let d = next(&mut stream).await;
    assert_eq!(d.message_id.as_deref(), Some("m-7"));
    d.ack().await.unwrap();
    reopened.close().await;
    env.cleanup().await;
}
