//! Serving and calling gRPC the same way everywhere: listeners bound first,
//! standard health and reflection, a span per call linked to the caller's
//! trace, and trace context injected into every outgoing call.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument as _;

/// A client channel that makes a client span for every call, child of the
/// current span, and sends its W3C trace context in the call's metadata, so
/// the server's span continues the caller's trace.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    inner: Channel,
    /// For a balanced channel: told when a call could not reach an
    /// instance, so the instances are tried again at once.
    recheck: Option<Arc<tokio::sync::Notify>>,
}

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_string();
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let span = tracing::info_span!(
            "grpc client",
            otel.name = %path,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        for (name, value) in crate::telemetry::inject(&span) {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                request.headers_mut().insert(name, value);
            }
        }
        let call = self.inner.call(request);
        let recheck = self.recheck.clone();
        Box::pin(
            async move {
                let response = call.await;
                if response.is_err()
                    && let Some(recheck) = recheck
                {
                    recheck.notify_one();
                }
                if let Ok(r) = &response
                    && let Some(code) = r.headers().get("grpc-status")
                {
                    // Present here only for answers without a body (errors).
                    tracing::Span::current()
                        .record("rpc.grpc.status_code", code.to_str().unwrap_or(""));
                }
                response
            }
            .instrument(span),
        )
    }
}

/// How often a balanced channel looks its instances up again (a `dns:///`
/// name's addresses, a list's names) and tries each: calls follow the
/// instances as they come and go, within this much.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// How long trying an instance's port may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A `GUICHET_*_URL` that names no target a channel can be made to.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Url(#[from] tonic::transport::Error),
    #[error("{target}: {why}")]
    Unusable { target: String, why: &'static str },
}

/// Looks instances up: every address they have now.
pub type Resolve = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

/// The system's resolver on `names` (`host:port` each; in Kubernetes, the
/// cluster's DNS, where a headless Service's name has one address per
/// ready pod).
fn system_resolver(names: Vec<String>) -> Resolve {
    Arc::new(move || {
        let names = names.clone();
        Box::pin(async move {
            let mut all = Vec::new();
            for name in names {
                all.extend(tokio::net::lookup_host(name).await?);
            }
            Ok(all)
        })
    })
}

/// How long a connection may stay silent before it is asked for a sign of
/// life (an HTTP/2 ping), and how long the answer may take. A peer that
/// took the connection and fell silent (a host gone without a reset, a
/// network dropping packets, a process stopped) is then found in at most
/// 15 s: the calls on it fail and the next call connects anew. Without
/// this they waited for ever, and the calls that carry no deadline of
/// their own held their caller. 10 s is the least gRPC asks clients to use.
/// Servers ping their clients the same way: a client gone silent would
/// otherwise keep its connection, and what the server holds for it, for
/// good (an idle connection is never written to, so TCP never finds out).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
pub const KEEPALIVE_ANSWER: Duration = Duration::from_secs(5);

fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(url.trim().to_string()).map(|e| {
        e.connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_EVERY)
            .keep_alive_timeout(KEEPALIVE_ANSWER)
            // Idle connections too: a call should not be the first to find
            // its connection dead.
            .keep_alive_while_idle(true)
    })
}

/// A lazy client channel to `url`: it connects on first use and reconnects
/// by itself, so a gateway can start before its services.
/// - `http://host:port`: one HTTP/2 connection, so one instance.
/// - several such URLs, separated by commas, or `dns:///host:port` (gRPC's
///   own naming: every address the name has): calls are spread over the
///   instances that accept connections, looked up and tried again every
///   `RESOLVE_EVERY`. `dns:///` is how a gateway reaches every pod behind a
///   headless Service.
pub fn channel(url: &str) -> Result<TracedChannel, TargetError> {
    let url = url.trim();
    let names = if let Some(rest) = url.strip_prefix("dns:") {
        vec![dns_name(url, rest)?]
    } else if url.contains(',') {
        url.split(',')
            .map(|one| host_and_port(one.trim()))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        return Ok(TracedChannel {
            inner: endpoint(url)?.connect_lazy(),
            recheck: None,
        });
    };
    Ok(resolving(
        url.to_string(),
        RESOLVE_EVERY,
        system_resolver(names),
    ))
}

/// The `host:port` of one URL of a list (`http://host:port`).
fn host_and_port(url: &str) -> Result<String, TargetError> {
    let uri = endpoint(url)?.uri().clone();
    let refused = |why| TargetError::Unusable {
        target: url.to_string(),
        why,
    };
    if uri.scheme_str() != Some("http") {
        return Err(refused("a URL of a list is http://host:port"));
    }
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
        _ => Err(refused("a URL of a list names its port: http://host:port")),
    }
}

/// The `host:port` of a `dns:` target (`dns:///host:port` or `dns:host:port`).
fn dns_name(target: &str, rest: &str) -> Result<String, TargetError> {
    let refused = |why| TargetError::Unusable {
        target: target.to_string(),
        why,
    };
    let name = match rest.strip_prefix("//") {
        Some(after) => after
            .strip_prefix('/')
            .ok_or_else(|| refused("a DNS server of its own is not supported: dns:///host:port"))?,
        None => rest,
    };
    match name.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(name.to_string())
        }
        _ => Err(refused("names a host and its port: dns:///host:port")),
    }
}

/// A channel balanced over the instances `resolve` finds that accept a
/// connection, found and tried again every `every` until the channel is
/// dropped, and at once when a call could not reach its instance. tonic's
/// balancer sends calls to an instance it was given even once that instance
/// stops answering (each such call fails), so the ones that refuse
/// connections are taken out here, and put back when they answer. When none answers, all are kept, so that calls fail at once
/// rather than wait. A failed or empty lookup keeps the instances of the
/// last one: a DNS hiccup does not cut a service off from those still up.
pub fn resolving(what: String, every: Duration, resolve: Resolve) -> TracedChannel {
    let (inner, changes) = Channel::balance_channel::<SocketAddr>(16);
    let recheck = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(follow(what, every, resolve, changes, recheck.clone()));
    TracedChannel {
        inner,
        recheck: Some(recheck),
    }
}

/// The least time between two rounds, however often calls fail: a burst of
/// failed calls makes one more round, not one each.
const RECHECK_AT_MOST_EVERY: Duration = Duration::from_millis(200);

async fn follow(
    what: String,
    every: Duration,
    resolve: Resolve,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    recheck: Arc<tokio::sync::Notify>,
) {
    let mut found = BTreeSet::new();
    let mut given = BTreeSet::new();
    loop {
        match resolve().await {
            Ok(now) if !now.is_empty() => found = now.into_iter().collect(),
            Ok(_) => tracing::warn!(
                target_name = %what,
                "no instance found: calls keep going to those found last"
            ),
            Err(e) => tracing::warn!(
                target_name = %what,
                error = %e,
                "cannot look the instances up: calls keep going to those found last"
            ),
        }
        let tries = found.iter().map(|addr| async move {
            let answered = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(*addr)).await;
            matches!(answered, Ok(Ok(_))).then_some(*addr)
        });
        let up: BTreeSet<SocketAddr> = futures_util::future::join_all(tries)
            .await
            .into_iter()
            .flatten()
            .collect();
        let wanted = if up.is_empty() { found.clone() } else { up };
        let gone: Vec<_> = given.difference(&wanted).copied().collect();
        let new: Vec<_> = wanted.difference(&given).copied().collect();
        for addr in &gone {
            if changes.send(Change::Remove(*addr)).await.is_err() {
                return;
            }
        }
        for addr in &new {
            let Ok(to) = endpoint(&url_of(*addr)) else {
                continue;
            };
            if changes.send(Change::Insert(*addr, to)).await.is_err() {
                return;
            }
        }
        if !gone.is_empty() || !new.is_empty() {
            tracing::info!(
                target_name = %what,
                instances = wanted.len(),
                found = found.len(),
                "calls go to the instances that answer"
            );
        }
        given = wanted;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = async {
                tokio::time::sleep(RECHECK_AT_MOST_EVERY.min(every)).await;
                recheck.notified().await
            } => {}
            _ = changes.closed() => return,
        }
    }
}

/// The URL of a gRPC server listening on `addr`.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Binds a listener now, so the real port (0 in tests) is known before serving.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The gRPC reflection service for Guichet's protos.
pub fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(guichet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid")
}

/// The same, in the older `v1alpha` form that many tools still ask for
/// (grpcurl, Python's grpcio-reflection).
pub fn reflection_v1alpha() -> tonic_reflection::server::v1alpha::ServerReflectionServer<
    impl tonic_reflection::server::v1alpha::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(guichet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled descriptor set is valid")
}

/// Reflection (v1 and v1alpha) that advertises `services` alone (full
/// names) and the reflection services themselves: for a front such as the
/// gateway, which passes some of the protos' services on and not others,
/// so a client discovers only what it can call.
pub fn reflection_listing(
    services: &[&str],
) -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection + use<>,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection + use<>,
    >,
) {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(guichet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for name in services.iter().chain(&REFLECTION_SERVICES) {
            b = b.with_service_name(*name);
        }
        b
    };
    (
        builder()
            .build_v1()
            .expect("the compiled descriptor set is valid"),
        builder()
            .build_v1alpha()
            .expect("the compiled descriptor set is valid"),
    )
}

/// The reflection services, both versions, as `reflection_listing` lists them.
pub const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Serves `routes` (plus health and reflection) on `listener` until
/// `shutdown`, one span per call linked to the caller's trace, with at most
/// `capacity`'s calls in flight.
pub async fn serve(
    listener: TcpListener,
    routes: tonic::service::Routes,
    max_message_bytes: usize,
    capacity: crate::capacity::CapacityLayer,
    shutdown: crate::shutdown::Shutdown,
) -> Result<(), tonic::transport::Error> {
    let trace = tower_http::trace::TraceLayer::new_for_grpc()
        .make_span_with(crate::telemetry::server_span::<tonic::body::Body>)
        .on_failure(log_failure);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_EVERY))
        .http2_keepalive_timeout(Some(KEEPALIVE_ANSWER))
        .layer(trace)
        // Refused before the request is read, decoded or checked: shedding
        // must be cheap (the call's span stays, so a refusal is traced).
        .layer(capacity)
        .layer(crate::grpc_check::TextCheckLayer::new(max_message_bytes))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await
}

/// The connections `listener` accepts, with Nagle's algorithm off. Tonic's
/// own `tcp_nodelay` applies only to listeners it binds itself; without it,
/// a call on a quiet connection waited for the peer's delayed ACK before
/// the rest of its answer went out (tens of milliseconds, BENCHMARKS.md).
pub fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A health service that reports `service_name` as serving, and the handle
/// that can say otherwise.
pub async fn health(
    service_name: &'static str,
) -> (
    crate::service::Health,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(service_name, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    (
        crate::service::Health::new(reporter, vec![service_name]),
        service,
    )
}

/// Serves `routes`, with the standard health (reporting `service_name` as
/// serving) and reflection services, as the task `grpc` of a service. Every
/// request's texts are checked first (`grpc_check`); `max_message_bytes` is
/// the most the service decodes. Returns the service's health, for its
/// supervisor to turn off.
pub async fn spawn_server(
    tasks: &mut crate::service::Tasks,
    listener: TcpListener,
    routes: tonic::service::Routes,
    service_name: &'static str,
    limits: Limits,
    shutdown: crate::shutdown::Shutdown,
) -> crate::service::Health {
    let (health, health_service) = health(service_name).await;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection())
        .add_service(reflection_v1alpha());
    tasks.spawn("grpc", async move {
        if let Err(e) = serve(
            listener,
            routes,
            limits.max_message_bytes,
            limits.capacity,
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, service = service_name, "gRPC server stopped");
        }
    });
    health
}

/// What a gRPC server takes at most: the size of one request, and the
/// calls in flight.
pub struct Limits {
    pub max_message_bytes: usize,
    pub capacity: crate::capacity::CapacityLayer,
}

/// A refusal (not found, invalid argument, wrong state) is the service doing
/// its job, not a failure worth an error line; a bug or an outage is.
fn log_failure(
    class: tower_http::classify::GrpcFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::GrpcFailureClass;
    match class {
        // UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS
        GrpcFailureClass::Code(code) if matches!(code.get(), 2 | 13 | 14 | 15) => {
            tracing::error!(code = code.get(), ?latency, "grpc call failed")
        }
        GrpcFailureClass::Code(code) => {
            tracing::debug!(code = code.get(), ?latency, "grpc call refused")
        }
        GrpcFailureClass::Error(e) => tracing::error!(error = %e, ?latency, "grpc call failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    /// A health server that reports `status` for the service "instance".
    async fn instance(status: ServingStatus) -> SocketAddr {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("instance", status).await;
        let (listener, addr) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    /// What the instance that answered says of "instance".
    async fn status_from(client: &mut HealthClient<TracedChannel>) -> i32 {
        let request = HealthCheckRequest {
            service: "instance".into(),
        };
        client.check(request).await.unwrap().into_inner().status
    }

    #[tokio::test]
    async fn a_peer_that_falls_silent_costs_a_bounded_wait() {
        // Takes the connection, reads what comes, never writes a byte.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut client = HealthClient::new(channel(&format!("http://{addr}")).unwrap());
        let call = client.check(HealthCheckRequest {
            service: "instance".into(),
        });
        // A bound on a hang, well past the pings' 15 s: not a measure.
        let ended = tokio::time::timeout(Duration::from_secs(60), call).await;
        let status = ended
            .expect("a call to a silent peer ends once its pings go unanswered")
            .expect_err("a silent peer gives no answer");
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn the_connections_a_service_accepts_send_at_once() {
        use tokio_stream::StreamExt as _;
        let (listener, addr) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let mut accepted = incoming(listener);
        let _client = TcpStream::connect(addr).await.unwrap();
        let stream = accepted.next().await.expect("a connection").unwrap();
        assert!(stream.nodelay().unwrap(), "Nagle's algorithm is still on");
    }

    #[tokio::test]
    async fn calls_to_several_instances_are_spread_over_them() {
        // Each instance answers differently, so the answers say who served.
        let a = instance(ServingStatus::Serving).await;
        let b = instance(ServingStatus::NotServing).await;
        let both = format!("{}, {}", url_of(a), url_of(b));
        let mut client = HealthClient::new(channel(&both).unwrap());
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..40 {
            *seen.entry(status_from(&mut client).await).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "both instances served calls: {seen:?}");
        // One address stays one connection, to that one instance.
        let mut one = HealthClient::new(channel(&url_of(a)).unwrap());
        for _ in 0..5 {
            assert_eq!(status_from(&mut one).await, ServingStatus::Serving as i32);
        }
        // An instance of the list that is down gets no call: none fails.
        let down = {
            let (listener, addr) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            drop(listener);
            addr
        };
        let with_one_down = format!("{},{}", url_of(down), url_of(b));
        let mut client = HealthClient::new(channel(&with_one_down).unwrap());
        assert_eq!(
            answers(&mut client, 20).await,
            [(ServingStatus::NotServing as i32, 20)].into()
        );
        // A URL that is not one is refused, naming nothing secret.
        assert!(channel("http://ok:1,not a url").is_err());
        assert!(channel("http://ok:1,https://other:2").is_err());
    }

    /// A name whose addresses the test sets, as a cluster's DNS would.
    fn names(addresses: &Arc<std::sync::Mutex<Option<Vec<SocketAddr>>>>) -> Resolve {
        let addresses = addresses.clone();
        Arc::new(move || {
            let now = addresses.lock().unwrap().clone();
            Box::pin(async move {
                now.ok_or_else(|| std::io::Error::other("the name server does not answer"))
            })
        })
    }

    /// The statuses of `n` calls, by how many times each came.
    async fn answers(
        client: &mut HealthClient<TracedChannel>,
        n: usize,
    ) -> std::collections::BTreeMap<i32, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..n {
            *seen.entry(status_from(client).await).or_insert(0) += 1;
        }
        seen
    }

    #[tokio::test]
    async fn calls_to_a_name_follow_its_addresses_as_instances_come_and_go() {
        let a = instance(ServingStatus::Serving).await;
        let b = instance(ServingStatus::NotServing).await;
        let (serving, not_serving) = (
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32,
        );
        let addresses = Arc::new(std::sync::Mutex::new(Some(vec![a, b])));
        let every = Duration::from_millis(50);
        let channel = resolving("guichet-test".into(), every, names(&addresses));
        let mut client = HealthClient::new(channel);
        assert_eq!(
            answers(&mut client, 40).await.len(),
            2,
            "both instances served"
        );

        // Instance a goes (its pod is no longer ready): calls go to b alone.
        *addresses.lock().unwrap() = Some(vec![b]);
        let mut only_b = false;
        for _ in 0..100 {
            tokio::time::sleep(every).await;
            if answers(&mut client, 20).await == [(not_serving, 20)].into() {
                only_b = true;
                break;
            }
        }
        assert!(only_b, "calls left the instance that went");

        // An address with nothing behind it (a pod gone before the name
        // caught up): calls go to the instance that answers, and none fails.
        let nobody = {
            let (listener, addr) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            drop(listener);
            addr
        };
        *addresses.lock().unwrap() = Some(vec![b, nobody]);
        tokio::time::sleep(every * 4).await;
        assert_eq!(answers(&mut client, 20).await, [(not_serving, 20)].into());

        // The name server stops answering: calls keep going to b.
        *addresses.lock().unwrap() = None;
        tokio::time::sleep(every * 4).await;
        assert_eq!(answers(&mut client, 10).await, [(not_serving, 10)].into());

        // Instance a comes back: calls reach it again.
        *addresses.lock().unwrap() = Some(vec![a, b]);
        let mut both = false;
        for _ in 0..100 {
            tokio::time::sleep(every).await;
            if answers(&mut client, 20).await.contains_key(&serving) {
                both = true;
                break;
            }
        }
        assert!(both, "calls reached the instance that came back");
    }

    #[tokio::test]
    async fn a_call_that_cannot_reach_its_instance_makes_the_caller_try_them_again_at_once() {
        let a = instance(ServingStatus::Serving).await;
        let (listener, b) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("instance", ServingStatus::NotServing)
            .await;
        let stop_b = tokio_util::sync::CancellationToken::new();
        let b_server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop_b.clone().cancelled_owned(),
                ),
        );
        // Looked up once an hour: only a failed call can make it look again.
        let addresses = Arc::new(std::sync::Mutex::new(Some(vec![a, b])));
        let channel = resolving(
            "guichet-test".into(),
            Duration::from_secs(3600),
            names(&addresses),
        );
        let mut client = HealthClient::new(channel);
        assert_eq!(
            answers(&mut client, 40).await.len(),
            2,
            "both instances served"
        );

        stop_b.cancel();
        b_server.await.unwrap().unwrap();
        let mut failed = 0;
        let mut from_a_in_a_row = 0;
        for _ in 0..200 {
            let request = HealthCheckRequest {
                service: "instance".into(),
            };
            match client.check(request).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => {
                    from_a_in_a_row += 1
                }
                Ok(_) => from_a_in_a_row = 0,
                Err(_) => {
                    failed += 1;
                    from_a_in_a_row = 0;
                }
            }
            if from_a_in_a_row == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(from_a_in_a_row, 20, "calls left the instance that stopped");
        eprintln!("calls failed before the caller left the stopped instance: {failed}");
    }

    #[tokio::test]
    async fn a_dns_target_is_looked_up_by_the_system_and_reaches_the_instance() {
        let a = instance(ServingStatus::Serving).await;
        let target = format!("dns:///localhost:{}", a.port());
        let mut client = HealthClient::new(channel(&target).unwrap());
        assert_eq!(
            answers(&mut client, 5).await,
            [(ServingStatus::Serving as i32, 5)].into()
        );
    }

    #[test]
    fn a_dns_target_names_a_host_and_a_port_and_no_server_of_its_own() {
        for (target, name) in [
            ("dns:///intake-web:50061", "intake-web:50061"),
            (
                "dns:intake-web.guichet.svc:50061",
                "intake-web.guichet.svc:50061",
            ),
            ("dns:///[::1]:50061", "[::1]:50061"),
        ] {
            let rest = target.strip_prefix("dns:").unwrap();
            assert_eq!(dns_name(target, rest).unwrap(), name, "{target}");
        }
        for target in [
            "dns:///intake-web",
            "dns:///intake-web:http",
            "dns:///:50061",
            "dns://10.0.0.10/intake-web:50061",
        ] {
            let rest = target.strip_prefix("dns:").unwrap();
            let refused = dns_name(target, rest).unwrap_err().to_string();
            assert!(
                refused.starts_with(target) && refused.contains("dns:///host:port"),
                "{refused}"
            );
        }
    }
}
