//! One trace per dossier, across every hop: an OTLP receiver inside the test
//! collects what the mesh exports, and the span tree of one filing is checked
//! from the gateway down to the instruction service's database write.
//!
//! Alone in its test binary: the tracer provider is process-wide, and this
//! test must be the one that installs it, pointed at its receiver.

#[path = "integration/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{App, Backend, ONLINE, TestEnv, count, eventually, example};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    service: String,
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().expect("receiver lock");
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    kept.push(ReceivedSpan {
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        name: span.name.clone(),
                        kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn start_receiver() -> (Receiver, String) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the OTLP receiver");
    let addr = listener.local_addr().expect("receiver address");
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (receiver, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_gateway_to_the_instruction_write() {
    let (receiver, endpoint) = start_receiver().await;
    // Before anything else in this process sets up telemetry.
    let _telemetry = guichet_kit::telemetry::init_with(
        guichet_kit::config::LogFormat::Text,
        Some(&endpoint),
        "guichet-tests",
    );
    let env = TestEnv::on(Backend::Servers).await;
    let app = App::builder(&env.config()).only(ONLINE).start().await;

    let response = app
        .file(&example("renewal-employee.json"), Some("trace-me"))
        .await;
    assert_eq!(response.status(), 201);
    let receipt: serde_json::Value = response.json().await.expect("receipt JSON");
    let trace_id = receipt["trace_id"]
        .as_str()
        .expect("the receipt names its trace")
        .to_string();
    let reference = receipt["reference"]
        .as_str()
        .expect("reference")
        .to_string();
    let db = env.db("instruction").await;
    eventually(
        Duration::from_secs(20),
        "the dossier in instruction",
        || {
            let db = db.clone();
            let reference = reference.clone();
            async move {
                let n = count(
                    &db,
                    &format!("SELECT count(*) FROM dossiers WHERE reference = '{reference}'"),
                )
                .await;
                (n == 1).then_some(())
            }
        },
    )
    .await;

    // Each span is exported when it ends: the write's after the commit, the
    // consumer's (its parent) only after the batch is acked. Flush until
    // every span the test reads has arrived.
    const AWAITED: [(&str, SpanKind); 6] = [
        ("POST /api/v1/dossiers", SpanKind::Server),
        ("guichet.v1.OnlineIntake/SubmitFiling", SpanKind::Client),
        ("guichet.v1.OnlineIntake/SubmitFiling", SpanKind::Server),
        ("publish guichet.dossiers", SpanKind::Producer),
        ("process instruction.dossiers", SpanKind::Consumer),
        ("INSERT dossiers", SpanKind::Client),
    ];
    let spans = eventually(
        Duration::from_secs(20),
        "every span of the trace exported",
        || {
            let receiver = receiver.clone();
            let trace_id = trace_id.clone();
            async move {
                guichet_kit::telemetry::flush();
                let spans: Vec<ReceivedSpan> = receiver
                    .spans
                    .lock()
                    .expect("receiver lock")
                    .iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect();
                AWAITED
                    .iter()
                    .all(|(name, kind)| spans.iter().any(|s| s.name == *name && s.kind == *kind))
                    .then_some(spans)
            }
        },
    )
    .await;

    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let find = |name: &str, kind: SpanKind| -> &ReceivedSpan {
        spans
            .iter()
            .find(|s| s.name == name && s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} span {name:?} in the trace: {spans:#?}"))
    };
    let gateway = find("POST /api/v1/dossiers", SpanKind::Server);
    let call = find("guichet.v1.OnlineIntake/SubmitFiling", SpanKind::Client);
    let intake = find("guichet.v1.OnlineIntake/SubmitFiling", SpanKind::Server);
    let publish = find("publish guichet.dossiers", SpanKind::Producer);
    let consume = find("process instruction.dossiers", SpanKind::Consumer);
    let write = find("INSERT dossiers", SpanKind::Client);

    // The gateway's span starts the trace; each hop is the child of the one before.
    assert_eq!(gateway.parent_span_id, "", "the gateway's span is the root");
    for (child, parent) in [
        (call, gateway),
        (intake, call),
        (publish, intake),
        (consume, publish),
        (write, consume),
    ] {
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{} should be the child of {}",
            child.name, parent.name
        );
        assert!(by_id.contains_key(child.parent_span_id.as_str()));
    }
    assert!(spans.iter().all(|s| s.service.contains("guichet-tests")));

    common::stop(app, env).await;
}
