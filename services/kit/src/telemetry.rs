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

use std::sync::OnceLock;

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, LogFormat};

/// The W3C headers that carry trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Keeps the tracer provider of the process, to flush spans before exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Flushes exported spans when dropped: hold it for the life of `main`.
pub struct Telemetry;

impl Drop for Telemetry {
    fn drop(&mut self) {
        flush();
    }
}

/// Sends every finished span to the collector now, if one is configured.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// Installs the global subscriber: readable or JSON logs filtered by
/// `RUST_LOG`, and OpenTelemetry spans at info level whatever the log filter,
/// so trace ids never depend on how verbose the logs are. Spans are exported
/// over OTLP/gRPC when `GUICHET_OTLP_ENDPOINT` is set. Calling it again (tests
/// start several services in one process) keeps the first set-up.
pub fn init(config: &Config, service: &str) -> Telemetry {
    install(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        service,
        Output::Stdout,
    )
}

/// The same with explicit settings (tests).
pub fn init_with(format: LogFormat, otlp_endpoint: Option<&str>, service: &str) -> Telemetry {
    install(format, otlp_endpoint, service, Output::Stdout)
}

/// For a command-line tool whose standard output is its answer
/// (`guichet dlq list --json`, `guichet bench --json`): warnings and errors go
/// to standard error, nothing is exported.
pub fn init_for_tool(format: LogFormat) -> Telemetry {
    install(format, None, "guichet", Output::Stderr)
}

enum Output {
    Stdout,
    Stderr,
}

fn install(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
    service: &str,
    output: Output,
) -> Telemetry {
    // lapin logs every failed reconnect at error level; the bus reports those
    // itself, once, with context. sqlx's info lines are PostgreSQL notices.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| match output {
        Output::Stdout => EnvFilter::new("info,lapin=off,sqlx=warn"),
        // A tool's own output is its answer; its logs only say what went wrong.
        Output::Stderr => EnvFilter::new("warn,lapin=off,sqlx=error"),
    });
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service.to_string())
            .build(),
    );
    let mut export_error = None;
    if let Some(endpoint) = otlp_endpoint {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer("guichet");
    // Only what a trace needs is built per span: no busy/idle timings, no
    // thread or source location attributes, and no OpenTelemetry context
    // made current on every poll (nothing here reads `Context::current`;
    // propagation goes through the span itself). The profile showed these
    // in every request's path even with nothing exported (BENCHMARKS.md).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_context_activation(false)
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
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace)
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
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = PROVIDER.set(provider);
        match (otlp_endpoint, export_error) {
            (Some(endpoint), None) => tracing::info!(%endpoint, "exporting traces over OTLP"),
            (Some(endpoint), Some(error)) => {
                tracing::warn!(%endpoint, %error, "cannot export traces to this endpoint")
            }
            _ => {}
        }
    }
    Telemetry
}

/// One JSON object per line, with the trace and span ids of the span the
/// event happened in, so a log line leads to its trace.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut line));
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>()
                && let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_str::<serde_json::Value>(fields.as_str())
            {
                for (k, v) in map {
                    line.entry(k).or_insert(v);
                }
            }
            if let Some(otel) = extensions.get::<tracing_opentelemetry::OtelData>() {
                if let Some(trace_id) = otel.trace_id() {
                    line.insert("trace_id".into(), trace_id.to_string().into());
                }
                if let Some(span_id) = otel.span_id() {
                    line.insert("span_id".into(), span_id.to_string().into());
                }
            }
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
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
/// caller's trace when it sent one, named as OpenTelemetry's conventions say
/// (`POST /api/v1/dossiers`, `guichet.v1.OnlineIntake/SubmitFiling`).
pub fn server_span<B>(request: &http::Request<B>) -> Span {
    let path = request.uri().path();
    let is_grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let span = if is_grpc {
        let name = path.trim_start_matches('/');
        let (service, method) = name.split_once('/').unwrap_or((name, ""));
        tracing::info_span!(
            "grpc server",
            otel.name = %name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        )
    } else {
        // The route template when routing has happened (never the raw path,
        // which would carry references).
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or(path, |m| m.as_str());
        tracing::info_span!(
            "request",
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            http.request.method = %request.method(),
            http.route = %route,
            url.path = %path,
        )
    };
    set_parent(&span, &carrier_from_headers(request.headers()));
    span
}
