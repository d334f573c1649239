//! A service's work in flight, bounded, the bound adapting to the latency
//! of the answers (`AdaptiveLimit`). Past the bound a call is refused at
//! once with `UNAVAILABLE` and a `retry-after` of one second, instead of
//! waiting in line: under overload the calls accepted keep their latency,
//! and a client (or the gateway, which turns it into 503 with `Retry-After`)
//! knows to come back. Health and reflection always answer, so an
//! orchestrator never takes a busy service for a dead one.

use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;

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

/// The fewest calls a service or the gateway takes at once, however slow
/// the answers: a machine that cannot serve these within the target is not
/// helped by refusing more.
pub const MIN_IN_FLIGHT: usize = 8;
/// The bound a service or the gateway starts at, before any answer is seen.
pub const FIRST_IN_FLIGHT: usize = 64;

/// The bound of `service` for at most `ceiling` requests at once, adapting
/// to `target`, shown in the process's `guichet_in_flight_limit{service}`.
pub fn adaptive(
    service: &'static str,
    (ceiling, target): (usize, std::time::Duration),
    metrics: &crate::Metrics,
) -> Arc<AdaptiveLimit> {
    let shown = metrics
        .in_flight_limit
        .get_or_create(&crate::metrics::ServiceLabels { service })
        .clone();
    Arc::new(AdaptiveLimit::new(
        (MIN_IN_FLIGHT, FIRST_IN_FLIGHT, ceiling),
        target,
        shown,
    ))
}

/// Whether the time to answer a gRPC call to `path` measures the machine:
/// not for the mailroom's, whose scanned pages take the link's time.
pub fn timed_call(path: &str) -> bool {
    !path.starts_with("/guichet.v1.Postal/")
}

/// Layer of a gRPC server: calls in flight under an adaptive bound.
#[derive(Clone)]
pub struct CapacityLayer {
    limit: Arc<AdaptiveLimit>,
    refused: Counter,
    service: &'static str,
}

impl CapacityLayer {
    /// `refused` counts the calls turned away (`guichet_requests_shed_total`).
    pub fn new(limit: Arc<AdaptiveLimit>, service: &'static str, refused: Counter) -> Self {
        Self {
            limit,
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
        let Some(place) = self.layer.limit.try_acquire() else {
            self.layer.refused.inc();
            let refusal = at_capacity(self.layer.service).into_http::<tonic::body::Body>();
            return Box::pin(std::future::ready(Ok(refusal)));
        };
        let timed = timed_call(request.uri().path());
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await;
            // Unary calls: the answer is whole once it is here.
            match &response {
                Ok(_) if timed => place.answered(),
                _ => drop(place),
            }
            response
        })
    }
}

/// Longest the adaptive bound waits before it judges the latencies it saw.
const WINDOW: std::time::Duration = std::time::Duration::from_millis(100);
/// Fewest answers a window needs before the bound moves on them.
const WINDOW_SAMPLES: u32 = 8;
/// The share of a window's answers allowed over the target (its 90th
/// percentile is what the target bounds).
const SLOW_SHARE: f64 = 0.1;

/// A bound on the work in flight that follows the latency of the answers:
/// it shrinks while more than a tenth of them take longer than `target`,
/// and grows back while it is the bound that holds work back and the
/// answers are fast. A fixed bound large
/// enough for a quiet machine lets an overloaded one queue requests into
/// seconds; one small enough for the worst moment wastes the good ones.
/// By Little's law the work in flight a machine serves within `target` is
/// its rate times `target`, which is what this finds.
pub struct AdaptiveLimit {
    floor: usize,
    ceiling: usize,
    target: std::time::Duration,
    state: std::sync::Mutex<LimitState>,
    /// The bound, for operators (`guichet_in_flight_limit`).
    shown: prometheus_client::metrics::gauge::Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct LimitState {
    limit: f64,
    in_flight: usize,
    window: Window,
}

/// What one window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    started: std::time::Instant,
    answers: u32,
    slow: u32,
    /// Whether a request was refused (or the bound was reached) in it.
    bound_held: bool,
}

impl Window {
    fn new(started: std::time::Instant) -> Self {
        Self {
            started,
            answers: 0,
            slow: 0,
            bound_held: false,
        }
    }
}

/// The bound after a window: down by a fifth when too many answers were
/// slow, up by a tenth (and one) when the bound held work back and the
/// answers were fast, else where it was; always within `floor..=ceiling`.
fn next_limit(limit: f64, window: &Window, floor: usize, ceiling: usize) -> f64 {
    let next = if f64::from(window.slow) > SLOW_SHARE * f64::from(window.answers) {
        limit * 0.8
    } else if window.bound_held {
        limit * 1.1 + 1.0
    } else {
        limit
    };
    next.clamp(floor as f64, ceiling as f64)
}

impl AdaptiveLimit {
    /// Between `floor` and `ceiling` requests at once, starting at `start`;
    /// `shown` is set to the bound each time it moves.
    pub fn new(
        (floor, start, ceiling): (usize, usize, usize),
        target: std::time::Duration,
        shown: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        let ceiling = ceiling.max(1);
        let floor = floor.clamp(1, ceiling);
        let start = start.clamp(floor, ceiling);
        shown.set(start as i64);
        Self {
            floor,
            ceiling,
            target,
            state: std::sync::Mutex::new(LimitState {
                limit: start as f64,
                in_flight: 0,
                window: Window::new(std::time::Instant::now()),
            }),
            shown,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LimitState> {
        // A panic while holding it leaves only counts behind: keep them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one request, or `None` when the bound is reached.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Place> {
        let mut state = self.state();
        if state.in_flight as f64 >= state.limit.floor() {
            state.window.bound_held = true;
            return None;
        }
        state.in_flight += 1;
        Some(Place {
            limit: self.clone(),
            started: std::time::Instant::now(),
            measured: false,
        })
    }

    /// The bound now (`guichet_in_flight_limit`).
    pub fn current(&self) -> usize {
        self.state().limit as usize
    }

    fn release(&self, answer: Option<std::time::Duration>) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        let Some(latency) = answer else {
            return;
        };
        state.window.answers += 1;
        if latency > self.target {
            state.window.slow += 1;
        }
        let now = std::time::Instant::now();
        if state.window.answers >= WINDOW_SAMPLES && now - state.window.started >= WINDOW {
            state.limit = next_limit(state.limit, &state.window, self.floor, self.ceiling);
            state.window = Window::new(now);
            self.shown.set(state.limit as i64);
        }
    }
}

/// One request's place under an [`AdaptiveLimit`], given back when dropped.
pub struct Place {
    limit: Arc<AdaptiveLimit>,
    started: std::time::Instant,
    measured: bool,
}

impl Place {
    /// Gives the place back with the request's answer time counted. A
    /// request whose time says nothing about the machine (a large upload,
    /// which takes the client's link's time) is simply dropped instead.
    ///
    /// A refusal from a full service behind is counted as the quick answer
    /// it is: that service's own bound deals with its load. Counted as slow,
    /// it made a dependency's outage (a database down, answered 503 at
    /// once) shrink every bound in front to its floor, which then refused
    /// the people coming back once the database was up.
    pub fn answered(mut self) {
        self.measured = true;
        self.limit.release(Some(self.started.elapsed()));
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.measured {
            self.limit.release(None);
        }
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
        let release = Arc::new(tokio::sync::Semaphore::new(0));
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
        let limit = Arc::new(AdaptiveLimit::new(
            (1, 1, 1),
            std::time::Duration::from_secs(1),
            Default::default(),
        ));
        let mut service =
            CapacityLayer::new(limit, "guichet.v1.Test", refused.clone()).layer(inner);

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
    fn the_adaptive_bound_follows_the_share_of_slow_answers() {
        let window = |answers, slow, bound_held| Window {
            started: std::time::Instant::now(),
            answers,
            slow,
            bound_held,
        };
        // (bound, answers, slow, bound held back work) -> next bound,
        // with floor 4 and ceiling 100.
        for (limit, answers, slow, held, next) in [
            (50.0, 20, 0, false, 50.0), // fast, not full: stays
            (50.0, 20, 2, true, 56.0),  // a tenth slow is still fast: grows
            (50.0, 20, 3, false, 40.0), // over a tenth slow: shrinks by a fifth
            (50.0, 20, 20, true, 40.0), // slow and full: shrinks all the same
            (4.5, 20, 20, true, 4.0),   // never under the floor
            (95.0, 20, 0, true, 100.0), // never over the ceiling
            (10.0, 8, 1, true, 8.0),    // one of eight is over a tenth: shrinks
        ] {
            let got = next_limit(limit, &window(answers, slow, held), 4, 100);
            assert!(
                (got - next).abs() < 1e-9,
                "{limit} with {slow} slow of {answers}, held {held}: {got}, not {next}"
            );
        }
    }

    #[test]
    fn the_adaptive_bound_refuses_past_it_and_shrinks_on_slow_answers() {
        let shown = prometheus_client::metrics::gauge::Gauge::default();
        let limit = Arc::new(AdaptiveLimit::new(
            (2, 4, 64),
            std::time::Duration::from_millis(1),
            shown.clone(),
        ));
        assert_eq!(shown.get(), 4);
        let places: Vec<_> = (0..4)
            .map(|_| limit.try_acquire().expect("a place"))
            .collect();
        assert!(limit.try_acquire().is_none(), "the fifth is refused");
        // A dropped place (an upload, not measured) frees its place only.
        drop(places);
        assert_eq!(limit.current(), 4);
        // Answers slower than the target, a window's worth: the bound shrinks.
        std::thread::sleep(WINDOW);
        for _ in 0..WINDOW_SAMPLES {
            let place = limit.try_acquire().expect("a place");
            std::thread::sleep(std::time::Duration::from_millis(2));
            place.answered();
        }
        assert_eq!(limit.current(), 3, "4 × 0.8");
        assert_eq!(shown.get(), 3, "shown to operators");
        // Fast answers while the bound turned work away: it grows.
        let fast = Arc::new(AdaptiveLimit::new(
            (1, 4, 64),
            std::time::Duration::from_secs(60),
            Default::default(),
        ));
        let places: Vec<_> = (0..4)
            .map(|_| fast.try_acquire().expect("a place"))
            .collect();
        assert!(fast.try_acquire().is_none(), "the fifth is refused");
        std::thread::sleep(WINDOW);
        for place in places {
            place.answered();
        }
        for _ in 4..WINDOW_SAMPLES {
            fast.try_acquire().expect("a place").answered();
        }
        assert_eq!(fast.current(), 5, "4 × 1.1 + 1");
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
