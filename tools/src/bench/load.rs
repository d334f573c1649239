//! The load generator: distinct filings (one applicant each, so none is
//! linked to another), prepared before the clock starts, then sent through
//! the gateway (JSON) or straight to intake-web (gRPC) at a fixed offered
//! rate or as fast as `concurrency` requests in flight allow.
//!
//! Intake acknowledgement latency is measured here, per request. At a fixed
//! rate it runs from the moment the request was *due*, not the moment it was
//! sent: if the mesh falls behind and requests wait for a free slot, that
//! wait counts (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use guichet_dossier::filing::RawProvenance;
use guichet_dossier::{Dossier, Filing, RawFiling, Reference};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::online_intake_client::OnlineIntakeClient;
use prost::Message;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::mix::Route;

/// The example filings of `examples/filings/`, taken in turn.
const EXAMPLES: [&str; 6] = [
    include_str!("../../../examples/filings/renewal-employee.json"),
    include_str!("../../../examples/filings/change-of-status-student-to-employee.json"),
    include_str!("../../../examples/filings/duplicate-resident-card.json"),
    include_str!("../../../examples/filings/first-application-student.json"),
    include_str!("../../../examples/filings/regularisation-private-family-life.json"),
    include_str!("../../../examples/filings/renewal-international-protection.json"),
];

/// One filing ready to send.
pub enum Prepared {
    Web {
        idempotency_key: String,
        body: Vec<u8>,
    },
    Grpc(Box<pb::SubmitFilingRequest>),
}

/// The `i`-th filing of a run named `run`: an example with its own
/// applicant (family name and foreigner number) and idempotency key.
fn filing_json(run: &str, i: usize) -> serde_json::Value {
    let mut json: serde_json::Value =
        serde_json::from_str(EXAMPLES[i % EXAMPLES.len()]).expect("the examples are valid JSON");
    let applicant = &mut json["applicant"];
    let family = applicant["family_name"]
        .as_str()
        .unwrap_or("Bench")
        .to_string();
    applicant["family_name"] = serde_json::Value::String(format!("{family} {}", letters(i)));
    applicant["foreigner_number"] =
        serde_json::Value::String(format!("{:010}", 9_000_000_000u64 + i as u64));
    json["idempotency_key"] = serde_json::Value::String(format!("{run}-{i}"));
    json
}

/// `i` in base 26, as letters: names are letters, and every one differs.
fn letters(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (i % 26) as u8);
        i /= 26;
        if i == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII letters")
}

/// Parses a filing the way the gateway does before calling intake-web.
fn parse(json: serde_json::Value, today: chrono::NaiveDate) -> anyhow::Result<Filing> {
    let raw: RawFiling = serde_json::from_value(json).context("an example filing")?;
    Filing::parse(&raw, &RawProvenance::Web { account_id: None }, today)
        .map_err(|v| anyhow::anyhow!("an example filing is refused: {v}"))
}

/// The filings of one phase, each for the route the mix gives it. `first`
/// numbers the applicants: phases take distinct ranges, so a later phase
/// never files again for an earlier phase's applicants (which instruction
/// would rightly link as second filings of the same request).
pub fn prepare(
    run: &str,
    routes: &[Route],
    first: usize,
    today: chrono::NaiveDate,
) -> anyhow::Result<Vec<Prepared>> {
    routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let json = filing_json(run, first + i);
            Ok(match route {
                Route::Web => Prepared::Web {
                    idempotency_key: format!("{run}-{}", first + i),
                    body: serde_json::to_vec(&json)?,
                },
                Route::Grpc => Prepared::Grpc(Box::new(pb::SubmitFilingRequest {
                    filing: Some(convert::filing_to_pb(&parse(json, today)?)),
                    raw_json: String::new(),
                })),
            })
        })
        .collect()
}

/// The size of a dossier as intake publishes it, averaged over the examples:
/// the bare pipeline sends messages of this size.
pub fn dossier_message_bytes(today: chrono::NaiveDate) -> anyhow::Result<usize> {
    let now = chrono::Utc::now();
    let mut total = 0;
    for i in 0..EXAMPLES.len() {
        let filing = parse(filing_json("size", i), today)?;
        let reference = Reference::generate(filing.provenance.channel(), 2026, &mut rand::rng());
        let dossier = Dossier::new(reference, filing, now, now);
        total += convert::dossier_to_pb(&dossier).encoded_len();
    }
    Ok(total / EXAMPLES.len())
}

/// What happened to one request.
pub struct Outcome {
    pub route: Route,
    pub latency: Duration,
    /// The dossier reference of the receipt; `None` if the filing failed.
    pub reference: Option<String>,
    pub error: Option<String>,
    /// Refused at once to be tried again later (503 with `Retry-After`, or
    /// gRPC `UNAVAILABLE` with `retry-after`): the mesh was full.
    pub shed: bool,
}

/// Why a filing got no receipt.
struct Failure {
    shed: bool,
    message: String,
}

impl Failure {
    fn other(message: impl ToString) -> Self {
        Self {
            shed: false,
            message: message.to_string(),
        }
    }
}

/// Where the load goes.
#[derive(Clone)]
pub struct Targets {
    pub gateway_url: String,
    pub http: reqwest::Client,
    pub intake: OnlineIntakeClient<tonic::transport::Channel>,
}

impl Targets {
    pub async fn connect(gateway_url: &str, intake_web_url: &str) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(intake_web_url.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to intake-web at {intake_web_url}"))?;
        Ok(Self {
            gateway_url: gateway_url.to_string(),
            http: reqwest::Client::builder().tcp_nodelay(true).build()?,
            intake: OnlineIntakeClient::new(channel),
        })
    }

    async fn send(&self, filing: Prepared) -> (Route, Result<String, Failure>) {
        match filing {
            Prepared::Web {
                idempotency_key,
                body,
            } => (Route::Web, self.send_web(idempotency_key, body).await),
            Prepared::Grpc(request) => {
                let mut client = self.intake.clone();
                let answer = client
                    .submit_filing(*request)
                    .await
                    .map_err(|s| Failure {
                        shed: s.code() == tonic::Code::Unavailable
                            && s.metadata().contains_key("retry-after"),
                        message: format!("{:?}: {}", s.code(), s.message()),
                    })
                    .and_then(|r| {
                        r.into_inner()
                            .receipt
                            .map(|r| r.reference)
                            .ok_or_else(|| Failure::other("no receipt"))
                    });
                (Route::Grpc, answer)
            }
        }
    }

    async fn send_web(&self, idempotency_key: String, body: Vec<u8>) -> Result<String, Failure> {
        #[derive(serde::Deserialize)]
        struct Receipt {
            reference: String,
        }
        let answer = self
            .http
            .post(format!("{}/api/v1/dossiers", self.gateway_url))
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .body(body)
            .send()
            .await
            .map_err(Failure::other)?;
        let status = answer.status();
        let shed = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && answer.headers().contains_key(reqwest::header::RETRY_AFTER);
        let bytes = answer.bytes().await.map_err(Failure::other)?;
        if status != reqwest::StatusCode::CREATED {
            return Err(Failure {
                shed,
                message: format!("{status}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        serde_json::from_slice::<Receipt>(&bytes)
            .map(|r| r.reference)
            .map_err(Failure::other)
    }
}

/// What one phase of load gave.
pub struct Driven {
    pub outcomes: Vec<Outcome>,
    /// From the first request due to the last answer.
    pub elapsed: Duration,
}

/// Sends every filing: at `rate` per second (0: as fast as possible), with
/// at most `concurrency` requests in flight.
pub async fn drive(
    targets: &Targets,
    filings: Vec<Prepared>,
    rate: f64,
    concurrency: usize,
) -> Driven {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    let started = Instant::now();
    for (i, filing) in filings.into_iter().enumerate() {
        let due = if rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            Some(due)
        } else {
            None
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let targets = targets.clone();
        in_flight.spawn(async move {
            let sent = Instant::now();
            let (route, answer) = targets.send(filing).await;
            let latency = due.map_or_else(|| sent.elapsed(), |d| d.elapsed());
            drop(slot);
            let (reference, error, shed) = match answer {
                Ok(r) => (Some(r), None, false),
                Err(e) => (None, Some(e.message), e.shed),
            };
            Outcome {
                route,
                latency,
                reference,
                error,
                shed,
            }
        });
    }
    let mut outcomes = Vec::with_capacity(in_flight.len());
    while let Some(done) = in_flight.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    Driven {
        outcomes,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_accepted_and_applicants_differ() {
        let today = chrono::Utc::now().date_naive();
        let a = parse(filing_json("t", 0), today).expect("accepted");
        let b = parse(filing_json("t", 6), today).expect("accepted");
        assert_ne!(a.applicant.person_key(), b.applicant.person_key());
        for i in 0..EXAMPLES.len() {
            parse(filing_json("t", i), today).expect("every example is accepted");
        }
        assert_eq!(letters(0), "a");
        assert_eq!(letters(27), "bb");
        assert!(dossier_message_bytes(today).expect("sized") > 200);
    }
}
