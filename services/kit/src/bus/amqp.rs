//! RabbitMQ through lapin. One connection per bus, re-established on demand
//! after the broker goes away; the topology is declared on every connect.
//! The URL may name several nodes of one cluster, comma-separated: each
//! connect tries them in turn from the one after the last used, so a service
//! whose node went away reconnects to another that is up.
//! Publishing is persistent and mandatory with publisher confirms: a message
//! counts as published only once the broker has confirmed it and did not
//! return it as unroutable.
//!
//! Every message carries the connection's user in `user_id`: the broker
//! refuses one whose `user_id` is not the user who published it, so a
//! consumer can trust it. A bus logged in as a service's own user
//! (`as_service`) declares the topology only if that service owns it; the
//! others have no right to, and find it declared.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPUri, SASLMechanism};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;

use super::{
    Acker, BROKER_DEATH_HEADER, Bounds, Bus, BusError, DEAD_EXCHANGE, Delivery, DeliveryStream,
    EXCHANGES, OutgoingMessage, PROTOBUF_CONTENT_TYPE, users::Credentials,
};

/// Longest wait for the broker's confirms of one batch before giving up on it.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for one node to take a connection. Without it a node that
/// accepts TCP but never answers (or drops the packets) would hold every
/// caller waiting on the link, and the next node would never be tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, once connected, to declare the topology and open the
/// publishing channel. Declaring a fresh vhost's quorum queues starts a
/// replicated log per queue, which takes seconds on a busy broker: this
/// bound is for a broker that stopped answering, not a slow one.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the broker to acknowledge closing a connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the answer to one method on an open connection (open a
/// channel, set the prefetch, subscribe, a passive declare, a get). lapin
/// 4.12 drops a method sent while the connection's I/O loop is exiting, and
/// its caller then waits for ever: seen as instruction's consumer never
/// subscribing again after the broker closed its connection. The same
/// bound covers a broker cut off without a reset (packets dropped), which
/// heartbeats alone notice only after minutes.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> BusError {
    move |source| BusError::Amqp { operation, source }
}

/// The broker's answer to `method`, or `NoAnswer` after `limit`.
async fn answer_within<T>(
    limit: Duration,
    operation: &'static str,
    method: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(limit, method).await {
        Ok(answered) => answered.map_err(amqp(operation)),
        Err(_) => Err(BusError::NoAnswer { operation }),
    }
}

/// A consumer's channel, closed when its stream is dropped. A consumer given
/// up on (it stalled, see `worker`) must not go on receiving messages that
/// nobody reads: they would stay unacknowledged until the connection closes.
/// Closing the channel hands them back to the queue at once.
struct ClosedOnDrop(Channel);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        let channel = self.0.clone();
        if channel.status().connected()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    channel.close(200, "consumer given up".into()),
                )
                .await;
            });
        }
    }
}

struct Link {
    /// Shared so that a channel is opened without holding the link's lock.
    connection: Arc<Connection>,
    publisher: Channel,
    /// Which link this is: a failure seen on one link must not reset the
    /// fresh one made since.
    generation: u64,
}

pub struct AmqpBus {
    /// The broker's nodes (one or more), with the credentials to log in
    /// with; why not, when the URL is not usable.
    uri: Result<Vec<AMQPUri>, String>,
    /// The node the next connect tries first.
    next_node: AtomicUsize,
    /// Who the broker knows this connection as, stamped on every message
    /// (`None` when the transport authenticates, e.g. TLS client certificates).
    user_id: Option<String>,
    /// Whether connecting declares the topology.
    declares_topology: bool,
    name: String,
    delivery_limit: u32,
    bounds: Bounds,
    /// Authorities trusted for the broker's certificate beside the
    /// system's (PEM), for amqps://.
    ca_pem: Option<String>,
    link: Mutex<Option<Link>>,
    generations: AtomicU64,
    /// `RPC_TIMEOUT`, shorter in tests.
    rpc_timeout: Duration,
}

impl AmqpBus {
    /// A bus for `url`; nothing is connected until first use. `name` shows in
    /// the broker's connection list.
    pub fn new(url: &str, name: &str, delivery_limit: u32) -> Self {
        let uri = parse_nodes(url);
        let user_id = uri
            .as_ref()
            .ok()
            .and_then(|nodes| nodes.first())
            .and_then(login_name);
        Self {
            uri,
            next_node: AtomicUsize::new(0),
            user_id,
            declares_topology: true,
            name: name.to_string(),
            delivery_limit,
            bounds: Bounds::default(),
            ca_pem: None,
            link: Mutex::new(None),
            generations: AtomicU64::new(0),
            rpc_timeout: RPC_TIMEOUT,
        }
    }

    /// The same bus, waiting `timeout` instead of `RPC_TIMEOUT` for the
    /// answer to a method (tests make a broker that stops answering).
    pub fn with_rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// The same bus, declaring its queues with `bounds` instead of the
    /// table's (tests lower them to fill a queue with a few messages).
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The same bus, trusting the authorities in `pem` (PEM certificates)
    /// for the broker's TLS certificate, beside the system's.
    pub fn with_ca(mut self, pem: String) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// The same broker and vhost, logged in as a service's own user.
    /// `owns_topology`: whether it declares the topology (the others have no
    /// permission to configure anything).
    pub fn as_service(mut self, credentials: Credentials, owns_topology: bool) -> Self {
        if let Ok(nodes) = &mut self.uri {
            for uri in nodes.iter_mut() {
                uri.authority.userinfo.username = credentials.user.clone();
                uri.authority.userinfo.password = credentials.password.clone();
            }
            self.user_id = nodes.first().and_then(login_name);
        }
        self.declares_topology = owns_topology;
        self
    }

    /// A connection to the first node that takes one, starting after the
    /// node used last; the last node's error when none does.
    async fn connect(&self) -> Result<Connection, BusError> {
        let nodes = self.uri.clone().map_err(BusError::Unavailable)?;
        let first = self.next_node.fetch_add(1, Ordering::Relaxed);
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.name.clone()));
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let mut failure = None;
        for i in 0..nodes.len() {
            let uri = nodes[(first + i) % nodes.len()].clone();
            let host = format!("{}:{}", uri.authority.host, uri.authority.port);
            let runtime = lapin::runtime::default_runtime().map_err(BusError::Connect)?;
            let connecting =
                Connection::connect_uri_with_config(uri, props.clone(), tls.clone(), runtime);
            let error = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(e)) => BusError::Connect(e),
                Err(_) => BusError::Unavailable(format!(
                    "broker node {host} did not take the connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            };
            if nodes.len() > 1 {
                tracing::warn!(bus = %self.name, node = %host, error = %error, "broker node unreachable, trying the next");
            }
            failure = Some(error);
        }
        Err(failure
            .unwrap_or_else(|| BusError::Unavailable("GUICHET_AMQP_URL names no broker".into())))
    }

    async fn open(&self) -> Result<Link, BusError> {
        let connection = self.connect().await?;
        let publisher = match tokio::time::timeout(SETUP_TIMEOUT, self.set_up(&connection)).await {
            Ok(Ok(publisher)) => publisher,
            Ok(Err(e)) => {
                close_quietly(&connection, "set-up failed").await;
                return Err(e);
            }
            Err(_) => {
                close_quietly(&connection, "set-up timed out").await;
                return Err(BusError::Unavailable(format!(
                    "the broker did not finish declaring the topology within {}s",
                    SETUP_TIMEOUT.as_secs()
                )));
            }
        };
        tracing::info!(bus = %self.name, "connected to the broker");
        Ok(Link {
            connection: Arc::new(connection),
            publisher,
            generation: self.generations.fetch_add(1, Ordering::SeqCst) + 1,
        })
    }

    /// Declares the topology if this bus owns it, and opens the publishing
    /// channel in confirm mode.
    async fn set_up(&self, connection: &Connection) -> Result<Channel, BusError> {
        if self.declares_topology {
            let setup = connection
                .create_channel()
                .await
                .map_err(amqp("create channel"))?;
            declare_topology(&setup, self.delivery_limit, &self.bounds).await?;
            let _ = setup.close(200, "topology declared".into()).await;
        }
        let publisher = connection
            .create_channel()
            .await
            .map_err(amqp("create channel"))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("confirm select"))?;
        Ok(publisher)
    }

    /// The publishing channel and its link's generation, connecting first
    /// when needed.
    async fn publisher(&self) -> Result<(Channel, u64), BusError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && l.connection.status().connected()
            && l.publisher.status().connected()
        {
            return Ok((l.publisher.clone(), l.generation));
        }
        if let Some(old) = link.take() {
            close_quietly(&old.connection, "reconnecting").await;
        }
        let fresh = self.open().await?;
        let current = (fresh.publisher.clone(), fresh.generation);
        *link = Some(fresh);
        Ok(current)
    }

    /// A new channel on the current link, connecting first when needed, and
    /// the link's generation.
    async fn channel(&self) -> Result<(Channel, u64), BusError> {
        self.publisher().await?;
        let (connection, generation) = match self.link.lock().await.as_ref() {
            Some(l) => (l.connection.clone(), l.generation),
            None => return Err(BusError::Unavailable("connection lost".into())),
        };
        // Not under the lock: publishing goes on while the broker answers.
        let opened = self
            .answer("create channel", connection.create_channel())
            .await;
        self.reset_if_unanswered(&opened, generation).await;
        opened.map(|channel| (channel, generation))
    }

    /// The broker's answer to `method`, or `NoAnswer` after the RPC timeout.
    async fn answer<T>(
        &self,
        operation: &'static str,
        method: impl std::future::Future<Output = Result<T, lapin::Error>>,
    ) -> Result<T, BusError> {
        answer_within(self.rpc_timeout, operation, method).await
    }

    /// A link that left a method unanswered is taken for broken.
    async fn reset_if_unanswered<T>(&self, result: &Result<T, BusError>, generation: u64) {
        if let Err(BusError::NoAnswer { operation }) = result {
            tracing::warn!(bus = %self.name, operation, "the broker did not answer, reconnecting");
            self.reset(generation).await;
        }
    }

    /// Drops link `generation` so the next operation reconnects; a newer
    /// link is left alone.
    async fn reset(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|l| l.generation == generation)
            && let Some(old) = link.take()
        {
            close_quietly(&old.connection, "reset after error").await;
        }
    }

    pub async fn is_connected(&self) -> bool {
        let link = self.link.lock().await;
        link.as_ref()
            .is_some_and(|l| l.connection.status().connected())
    }
}

#[async_trait::async_trait]
impl Bus for AmqpBus {
    async fn ensure_ready(&self) -> Result<(), BusError> {
        self.publisher().await.map(|_| ())
    }

    /// Publishes every message and waits for every confirm; a returned
    /// (unroutable) message is a failure even though the broker acked it.
    async fn publish(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), BusError>> {
        let (channel, generation) = match self.publisher().await {
            Ok(c) => c,
            Err(e) => {
                let reason = e.to_string();
                return messages
                    .iter()
                    .map(|_| Err(BusError::Unavailable(reason.clone())))
                    .collect();
            }
        };
        // One deadline for the whole batch, sends and confirms alike: a
        // broker under a resource alarm blocks publishes indefinitely.
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let sent = tokio::time::timeout_at(
                deadline,
                channel.basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.body,
                    properties(m, self.user_id.as_deref()),
                ),
            )
            .await;
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(messages.len());
        let mut broken = false;
        for sent in pending {
            let result = match sent {
                Err(_) => Err(BusError::ConfirmTimeout),
                Ok(Err(e)) => Err(amqp("publish")(e)),
                Ok(Ok(confirm)) => match tokio::time::timeout_at(deadline, confirm).await {
                    Err(_) => Err(BusError::ConfirmTimeout),
                    Ok(Err(e)) => Err(amqp("confirm")(e)),
                    Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                        Err(BusError::Unroutable(returned.reply_text.to_string()))
                    }
                    Ok(Ok(Confirmation::Nack(_))) => Err(BusError::Nacked),
                    Ok(Ok(Confirmation::NotRequested)) => Ok(()),
                },
            };
            broken |= matches!(
                result,
                Err(BusError::Amqp { .. } | BusError::ConfirmTimeout)
            );
            results.push(result);
        }
        if broken {
            self.reset(generation).await;
        }
        results
    }

    /// A consumer on its own channel, with manual acks.
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        prefetch: u16,
    ) -> Result<DeliveryStream, BusError> {
        let (channel, generation) = self.channel().await?;
        let subscribed = async {
            self.answer(
                "qos",
                channel.basic_qos(prefetch, BasicQosOptions::default()),
            )
            .await?;
            self.answer(
                "consume",
                channel.basic_consume(
                    queue.into(),
                    consumer_tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await
        }
        .await;
        self.reset_if_unanswered(&subscribed, generation).await;
        let consumer = subscribed?;
        // The stream owns the channel so it lives as long as the consumer,
        // and closes it when dropped.
        let channel = ClosedOnDrop(channel);
        Ok(consumer
            .map(move |d| {
                let _keep = &channel;
                d.map(|d| delivery(d, None)).map_err(amqp("receive"))
            })
            .boxed())
    }

    fn bounds(&self) -> Bounds {
        self.bounds.clone()
    }

    /// Messages ready in `queue` (a passive declare).
    async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        let (channel, generation) = self.channel().await?;
        let declared = self
            .answer(
                "passive declare",
                channel.queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await;
        self.reset_if_unanswered(&declared, generation).await;
        let q = declared?;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "done".into())).await;
        Ok(q.message_count())
    }

    /// Gets messages one by one on a channel of their own, which they keep
    /// open until each is settled or dropped.
    async fn take(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let (channel, generation) = self.channel().await?;
        let mut taken = Vec::new();
        while taken.len() < max {
            let got = self
                .answer(
                    "get",
                    channel.basic_get(queue.into(), BasicGetOptions::default()),
                )
                .await;
            self.reset_if_unanswered(&got, generation).await;
            let got = got?;
            let Some(message) = got else { break };
            taken.push(delivery(message.delivery, Some(channel.clone())));
        }
        Ok(taken)
    }

    async fn close(&self) {
        if let Some(old) = self.link.lock().await.take() {
            close_quietly(&old.connection, "shutting down").await;
        }
    }
}

/// Closes a connection politely, but does not wait on a broker that does not
/// answer: callers hold the link lock meanwhile.
async fn close_quietly(connection: &Connection, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await;
}

/// The user a URI logs in as by name (PLAIN and AMQPLAIN); `None` when the
/// transport or nobody authenticates and the broker's name for the
/// connection is not known here.
/// Whether `url` is plain `amqp://` to a broker that is not on this
/// machine: credentials and dossiers would cross a network in clear. An
/// unreadable URL is not judged here (connecting says what is wrong).
pub fn plaintext_to_another_host(url: &str) -> bool {
    let Ok(nodes) = parse_nodes(url) else {
        return false;
    };
    nodes.iter().any(|uri| {
        let host = uri
            .authority
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        uri.scheme == lapin::uri::AMQPScheme::AMQP
            && !matches!(host, "localhost" | "127.0.0.1" | "::1")
    })
}

/// The nodes of `url`: one AMQP URL, or several separated by commas (the
/// nodes of one cluster, each with its user and vhost).
fn parse_nodes(url: &str) -> Result<Vec<AMQPUri>, String> {
    let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            // The parser's message may quote the URL, password and all: not kept.
            node.parse::<AMQPUri>().map_err(|_| {
                let which = if nodes.len() > 1 {
                    format!(" (node {} of {})", i + 1, nodes.len())
                } else {
                    String::new()
                };
                format!(
                    "GUICHET_AMQP_URL{which} is not an AMQP URL \
                     (amqp://user:password@host:port/vhost, several separated by commas)"
                )
            })
        })
        .collect()
}

fn login_name(uri: &AMQPUri) -> Option<String> {
    match uri.query.auth_mechanism.unwrap_or_default() {
        SASLMechanism::Plain | SASLMechanism::AMQPlain | SASLMechanism::RabbitCrDemo => {
            Some(uri.authority.userinfo.username.clone())
        }
        SASLMechanism::External | SASLMechanism::Anonymous => None,
    }
}

fn properties(m: &OutgoingMessage, user_id: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    let properties = BasicProperties::default()
        .with_message_id(m.message_id.as_str().into())
        .with_content_type(PROTOBUF_CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
        .with_headers(headers);
    match user_id {
        Some(user) => properties.with_user_id(user.into()),
        None => properties,
    }
}

/// Declares every exchange and queue of the topology table. Idempotent;
/// every service declares it all, so a publisher never finds its route missing.
///
/// Every queue is bounded with `reject-publish`: a publish to a full queue is
/// nacked (the outbox keeps the row and tries again), where the default
/// (`drop-head`) would silently drop the oldest message. A queue that
/// dead-letters does it at least once: a message leaves it only once the
/// dead-letter queue has taken it (which is why that queue, too, refuses
/// rather than drops).
pub async fn declare_topology(
    channel: &Channel,
    delivery_limit: u32,
    bounds: &Bounds,
) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for exchange in EXCHANGES {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(amqp("declare exchange"))?;
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (queue, bound) in bounds.iter() {
        let args = queue_args(queue.dead_letters, bound, delivery_limit);
        channel
            .queue_declare(queue.name.into(), durable, args)
            .await
            .map_err(|e| match precondition_failed(&e) {
                Some(broker) => BusError::QueueArguments {
                    queue: queue.name,
                    broker,
                },
                None => amqp("declare queue")(e),
            })?;
        for (exchange, pattern) in queue.bindings {
            channel
                .queue_bind(
                    queue.name.into(),
                    (*exchange).into(),
                    (*pattern).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(amqp("bind queue"))?;
        }
    }
    Ok(())
}

/// A quorum queue's arguments: its bound, and its dead-lettering if it has
/// any.
fn queue_args(dead_letters: bool, bound: super::Bound, delivery_limit: u32) -> FieldTable {
    let mut args = quorum_args();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(bound.max_length)),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    if dead_letters {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(delivery_limit.min(i32::MAX as u32) as i32),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_EXCHANGE.into()),
        );
        // At-least-once dead-lettering needs reject-publish, set above.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
    }
    if let Some(age) = bound.max_age {
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
        );
    }
    args
}

/// The broker's words when it refused a declaration for arguments that differ
/// from the queue's (PRECONDITION_FAILED, "inequivalent arg ...").
fn precondition_failed(e: &lapin::Error) -> Option<String> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                lapin::protocol::AMQPErrorKind::Soft(
                    lapin::protocol::AMQPSoftError::PRECONDITIONFAILED
                )
            ) =>
        {
            Some(amqp.get_message().to_string())
        }
        _ => None,
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Settles one AMQP delivery. A delivery taken outside a consumer (`take`)
/// also keeps its channel open: closing it would give the message back.
pub(super) struct AmqpAcker {
    acker: lapin::Acker,
    taken_on: Option<Channel>,
}

fn delivery(d: lapin::message::Delivery, channel: Option<Channel>) -> Delivery {
    let mut headers = BTreeMap::new();
    let mut delivery_count = 0;
    if let Some(table) = d.properties.headers() {
        for (k, v) in table {
            match v {
                // The broker's dead-lettering history, kept readable.
                AMQPValue::FieldArray(_) if k.as_str() == BROKER_DEATH_HEADER => {
                    headers.insert(k.to_string(), json(v).to_string());
                }
                AMQPValue::LongString(s) => {
                    headers.insert(
                        k.to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    );
                }
                AMQPValue::ShortString(s) => {
                    headers.insert(k.to_string(), s.to_string());
                }
                // Quorum queues count earlier deliveries in this header.
                AMQPValue::LongLongInt(n) if k.as_str() == "x-delivery-count" => {
                    delivery_count = u32::try_from(*n).unwrap_or(u32::MAX);
                }
                AMQPValue::LongInt(n) if k.as_str() == "x-delivery-count" => {
                    delivery_count = u32::try_from(*n).unwrap_or(u32::MAX);
                }
                _ => {}
            }
        }
    }
    Delivery {
        message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
        exchange: d.exchange.to_string(),
        routing_key: d.routing_key.to_string(),
        user_id: d.properties.user_id().as_ref().map(|s| s.to_string()),
        headers,
        redelivered: d.redelivered,
        delivery_count,
        body: d.data,
        acker: Acker::Amqp(AmqpAcker {
            acker: d.acker,
            taken_on: channel,
        }),
    }
}

/// An AMQP header value as plain JSON: text, numbers, times (RFC 3339),
/// arrays and tables.
fn json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Value::from(s.to_string()),
        AMQPValue::Boolean(b) => Value::from(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(t) => i64::try_from(*t)
            .ok()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .unwrap_or(Value::Null),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| (k.to_string(), json(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// An ack or a nack waits `RPC_TIMEOUT` at most. lapin resolves it once
/// the frame is written, but a command queued as the connection's I/O loop
/// exits is never written nor failed, and its caller waited for ever: here a
/// consumer's batch in hand, and the consumer behind it, which subscribes
/// again only once its batches have ended (seen twice in 11 runs of the
/// fault tests together: a subscription ended, its batches never did).
/// Past the bound the delivery is
/// taken for unsettled: the broker gives it back, and the inbox absorbs it.
pub(super) async fn ack(acker: &AmqpAcker) -> Result<(), BusError> {
    answer_within(
        RPC_TIMEOUT,
        "ack",
        acker.acker.ack(BasicAckOptions::default()),
    )
    .await?;
    settled(acker).await
}

pub(super) async fn retry_later(acker: &AmqpAcker) -> Result<(), BusError> {
    answer_within(
        RPC_TIMEOUT,
        "nack",
        acker.acker.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        }),
    )
    .await?;
    settled(acker).await
}

/// An ack has no answer in AMQP: it is sent, not confirmed, and a tool that
/// exits right after could lose it with its connection (seen: `guichet dlq
/// drop` said "dropped" and the message was still there). For a delivery
/// taken outside a consumer, one synchronous method on the same channel
/// (the broker handles a channel's methods in order) proves the broker has
/// processed the ack. Consumers do not need it: a lost ack only means a
/// redelivery, which the inbox absorbs.
async fn settled(acker: &AmqpAcker) -> Result<(), BusError> {
    if let Some(channel) = &acker.taken_on {
        answer_within(
            RPC_TIMEOUT,
            "settle",
            channel.basic_qos(1, BasicQosOptions::default()),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn plain_amqp_is_for_this_machine_only() {
        let table = [
            ("amqp://guest:guest@127.0.0.1:5672/%2f", false),
            ("amqp://guest:guest@localhost/%2f", false),
            ("amqp://u:p@[::1]:5672/v", false),
            ("amqp://u:p@rabbitmq:5672/%2f", true),
            ("amqp://u:p@10.0.0.7/guichet", true),
            ("amqps://u:p@rabbitmq.example.org:5671/%2f", false),
            ("not a url", false),
            // A cluster: refused when any node would be reached in clear.
            (
                "amqp://u:p@127.0.0.1:5672/v,amqp://u:p@127.0.0.1:5673/v",
                false,
            ),
            ("amqps://u:p@r1:5671/v, amqp://u:p@r2:5672/v", true),
            ("amqps://u:p@r1:5671/v,amqps://u:p@r2:5671/v", false),
        ];
        for (url, plaintext) in table {
            assert_eq!(plaintext_to_another_host(url), plaintext, "{url}");
        }
    }

    #[test]
    fn a_cluster_is_its_nodes_in_order_and_a_bad_node_is_named_without_its_password() {
        let nodes =
            parse_nodes("amqp://u:p@n1:5672/g, amqp://u:p@n2:5673/g,amqp://u:p@n3/g").unwrap();
        let hosts: Vec<(String, u16)> = nodes
            .iter()
            .map(|n| (n.authority.host.clone(), n.authority.port))
            .collect();
        assert_eq!(
            hosts,
            [
                ("n1".to_string(), 5672),
                ("n2".to_string(), 5673),
                ("n3".to_string(), 5672)
            ]
        );
        let bad = parse_nodes("amqp://u:p@n1/g,http://u:s3cret@n2/g").unwrap_err();
        assert!(bad.contains("node 2 of 2"), "{bad}");
        assert!(!bad.contains("s3cret"), "{bad}");
    }

    #[tokio::test]
    async fn connecting_skips_a_node_that_is_down_and_says_why_when_all_are() {
        // Nothing listens on these ports: both refused, the last error kept.
        let dead = |port: u16| format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let bus = AmqpBus::new(&format!("{},{}", dead(1), dead(2)), "test", 3);
        assert!(matches!(bus.connect().await, Err(BusError::Connect(_))));
        // Each connect starts one node further.
        assert_eq!(bus.next_node.load(Ordering::Relaxed), 1);
    }
}
