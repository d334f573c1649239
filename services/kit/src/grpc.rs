//! Serving and calling gRPC the same way everywhere: listeners bound first,
//! standard health and reflection, a span per call linked to the caller's
//! trace, and trace context injected into every outgoing call.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tracing::Instrument as _;

/// A client channel that makes a client span for every call, child of the
/// current span, and sends its W3C trace context in the call's metadata, so
/// the server's span continues the caller's trace.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    inner: Channel,
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
        Box::pin(
            async move {
                let response = call.await;
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

/// A lazy client channel to `url` (`http://host:port`): it connects on first
/// use and reconnects by itself, so a gateway can start before its services.
/// Several instances, their URLs separated by commas: calls are spread over
/// those that answer (one HTTP/2 connection to a single address would carry
/// every call to one instance).
pub fn channel(url: &str) -> Result<TracedChannel, tonic::transport::Error> {
    let endpoint = |url: &str| {
        tonic::transport::Endpoint::from_shared(url.trim().to_string()).map(|e| {
            e.connect_timeout(std::time::Duration::from_secs(2))
                .tcp_nodelay(true)
        })
    };
    let inner = if url.contains(',') {
        let endpoints = url
            .split(',')
            .map(endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        tonic::transport::Channel::balance_list(endpoints.into_iter())
    } else {
        endpoint(url)?.connect_lazy()
    };
    Ok(TracedChannel { inner })
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
        .layer(trace)
        // Refused before the request is read, decoded or checked: shedding
        // must be cheap (the call's span stays, so a refusal is traced).
        .layer(capacity)
        .layer(crate::grpc_check::TextCheckLayer::new(max_message_bytes))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
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
        // A URL that is not one is refused, naming nothing secret.
        assert!(channel("http://ok:1,not a url").is_err());
    }
}
