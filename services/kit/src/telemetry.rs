//! Logs and traces, set up once per process. Every span is an OpenTelemetry
//! span, so a W3C trace id exists even when nothing is exported, and the same
//! trace follows a dossier through HTTP headers, gRPC metadata and AMQP headers.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter};

use crate::config::LogFormat;

/// The W3C headers that carry trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Installs the global subscriber: readable or JSON logs filtered by
/// `RUST_LOG`, and OpenTelemetry spans at info level whatever the log filter,
/// so trace ids never depend on how verbose the logs are. Calling it again
/// (tests start several services in one process) keeps the first set-up.
pub fn init(format: LogFormat) {
    install(format, Output::Stdout)
}

/// The same for a command-line tool whose standard output is its answer
/// (`guichet dlq list --json`): logs go to standard error.
pub fn init_for_tool(format: LogFormat) {
    install(format, Output::Stderr)
}

enum Output {
    Stdout,
    Stderr,
}

fn install(format: LogFormat, output: Output) {
    // lapin logs every failed reconnect at error level; the bus reports those
    // itself, once, with context. sqlx's info lines are PostgreSQL notices.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=off,sqlx=warn"));
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("guichet");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    let writer = match output {
        Output::Stdout => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        Output::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider);
    }
}

/// The W3C trace id of a span, lowercase hex; empty when it has none.
pub fn trace_id(span: &Span) -> String {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

pub fn current_trace_id() -> String {
    trace_id(&Span::current())
}

/// The trace context of `span` as W3C headers.
pub fn inject(span: &Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
}

/// Makes `span` a child of the trace context found in `carrier`, if any.
pub fn set_parent(span: &Span, carrier: &HashMap<String, String>) {
    if !carrier.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// The trace headers found in an HTTP (or gRPC) header map.
pub fn carrier_from_headers(headers: &http::HeaderMap) -> HashMap<String, String> {
    TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// A tower `make_span` for servers: one span per request, child of the
/// caller's trace when it sent one.
pub fn server_span<B>(request: &http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        otel.kind = "server",
    );
    set_parent(&span, &carrier_from_headers(request.headers()));
    span
}
