//! The gateway's router, its tower stack, and start-up.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guichet_kit::clock::SharedClock;
use guichet_kit::service::Listen;
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, Metrics, telemetry};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::{AppState, BadTarget, Targets};
use crate::tries::Tries;
use crate::{
    admin, agents, appointments, dossiers, grpc_proxy, ops, origin, policy, postal, session,
};

/// Largest JSON body accepted: a filing carries document references, not bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    BadTarget(#[from] BadTarget),
    #[error("the gateway's store")]
    Store(#[from] guichet_kit::db::DbError),
    #[error(transparent)]
    MachineClients(#[from] crate::settings::BadMachineClient),
    #[error(transparent)]
    LinkKey(#[from] crate::links::LinkKeyError),
    #[error(transparent)]
    SigningKeys(#[from] guichet_kit::seal::KeyError),
    #[error(transparent)]
    Documents(#[from] guichet_kit::documents::OpenError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The whole API: one router per area, each with its own routes and
/// limits, behind the layers every request passes.
pub fn router(
    state: AppState,
    request_timeout: Duration,
    bounds: Bounds,
    grpc_health: tonic_health::pb::health_server::HealthServer<grpc_proxy::GatewayHealth>,
) -> Router {
    let upload_bytes = state.uploads.max_request_bytes();
    let in_flight = InFlight::new(bounds, &state.metrics);
    let stack = ServiceBuilder::new()
        // On every answer, errors and panics included: no type sniffing, no
        // framing by another site, and nothing kept by a browser or a proxy
        // cache (answers carry personal data). A handler may say otherwise
        // where it means to.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
                    .into_response()
            },
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(telemetry::server_span::<axum::body::Body>),
        );
    Router::new()
        .merge(dossiers::routes())
        .merge(agents::routes())
        .merge(admin::routes())
        .merge(session::routes())
        .merge(appointments::routes())
        .merge(postal::routes())
        .merge(ops::routes())
        .merge(grpc_proxy::routes(grpc_health))
        .route_layer(timeout(request_timeout))
        // Routes that set their own limits and time, after the common timeout.
        .merge(postal::upload_routes())
        .merge(crate::uploads::routes(upload_bytes, request_timeout))
        // The persons' pages, with their own headers and compression.
        .merge(crate::web::routes(upload_bytes, request_timeout))
        // Every route above, judged against the policy table.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            policy::enforce,
        ))
        .fallback(not_found)
        // The workspace's forms carry the session's CSRF token as a field.
        .layer(axum::middleware::from_fn(crate::web::agents::form_token))
        .layer(axum::middleware::from_fn(crate::web::refusals_as_pages))
        .layer(axum::middleware::from_fn(origin::refuse_cross_site))
        .layer(axum::middleware::from_fn_with_state(in_flight, shed))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(stack)
        .with_state(state)
}

/// A request body up to this size is read in the time the machine takes;
/// a larger one (a document, a scanned batch) in the time the client's link
/// takes, which says nothing about load here.
const SMALL_BODY: u64 = 64 * 1024;

/// How much work the gateway takes at once.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Requests whose time is the machine's (`GUICHET_MAX_IN_FLIGHT`),
    /// under a bound that adapts to `latency_target`.
    pub max_in_flight: usize,
    pub latency_target: Duration,
    /// Requests whose time is the client's link: documents, scanned
    /// batches, bodies of unknown length (`GUICHET_MAX_UPLOADS_IN_FLIGHT`).
    pub max_uploads_in_flight: usize,
}

/// The gateway's places for work in flight, and the count of refusals.
///
/// Two sets of places: an upload holds its place for as long as the
/// person's connection takes to send the document, minutes on a poor line.
/// Sharing one bound, a few dozen slow uploads would lock every filing and
/// every look out; a bound large enough for them let an overloaded
/// machine's requests queue into hundreds of milliseconds. So the machine's
/// requests have a small bound that follows their latency, and the uploads
/// a fixed one of their own.
#[derive(Clone)]
pub(crate) struct InFlight {
    limit: std::sync::Arc<guichet_kit::capacity::AdaptiveLimit>,
    uploads: std::sync::Arc<tokio::sync::Semaphore>,
    refused: guichet_kit::metrics::Counter,
}

impl InFlight {
    fn new(bounds: Bounds, metrics: &guichet_kit::Metrics) -> Self {
        let refused = metrics
            .requests_shed
            .get_or_create(&guichet_kit::metrics::ServiceLabels { service: "gateway" })
            .clone();
        let limit = guichet_kit::capacity::adaptive(
            "gateway",
            (bounds.max_in_flight, bounds.latency_target),
            metrics,
        );
        let uploads = tokio::sync::Semaphore::new(bounds.max_uploads_in_flight.max(1));
        Self {
            limit,
            uploads: std::sync::Arc::new(uploads),
            refused,
        }
    }
}

/// A request's place, given back when it is answered.
enum Held {
    /// Under the machine's bound: the answer's time is counted.
    Timed(guichet_kit::capacity::Place),
    /// Among the uploads.
    Upload(tokio::sync::OwnedSemaphorePermit),
}

/// Whether the time to answer `request` measures this machine: no body, or
/// a small one whose length is declared, or a gRPC call other than the
/// mailroom's uploads.
fn times_the_machine(request: &axum::extract::Request) -> bool {
    if grpc_proxy::is_grpc(request) {
        return guichet_kit::capacity::timed_call(request.uri().path());
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) => length <= SMALL_BODY,
        None => {
            !request.headers().contains_key(header::TRANSFER_ENCODING)
                && matches!(
                    *request.method(),
                    axum::http::Method::GET
                        | axum::http::Method::HEAD
                        | axum::http::Method::OPTIONS
                )
        }
    }
}

/// Work in flight is bounded: past the bound, a request is refused at once
/// (503 with `Retry-After`, or gRPC `UNAVAILABLE`) instead of waiting in
/// line into seconds of latency. The machine's bound follows the answers'
/// latency (`AdaptiveLimit`); uploads have their own (`InFlight`). Health
/// checks and metrics always answer, so an orchestrator does not restart a
/// gateway for being busy.
pub(crate) async fn shed(
    axum::extract::State(bound): axum::extract::State<InFlight>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let place = if times_the_machine(&request) {
        bound.limit.try_acquire().map(Held::Timed)
    } else {
        bound
            .uploads
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Held::Upload)
    };
    let Some(place) = place else {
        bound.refused.inc();
        let full = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the gateway is at capacity: try again in a moment",
        );
        if grpc_proxy::is_grpc(&request) {
            return full
                .into_grpc()
                .into_http::<axum::body::Body>()
                .into_response();
        }
        let mut response = full.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    match place {
        Held::Timed(place) => place.answered(),
        Held::Upload(permit) => drop(permit),
    }
    response
}

/// A request that takes longer than `t` is answered 504.
/// A request of files may take this long (a slow line, a large scan,
/// stored and a PDF rasterised before the answer).
pub(crate) const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn timeout(t: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, t)
}

/// No route: a gRPC call gets gRPC's `UNIMPLEMENTED`, anything else a 404.
async fn not_found(request: axum::extract::Request) -> Response {
    if grpc_proxy::is_grpc(&request) {
        return grpc_proxy::unimplemented(request.uri().path());
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        None,
        "no such route; see /api/openapi.json",
    )
    .into_response()
}

pub struct Running {
    pub http_addr: SocketAddr,
    pub tasks: guichet_kit::service::Tasks,
}

/// Binds `addr` (port 0 picks one) and serves until `shutdown`.
pub async fn start(
    config: &Config,
    access: &crate::AccessSettings,
    listen: impl Into<Listen>,
    targets: Targets,
    clock: SharedClock,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let window = Duration::from_secs(config.status_window_s);
    let directory = crate::directory::Directory::open(
        config.database_url.as_deref(),
        &config.data_dir,
        config.db_pool(),
    )
    .await?;
    let (listener, http_addr) = listen
        .into()
        .open()
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })?;
    let public_url = access
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let auth =
        crate::caller::Authenticator::new(access, &public_url, directory.clone(), clock.clone())?;
    // Made here if no service made it yet, so the keys are published from
    // the start.
    let signing_keys = config.signing_keys_path();
    guichet_kit::seal::KeySet::load_or_create(&signing_keys, clock.now())?;
    let state = AppState::connect(
        &targets,
        clock,
        metrics,
        std::sync::Arc::new(Tries::new(config.status_tries, window)),
        std::sync::Arc::new(Tries::new(config.attestation_tries, window)),
        auth,
        crate::state::Resources {
            links: std::sync::Arc::new(crate::links::LinkKey::load(
                config.link_key.as_deref(),
                &config.data_dir,
            )?),
            signing_keys,
            uploads: std::sync::Arc::new(crate::uploads::Uploads {
                store: guichet_kit::documents::DocumentStore::open(config)?,
                scanner: config.documents.virus_scanner()?,
                rules: config.documents.upload_rules(),
                max_files: config.documents.upload_max_files,
                max_dossier_bytes: config.documents.upload_max_dossier_bytes(),
            }),
        },
    )?;
    let state_clock = state.clock.clone();
    let health = grpc_proxy::GatewayHealth::server(state.clone(), shutdown.clone());
    let app = router(
        state,
        config.request_timeout(),
        Bounds {
            max_in_flight: config.max_in_flight,
            latency_target: config.latency_target(),
            max_uploads_in_flight: config.max_uploads_in_flight,
        },
        health,
    );
    let mut tasks = guichet_kit::service::Tasks::new();
    tasks.spawn(
        "audit-retention",
        crate::admin::purge_forever(
            directory,
            state_clock,
            access.audit_retention_days,
            shutdown.clone(),
        ),
    );
    tasks.spawn("http", serve(listener, app, shutdown));
    tracing::info!(%http_addr, "gateway ready");
    Ok(Running { http_addr, tasks })
}

/// A client must have sent a request's head within this time of its first
/// byte (of connecting, for the first request), or its connection is
/// closed: a slow sender cannot hold connections open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an HTTP/1.1 connection may wait, idle, for its next request:
/// longer than the proxies and clients that keep connections (nginx 60 s,
/// most HTTP clients 90 s) wait before reusing one, so the gateway is not
/// closing a connection just as a request is sent on it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(100);
/// How long open requests may run on after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 and HTTP/2 (h2c, for gRPC) on `listener` until
/// `shutdown`, then lets open requests finish. Like `axum::serve`, with a
/// limit on the time a request head may take (hyper's
/// `header_read_timeout`, which axum's `serve` does not expose).
async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: Shutdown) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's one clock runs from the moment a connection waits for a
    // request, so it is the idle time; `HeadDeadline` times the head itself.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT);
    // gRPC clients (call-centre software) keep their connections: one
    // whose host went without a reset is found by its unanswered pings.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(guichet_kit::grpc::KEEPALIVE_EVERY)
        .keep_alive_timeout(guichet_kit::grpc::KEEPALIVE_ANSWER);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The client's address, for what is counted per client (`tries`).
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: axum::http::Request<_>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        tokio::spawn(async move {
            let ended = match protocol_in_time(&stream, HEADER_READ_TIMEOUT).await {
                None => return,
                Some(Protocol::Http1) => {
                    let stream =
                        crate::head_deadline::HeadDeadline::new(stream, HEADER_READ_TIMEOUT);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
                Some(Protocol::Http2) => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the drain time; stopping anyway");
    }
}

/// hyper's timeout starts once it knows the protocol, and it knows it from
/// the first bytes (the HTTP/2 preface or not): a connection that sends
/// nothing, or a preface cut short, is closed here after the same time.
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (gRPC): its frames have no heads to time.
    Http2,
}

async fn protocol_in_time(stream: &tokio::net::TcpStream, within: Duration) -> Option<Protocol> {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            // Closed, broken, or silent until the deadline.
            Ok(Err(_)) | Err(_) => return None,
        };
        if peeked == 0 {
            return None;
        }
        if buf[..peeked] != H2_PREFACE[..peeked] {
            return Some(Protocol::Http1);
        }
        if peeked >= H2_PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // A prefix of the preface so far: wait for more bytes to come.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_whose_time_is_the_machines_are_timed() {
        let request = |method: &str, path: &str, headers: &[(&str, &str)]| {
            let mut r = axum::http::Request::builder().method(method).uri(path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(axum::body::Body::empty()).unwrap()
        };
        let grpc = [("content-type", "application/grpc")];
        for (what, r, timed) in [
            ("a look", request("GET", "/api/v1/dossiers/X", &[]), true),
            (
                "a filing",
                request("POST", "/api/v1/dossiers", &[("content-length", "4200")]),
                true,
            ),
            (
                "a document",
                request("POST", "/api/v1/uploads", &[("content-length", "3000000")]),
                false,
            ),
            (
                "a body of unknown length",
                request(
                    "POST",
                    "/api/v1/dossiers",
                    &[("transfer-encoding", "chunked")],
                ),
                false,
            ),
            (
                "a call-centre call",
                request("POST", "/guichet.v1.CallCentre/File", &grpc),
                true,
            ),
            (
                "a scanned batch",
                request("POST", "/guichet.v1.Postal/Upload", &grpc),
                false,
            ),
        ] {
            assert_eq!(times_the_machine(&r), timed, "{what}");
        }
    }
}
