//! The gateway's router, its tower stack, and start-up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guichet_kit::clock::SharedClock;
use guichet_kit::grpc::{self, TracedChannel};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, Metrics, telemetry};
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use guichet_proto::v1::instruction_desk_client::InstructionDeskClient;
use guichet_proto::v1::instruction_reader_client::InstructionReaderClient;
use guichet_proto::v1::online_intake_client::OnlineIntakeClient;
use guichet_proto::v1::postal_client::PostalClient;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::{api, appointments, cases, grpc_proxy, health, openapi, ops, postal};

/// Largest JSON body accepted: a filing carries document references, not bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest scanned batch accepted: a stack of envelopes at 300 dpi.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;
/// A stack's pages are stored (and a PDF's rasterised) before the answer.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where the services behind the gateway listen (`http://host:port`).
#[derive(Debug, Clone)]
pub struct Targets {
    pub intake_web: String,
    pub instruction: String,
    pub intake_ccc: String,
    pub intake_pan: String,
    pub intake_postal: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{url} is not a usable service URL")]
    BadTarget {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct AppState {
    pub intake: OnlineIntakeClient<TracedChannel>,
    pub instruction: InstructionReaderClient<TracedChannel>,
    pub desk: InstructionDeskClient<TracedChannel>,
    pub intake_channel: TracedChannel,
    pub instruction_channel: TracedChannel,
    pub ccc: CallCentreClient<TracedChannel>,
    pub ccc_channel: TracedChannel,
    pub pan: DeskClient<TracedChannel>,
    pub pan_channel: TracedChannel,
    pub postal: PostalClient<TracedChannel>,
    pub postal_channel: TracedChannel,
    pub clock: SharedClock,
    /// This process's figures: in `guichet up`, every service's.
    pub metrics: Metrics,
}

pub fn router(
    state: AppState,
    request_timeout: Duration,
    grpc_health: tonic_health::pb::health_server::HealthServer<grpc_proxy::GatewayHealth>,
) -> Router {
    let (reflection_v1, reflection_v1alpha) = grpc_proxy::reflection();
    let stack = ServiceBuilder::new()
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
    let timeout = |t| TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, t);
    Router::new()
        .route("/api/v1/dossiers", post(api::submit))
        .route("/api/v1/dossiers/{reference}", get(api::get_dossier))
        .route("/api/v1/dossiers/{reference}/status", get(cases::status))
        .route("/api/v1/queue", get(cases::queue))
        .route("/api/v1/processing-times", get(cases::processing_times))
        .route(
            "/api/v1/attestations/{code}",
            get(cases::verify_attestation),
        )
        .route("/api/v1/agent/queue/next", post(cases::take_next))
        .route("/api/v1/agent/dossiers/{reference}", get(cases::read_case))
        .route(
            "/api/v1/agent/dossiers/{reference}/document-requests",
            post(cases::request_documents),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/documents",
            post(cases::add_document),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/decision",
            post(cases::decide),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/withdrawal",
            post(cases::withdraw),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/link",
            post(cases::confirm_link),
        )
        .route("/api/v1/equity", get(ops::equity))
        .route("/api/v1/sites", get(appointments::sites))
        .route("/api/v1/sites/{site}/slots", get(appointments::slots))
        .route("/api/v1/appointments", post(appointments::book))
        .route("/api/v1/appointments/{id}", get(appointments::get))
        .route(
            "/api/v1/appointments/{id}/move",
            post(appointments::move_to),
        )
        .route(
            "/api/v1/appointments/{id}/cancellation",
            post(appointments::cancel),
        )
        .route("/api/v1/reports/{id}", get(appointments::report))
        .route(
            "/api/v1/agent/reports/{id}/alternative",
            post(appointments::offer_alternative),
        )
        // gRPC for call-centre and desk software, passed on as it is.
        .route("/guichet.v1.CallCentre/{method}", post(grpc_proxy::pass_on))
        .route("/guichet.v1.Desk/{method}", post(grpc_proxy::pass_on))
        .route_service("/grpc.health.v1.Health/{method}", grpc_health)
        .route_service(
            "/grpc.reflection.v1.ServerReflection/{method}",
            reflection_v1,
        )
        .route_service(
            "/grpc.reflection.v1alpha.ServerReflection/{method}",
            reflection_v1alpha,
        )
        .route("/api/openapi.json", get(openapi::document))
        .route("/ops", get(ops::page))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/postal/forms", post(postal::print_form))
        .route("/api/v1/postal/separators", get(postal::print_separators))
        .route("/api/v1/postal/batches/{id}", get(postal::batch))
        .route("/api/v1/postal/keying", get(postal::keying))
        .route("/api/v1/postal/envelopes/{id}", get(postal::envelope))
        .route(
            "/api/v1/postal/envelopes/{id}/confirmation",
            post(postal::confirm),
        )
        .route("/api/v1/postal/envelopes/{id}/routing", post(postal::route))
        .route("/api/v1/postal/pages/{sha256}", get(postal::page))
        .route("/api/v1/postal/letters", get(postal::letters))
        .route("/api/v1/postal/letters/{id}", get(postal::letter))
        .route_layer(timeout(request_timeout))
        // Scanned batches: large bodies, and time to store every page.
        .route(
            "/api/v1/postal/batches",
            post(postal::upload)
                .layer::<_, Infallible>(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
                .layer::<_, Infallible>(timeout(UPLOAD_TIMEOUT)),
        )
        .route(
            "/guichet.v1.Postal/{method}",
            post(grpc_proxy::pass_on).layer::<_, Infallible>(timeout(UPLOAD_TIMEOUT)),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(stack)
        .with_state(state)
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
    addr: SocketAddr,
    targets: Targets,
    clock: SharedClock,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let connect = |url: &str| {
        grpc::channel(url).map_err(|source| StartError::BadTarget {
            url: url.to_string(),
            source,
        })
    };
    let intake = connect(&targets.intake_web)?;
    let instruction = connect(&targets.instruction)?;
    let ccc = connect(&targets.intake_ccc)?;
    let pan = connect(&targets.intake_pan)?;
    let postal = connect(&targets.intake_postal)?;
    let state = AppState {
        intake: OnlineIntakeClient::new(intake.clone()),
        instruction: InstructionReaderClient::new(instruction.clone()),
        desk: InstructionDeskClient::new(instruction.clone()),
        intake_channel: intake,
        instruction_channel: instruction,
        ccc: CallCentreClient::new(ccc.clone()),
        ccc_channel: ccc,
        pan: DeskClient::new(pan.clone()),
        pan_channel: pan,
        postal: PostalClient::new(postal.clone())
            .max_decoding_message_size(MAX_UPLOAD_BYTES)
            .max_encoding_message_size(MAX_UPLOAD_BYTES),
        postal_channel: postal,
        clock,
        metrics,
    };
    let (listener, http_addr) = grpc::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let health = grpc_proxy::GatewayHealth::server(state.clone(), shutdown.clone());
    let app = router(state, config.request_timeout(), health);
    let mut tasks = guichet_kit::service::Tasks::new();
    tasks.spawn("http", serve(listener, app, shutdown));
    tracing::info!(%http_addr, "gateway ready");
    Ok(Running { http_addr, tasks })
}

/// A client must have sent a request's head within this time, or its
/// connection is closed: a slow sender cannot hold connections open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
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
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            if !protocol_known_in_time(&stream, HEADER_READ_TIMEOUT).await {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
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
async fn protocol_known_in_time(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            // Closed, broken, or silent until the deadline.
            Ok(Err(_)) | Err(_) => return false,
        };
        if peeked == 0 {
            return false;
        }
        if peeked >= H2_PREFACE.len() || buf[..peeked] != H2_PREFACE[..peeked] {
            return true;
        }
        // A prefix of the preface so far: wait for more bytes to come.
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
