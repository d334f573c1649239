//! Each service on the broker as its own user (RabbitMQ only: the in-process
//! bus has one process and no users). The users come from
//! `infra/rabbitmq/users.sh`, run on the test's vhost as an operator runs it.
//! The broker refuses what a service's user may not publish, and a
//! `user_id` that is not the publisher's; instruction dead-letters a dossier
//! whose channel is not its publisher's.

use crate::common;

use std::time::Duration;

use common::{App, ONLINE, TestEnv, eventually, example};
use futures_util::StreamExt;
use guichet_kit::bus::{
    AmqpBus, Bus, BusUsers, Credentials, DEAD_LETTER_QUEUE, DEATH_PUBLISHER_HEADER,
    DEATH_REASON_HEADER, EVENTS_EXCHANGE, INSTRUCTION_QUEUE, NOTIFIER_QUEUE, OutgoingMessage,
};
use guichet_kit::metrics::DeadLetterLabels;

const WAIT: Duration = Duration::from_secs(20);
const SERVICES: [(&str, &str); 6] = [
    ("instruction", "INSTRUCTION"),
    ("intake-web", "INTAKE_WEB"),
    ("intake-ccc", "INTAKE_CCC"),
    ("intake-pan", "INTAKE_PAN"),
    ("intake-postal", "INTAKE_POSTAL"),
    ("notifier", "NOTIFIER"),
];

/// The services' users on one test's vhost, made by `users.sh`; user names
/// are the broker's, not the vhost's, so each test has names of its own,
/// deleted when it ends.
pub struct BrokerUsers {
    pub users: BusUsers,
    names: Vec<String>,
}

impl BrokerUsers {
    pub fn create(env: &TestEnv) -> Self {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/rabbitmq/users.sh");
        let mut command = std::process::Command::new("sh");
        command
            .arg(&script)
            .env("RABBITMQ_API", common::rabbitmq_api())
            .env("RABBITMQ_ADMIN", "guest:guest")
            .env("RABBITMQ_VHOST", &env.name);
        let mut users = BusUsers::default();
        let mut names = Vec::new();
        for (service, suffix) in SERVICES {
            let name = format!("{}-{service}", env.name);
            // Quotes and a backslash: the script must pass any password on.
            let password = format!("p\"w\\{}", uuid::Uuid::new_v4().simple());
            command
                .env(format!("GUICHET_AMQP_USER_{suffix}"), &name)
                .env(format!("GUICHET_AMQP_PASSWORD_{suffix}"), &password);
            users.set(
                service,
                Credentials {
                    user: name.clone(),
                    password,
                },
            );
            names.push(name);
        }
        let out = command.output().expect("run infra/rabbitmq/users.sh");
        assert!(
            out.status.success(),
            "users.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        BrokerUsers { users, names }
    }

    /// A bus logged in as `service`'s user, as the service opens it.
    pub fn bus(&self, env: &TestEnv, service: &str) -> AmqpBus {
        let own = self.users.credentials(service).expect("a user");
        AmqpBus::new(env.amqp_url.as_deref().expect("an AMQP test"), service, 3)
            .as_service(own, service == "instruction")
    }

    pub fn name(&self, service: &str) -> String {
        self.users.credentials(service).expect("a user").user
    }
}

impl Drop for BrokerUsers {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("curl")
                .args([
                    "-fsS",
                    "-o",
                    "/dev/null",
                    "-u",
                    "guest:guest",
                    "-X",
                    "DELETE",
                ])
                .arg(format!("{}/api/users/{name}", common::rabbitmq_api()))
                .status();
        }
    }
}

/// A valid dossier of `channel`, as its intake would publish it.
fn dossier_message(channel: guichet_dossier::Channel) -> (String, OutgoingMessage) {
    use guichet_dossier::filing::RawProvenance;
    use guichet_dossier::{Dossier, Filing, RawFiling, Reference};
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let mut raw: RawFiling = serde_json::from_value(example("renewal-employee.json")).unwrap();
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let provenance = match channel {
        guichet_dossier::Channel::Web => RawProvenance::Web { account_id: None },
        guichet_dossier::Channel::Postal => RawProvenance::Postal {
            station_id: Some("station-59-1".into()),
            envelope_id: Some(uuid::Uuid::new_v4().to_string()),
            postmark_date: Some(today.to_string()),
            reception_date: Some(today.to_string()),
        },
        other => panic!("no example for {other}"),
    };
    let filing = Filing::parse(&raw, &provenance, today).unwrap();
    let now = chrono::Utc::now();
    let reference = Reference::generate(channel, 2026, &mut rand::rng());
    let dossier = Dossier::new(reference.clone(), filing, now, now);
    (
        reference.to_string(),
        guichet_intake::ledger::dossier_message(&dossier),
    )
}

/// The whole error chain, where the broker's reply code shows.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    guichet_kit::error::error_chain(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_what_a_services_user_may_not_publish() {
    let env = TestEnv::new().await;
    let users = BrokerUsers::create(&env);
    // The topology, as instruction declares it with its own user.
    let instruction = users.bus(&env, "instruction");
    instruction
        .ensure_ready()
        .await
        .expect("instruction declares");

    let postal = users.bus(&env, "intake-postal");
    // Its own routing key, its own channel: taken.
    let (_, own) = dossier_message(guichet_dossier::Channel::Postal);
    assert_eq!(own.routing_key, "dossier.submitted.postal");
    let sent = postal.publish(&[own]).await;
    assert!(sent[0].is_ok(), "{:?}", sent[0]);

    // The web channel's routing key: refused by the topic permissions.
    let (_, web) = dossier_message(guichet_dossier::Channel::Web);
    let refused = postal.publish(&[web]).await;
    let error = refused[0].as_ref().expect_err("another channel's key");
    assert!(chain(error).contains("ACCESS_REFUSED"), "{}", chain(error));

    // An exchange it has no write on: refused.
    let event = OutgoingMessage::traced(EVENTS_EXCHANGE, "case.decided.web".into(), b"{}".to_vec());
    let refused = postal.publish(&[event]).await;
    let error = refused[0].as_ref().expect_err("no write on the events");
    assert!(chain(error).contains("ACCESS_REFUSED"), "{}", chain(error));

    // The web service's user claiming to be the postal one (`user_id`):
    // the broker closes the channel. Published by hand, since the bus
    // always stamps its own user.
    let web = users.users.credentials("intake-web").unwrap();
    let mut uri: lapin::uri::AMQPUri = env.amqp_url.as_deref().unwrap().parse().unwrap();
    uri.authority.userinfo.username = web.user;
    uri.authority.userinfo.password = web.password;
    let connection = lapin::Connection::connect_uri(uri, lapin::ConnectionProperties::default())
        .await
        .expect("the web user logs in");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let (_, forged) = dossier_message(guichet_dossier::Channel::Web);
    let published = channel
        .basic_publish(
            forged.exchange.as_str().into(),
            forged.routing_key.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &forged.body,
            lapin::BasicProperties::default()
                .with_message_id(forged.message_id.as_str().into())
                .with_user_id(users.name("intake-postal").as_str().into()),
        )
        .await;
    let outcome = match published {
        Err(e) => Err(e),
        Ok(confirm) => confirm.await.map(|_| ()),
    };
    let error = outcome.expect_err("a forged user_id");
    assert!(
        chain(&error).contains("PRECONDITION_FAILED"),
        "{}",
        chain(&error)
    );
    let _ = connection.close(200, "done".into()).await;

    // Only the postal service's own dossier reached instruction's queue.
    let admin = env.amqp_bus();
    assert_eq!(admin.queue_depth(INSTRUCTION_QUEUE).await.unwrap(), 1);

    postal.close().await;
    instruction.close().await;
    admin.close().await;
    drop(users);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruction_dead_letters_a_dossier_whose_channel_is_not_its_publishers() {
    let env = TestEnv::new().await;
    let users = BrokerUsers::create(&env);
    let mut config = env.config();
    config.bus_users = users.users.clone();
    let app = App::builder(&config).only(ONLINE).start().await;
    // The mesh's shared bus is the operator's (guest): it reads the
    // dead letters.
    let admin = app.mesh.bus.clone();

    // The postal user may publish on `dossier.submitted.postal`, but this
    // dossier says it was filed online.
    let postal = users.bus(&env, "intake-postal");
    let (web_reference, mut web) = dossier_message(guichet_dossier::Channel::Web);
    web.routing_key = "dossier.submitted.postal".into();
    let sent = postal.publish(&[web]).await;
    assert!(sent[0].is_ok(), "{:?}", sent[0]);

    // The operator's user (full rights, and a `user_id` of its own) is no
    // channel's publisher either.
    let (guest_reference, guest) = dossier_message(guichet_dossier::Channel::Web);
    assert!(admin.publish(&[guest]).await[0].is_ok());

    // A postal dossier without any `user_id`: the broker lets it through
    // (the property is optional), instruction does not.
    let (unnamed_reference, unnamed) = dossier_message(guichet_dossier::Channel::Postal);
    let own = users.users.credentials("intake-postal").unwrap();
    let mut uri: lapin::uri::AMQPUri = env.amqp_url.as_deref().unwrap().parse().unwrap();
    uri.authority.userinfo.username = own.user;
    uri.authority.userinfo.password = own.password;
    let connection = lapin::Connection::connect_uri(uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            unnamed.exchange.as_str().into(),
            unnamed.routing_key.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &unnamed.body,
            lapin::BasicProperties::default()
                .with_message_id(unnamed.message_id.as_str().into())
                .with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    let _ = connection.close(200, "done".into()).await;

    eventually(WAIT, "three dead letters", || {
        let admin = &admin;
        async move { (admin.queue_depth(DEAD_LETTER_QUEUE).await.ok()? == 3).then_some(()) }
    })
    .await;
    let mut letters = admin
        .consume(DEAD_LETTER_QUEUE, "test-reader", 3)
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let letter = tokio::time::timeout(WAIT, letters.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        reasons.push((
            letter.headers[DEATH_REASON_HEADER].clone(),
            letter.headers.get(DEATH_PUBLISHER_HEADER).cloned(),
        ));
    }
    reasons.sort();
    let postal_user = users.name("intake-postal");
    let mut expected = vec![
        (
            format!("wrong publisher: {postal_user} does not file web dossiers"),
            Some(postal_user.clone()),
        ),
        (
            "wrong publisher: guest does not file web dossiers".to_string(),
            Some("guest".to_string()),
        ),
        ("no publisher: the message has no user_id".to_string(), None),
    ];
    expected.sort();
    assert_eq!(reasons, expected);
    let counted = |reason: &'static str| {
        app.metrics
            .dead_letters
            .get_or_create(&DeadLetterLabels {
                queue: INSTRUCTION_QUEUE,
                reason,
            })
            .get()
    };
    assert_eq!(counted("wrong_publisher"), 2);
    assert_eq!(counted("no_publisher"), 1);

    // Never recorded: instruction knows none of them.
    let instruction = env.db("instruction").await;
    for reference in [&web_reference, &guest_reference, &unnamed_reference] {
        assert_eq!(app.dossier(reference).await.status(), 404, "{reference}");
        let sql = format!("SELECT count(*) FROM dossiers WHERE reference = '{reference}'");
        assert_eq!(common::count(&instruction, &sql).await, 0, "{reference}");
    }

    // And the web service, logged in as itself, still files.
    let reference = app.file_accepted(&example("renewal-employee.json")).await;
    eventually(WAIT, "the web dossier in instruction", || async {
        (app.dossier(&reference).await.status() == 200).then_some(())
    })
    .await;
    // Its case events go out under instruction's own user.
    eventually(WAIT, "a case event for the notifier", || {
        let admin = &admin;
        async move { (admin.queue_depth(NOTIFIER_QUEUE).await.ok()? > 0).then_some(()) }
    })
    .await;

    postal.close().await;
    common::stop(app, env).await;
    drop(users);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_channels_flow_with_a_broker_user_each() {
    let env = TestEnv::new().await;
    let users = BrokerUsers::create(&env);
    let mut config = env.config();
    config.bus_users = users.users.clone();
    let app = App::start(&config).await;
    crate::channels::four_channels_sort_by_legal_filing_date(&app).await;
    // Nothing was refused on the way.
    assert_eq!(
        app.mesh.bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap(),
        0
    );
    app.postal_bus.close().await;
    common::stop(app, env).await;
    drop(users);
}
