//! Every text in every gRPC request is checked before a service sees it, by
//! the rules of `guichet_dossier::text`: no NUL or control characters, no
//! bidirectional overrides, no invisible characters in printed names,
//! bounded lengths. A request that breaks them gets `INVALID_ARGUMENT` with
//! a field violation per field (`person.family_name`, `fields.given_names`,
//! `postmark_dates[2]`), the same answer REST callers get from the gateway.
//!
//! It is one layer under every service, not a check in each method, so a
//! method added later is covered too. The request is decoded against its
//! descriptor (the same descriptor set reflection serves), walked, and then
//! handed on as it came.

use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use guichet_dossier::{Violations, text};
use http_body_util::{BodyExt, Full, Limited};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, Value};

use crate::ServiceError;

/// tonic's own default: what a service decodes unless it says otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(guichet_proto::FILE_DESCRIPTOR_SET).ok());

/// The request message of `/package.Service/Method`, if it is one of ours.
fn input_of(path: &str) -> Option<MessageDescriptor> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    let service = POOL.as_ref()?.get_service_by_name(service)?;
    let method = service.methods().find(|m| m.name() == method)?;
    Some(method.input())
}

/// Every problem with the texts of `message`, each named by its path.
pub fn violations(message: &DynamicMessage) -> Violations {
    let mut v = Violations::new();
    walk_message(&mut v, "", message);
    v
}

fn walk_message(v: &mut Violations, prefix: &str, message: &DynamicMessage) {
    for (field, value) in message.fields() {
        let path = if prefix.is_empty() {
            field.name().to_string()
        } else {
            format!("{prefix}.{}", field.name())
        };
        walk_value(v, &path, value);
    }
}

fn walk_value(v: &mut Violations, path: &str, value: &Value) {
    match value {
        Value::String(s) => {
            text::check(v, path, s);
        }
        Value::Message(m) => walk_message(v, path, m),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), item);
            }
        }
        Value::Map(map) => {
            // Sorted, so the violations come in the same order every time.
            let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, value) in entries {
                let key = match key {
                    MapKey::String(k) => {
                        if !text::check_as(v, path, k, text::Kind::Token) {
                            continue;
                        }
                        k.clone()
                    }
                    other => format!("{other:?}"),
                };
                walk_value(v, &format!("{path}.{key}"), value);
            }
        }
        _ => {}
    }
}

/// The layer that checks every request of a gRPC server.
#[derive(Debug, Clone, Copy)]
pub struct TextCheckLayer {
    max_message_bytes: usize,
}

impl TextCheckLayer {
    /// `max_message_bytes`: the most the service decodes; larger requests
    /// are refused here as tonic would, without being held in memory.
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl<S> tower::Layer<S> for TextCheckLayer {
    type Service = TextCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TextCheck {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TextCheck<S> {
    inner: S,
    max_message_bytes: usize,
}

type Request = http::Request<tonic::body::Body>;
type Response = http::Response<tonic::body::Body>;

fn refuse(status: tonic::Status) -> Response {
    status.into_http::<tonic::body::Body>()
}

impl<S> tower::Service<Request> for TextCheck<S>
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
        let Some(input) = input_of(request.uri().path()) else {
            // Health, reflection, or an unknown method that tonic answers.
            return Box::pin(inner.call(request));
        };
        let limit = self.max_message_bytes.saturating_add(5);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(refuse(tonic::Status::resource_exhausted(
                        "the request is larger than this service accepts",
                    )));
                }
                Err(e) => {
                    return Ok(refuse(tonic::Status::cancelled(format!(
                        "the request could not be read: {e}"
                    ))));
                }
            };
            if let Some(violations) = check_frame(&input, &bytes) {
                return Ok(refuse(ServiceError::invalid(violations).into()));
            }
            let body = tonic::body::Body::new(Full::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

/// The violations in one unary gRPC frame (flag, length, message), if any.
/// A frame this cannot read (compressed, cut short) is left for tonic to refuse.
fn check_frame(input: &MessageDescriptor, frame: &Bytes) -> Option<Violations> {
    if frame.len() < 5 || frame[0] != 0 {
        return None;
    }
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if frame.len() != 5 + declared {
        return None;
    }
    let message = match DynamicMessage::decode(input.clone(), frame.slice(5..)) {
        Ok(m) => m,
        Err(e) => {
            return Some(Violations::one(
                "request",
                format!("is not a valid {}: {e}", input.full_name()),
            ));
        }
    };
    let v = violations(&message);
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guichet_proto::v1 as pb;

    fn check(path: &str, message: &impl prost::Message) -> Vec<(String, String)> {
        let input = input_of(path).expect("a guichet method");
        let encoded = message.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        frame.extend_from_slice(&encoded);
        check_frame(&input, &Bytes::from(frame))
            .map(|v| v.into_vec())
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.field, f.problem))
            .collect()
    }

    #[test]
    fn every_text_of_a_request_is_checked_and_named() {
        let fine = pb::BookRequest {
            site_id: "59-lille".into(),
            person: Some(pb::Person {
                family_name: "Benali".into(),
                given_names: "Samira Nour".into(),
                phone: "+33612345678".into(),
                email: String::new(),
            }),
            idempotency_key: "online:abc".into(),
            ..Default::default()
        };
        assert!(check("/guichet.v1.Desk/Book", &fine).is_empty());
        let bad = pb::BookRequest {
            site_id: "59\0".into(),
            person: Some(pb::Person {
                family_name: "Ben\u{202E}ali".into(),
                given_names: "Sam\u{200B}ira".into(),
                ..Default::default()
            }),
            ..fine
        };
        assert_eq!(
            check("/guichet.v1.Desk/Book", &bad),
            [
                ("site_id".into(), "contains a NUL byte".into()),
                (
                    "person.family_name".into(),
                    "contains bidirectional override characters".into()
                ),
                (
                    "person.given_names".into(),
                    "contains invisible characters (zero-width or formatting)".into()
                ),
            ]
        );
    }

    #[test]
    fn lists_and_maps_are_named_by_index_and_key() {
        let upload = pb::UploadBatchRequest {
            station_id: "station-1".into(),
            postmark_dates: vec!["2026-01-02".into(), "2026-01-0\0".into()],
            files: vec![pb::ScanFile {
                media_type: "image/png".into(),
                // Bytes are not text: a NUL there is fine.
                content: vec![0, 1, 2],
                filename: "a\u{1}.png".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            check("/guichet.v1.Postal/UploadBatch", &upload),
            [
                ("postmark_dates[1]".into(), "contains a NUL byte".into()),
                (
                    "files[0].filename".into(),
                    "contains control characters".into()
                ),
            ]
        );
        let confirm = pb::ConfirmEnvelopeRequest {
            envelope_id: "e1".into(),
            operator_id: "op".into(),
            fields: [
                ("family_name".to_string(), "Ben\u{FEFF}ali".to_string()),
                ("k\0".to_string(), "v".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let found = check("/guichet.v1.Postal/ConfirmEnvelope", &confirm);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&(
            "fields.family_name".into(),
            "contains invisible characters (zero-width or formatting)".into()
        )));
        assert!(found.contains(&("fields".into(), "contains a NUL byte".into())));
    }

    #[test]
    fn free_text_may_hold_line_breaks() {
        let r = pb::WithdrawRequest {
            actor: "agent-7".into(),
            reference: "W26-AAAA-AAAA-A".into(),
            reason: "Lettre du 3 mars :\n« je retire ma demande »".into(),
        };
        assert!(check("/guichet.v1.InstructionDesk/Withdraw", &r).is_empty());
        let r = pb::WithdrawRequest {
            reason: "x\0".into(),
            ..r
        };
        assert_eq!(
            check("/guichet.v1.InstructionDesk/Withdraw", &r),
            [("reason".into(), "contains a NUL byte".into())]
        );
    }

    #[test]
    fn a_frame_that_is_not_the_message_is_refused_by_name() {
        let input = input_of("/guichet.v1.Desk/Book").expect("a guichet method");
        let frame = Bytes::from_static(&[0, 0, 0, 0, 2, 0x0a, 0xff]);
        let v = check_frame(&input, &frame).expect("refused");
        assert_eq!(v.iter().next().map(|f| f.field.as_str()), Some("request"));
        assert!(input_of("/grpc.health.v1.Health/Check").is_none());
    }
}
