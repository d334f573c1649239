//! A service's work in flight, bounded. Past the bound a call is refused at
//! once with `UNAVAILABLE` and a `retry-after` of one second, instead of
//! waiting in line: under overload the calls accepted keep their latency,
//! and a client (or the gateway, which turns it into 503 with `Retry-After`)
//! knows to come back. Health and reflection always answer, so an
//! orchestrator never takes a busy service for a dead one.

use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

/// Metadata key of the seconds after which a refused call may be tried
/// again (the gateway turns it into HTTP's `Retry-After`).
pub const RETRY_AFTER: &str = "retry-after";

/// The refusal a caller gets when the service is full.
pub fn at_capacity(service: &str) -> tonic::Status {
    let mut status =
        tonic::Status::unavailable(format!("{service} is at capacity: try again in a moment"));
    status.metadata_mut().insert(
        RETRY_AFTER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// Layer of a gRPC server: at most `limit` calls at once.
#[derive(Clone)]
pub struct CapacityLayer {
    permits: Arc<Semaphore>,
    refused: Counter,
    service: &'static str,
}

impl CapacityLayer {
    /// `refused` counts the calls turned away (`guichet_requests_shed_total`).
    pub fn new(limit: usize, service: &'static str, refused: Counter) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            refused,
            service,
        }
    }
}

impl<S> tower::Layer<S> for CapacityLayer {
    type Service = Capacity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Capacity {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Capacity<S> {
    inner: S,
    layer: CapacityLayer,
}

type Request = http::Request<tonic::body::Body>;
type Response = http::Response<tonic::body::Body>;

/// Health checks and reflection are never refused.
fn always_answered(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

impl<S> tower::Service<Request> for Capacity<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if always_answered(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            self.layer.refused.inc();
            let refusal = at_capacity(self.layer.service).into_http::<tonic::body::Body>();
            return Box::pin(std::future::ready(Ok(refusal)));
        };
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await;
            // Unary calls: the answer is whole once it is here.
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_reflection_are_always_answered() {
        for (path, answered) in [
            ("/grpc.health.v1.Health/Check", true),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                true,
            ),
            ("/guichet.v1.OnlineIntake/SubmitFiling", false),
            ("/guichet.v1.InstructionReader/Queue", false),
        ] {
            assert_eq!(always_answered(path), answered, "{path}");
        }
    }

    fn call(path: &str) -> Request {
        http::Request::builder()
            .uri(format!("http://service{path}"))
            .body(tonic::body::Body::empty())
            .expect("a request")
    }

    fn grpc_status(response: &Response) -> Option<&str> {
        response.headers().get("grpc-status")?.to_str().ok()
    }

    #[tokio::test]
    async fn one_call_more_than_the_bound_is_refused_at_once_and_the_place_comes_back() {
        use tower::{Layer as _, Service as _, ServiceExt as _};
        // A service whose calls last until they are let go, one per permit.
        let release = Arc::new(Semaphore::new(0));
        let inner = tower::service_fn({
            let release = release.clone();
            move |_request: Request| {
                let release = release.clone();
                async move {
                    release.acquire().await.expect("open").forget();
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        tonic::body::Body::empty(),
                    ))
                }
            }
        });
        let refused = Counter::default();
        let mut service = CapacityLayer::new(1, "guichet.v1.Test", refused.clone()).layer(inner);

        let held = service
            .ready()
            .await
            .expect("ready")
            .call(call("/guichet.v1.Test/Slow"));
        // The place is taken when the call is made, before it is polled.
        let held = tokio::spawn(held);

        let refusal = service
            .ready()
            .await
            .expect("ready")
            .call(call("/guichet.v1.Test/Other"))
            .await
            .expect("an answer");
        assert_eq!(grpc_status(&refusal), Some("14"), "UNAVAILABLE");
        assert_eq!(
            refusal
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(refused.get(), 1);

        // Health is answered even when full (it waits for its own answer here).
        let health = service
            .ready()
            .await
            .expect("ready")
            .call(call("/grpc.health.v1.Health/Check"));
        let health = tokio::spawn(health);
        release.add_permits(2);
        let health = health.await.expect("joined").expect("an answer");
        assert_eq!(grpc_status(&health), None, "not refused");
        let held = held.await.expect("joined").expect("an answer");
        assert_eq!(grpc_status(&held), None, "the first call was served");

        // The place is free again.
        let next = service
            .ready()
            .await
            .expect("ready")
            .call(call("/guichet.v1.Test/Again"));
        let next = tokio::spawn(next);
        release.add_permits(1);
        let next = next.await.expect("joined").expect("an answer");
        assert_eq!(grpc_status(&next), None);
        assert_eq!(refused.get(), 1);
    }

    #[test]
    fn the_refusal_says_when_to_come_back() {
        let status = at_capacity("guichet.v1.OnlineIntake");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status
                .metadata()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert!(status.message().contains("at capacity"));
    }
}
