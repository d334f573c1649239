//! The policy table for gRPC calls passed on: the facts a call is judged
//! on are in its message (a site, an appointment, a report, a prefecture
//! filter), so the gateway reads the message, looks the facts up, and only
//! then passes it on. The acting agent the token established is written
//! into the message's actor field (`booked_by`, `agent_id`, ...): what the
//! services record is who signed in, never what the client claimed.

use axum::body::{Body, Bytes};
use guichet_access::Facts;
use guichet_proto::v1 as pb;
use prost::Message;
use tonic::Status;

use crate::error::ApiError;
use crate::policy::Access;
use crate::state::AppState;

/// A unary call's message is small: anything bigger is not one of these.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

fn invalid(problem: &str) -> Status {
    Status::invalid_argument(problem)
}

/// The table's answer, as a gRPC status.
fn allow(access: &Access, facts: &Facts<'_>) -> Result<(), Status> {
    access.allow(facts).map(|_| ()).map_err(ApiError::into_grpc)
}

/// The one message of a unary call's body (gRPC's length-prefixed frame).
fn message_of(body: &[u8]) -> Result<&[u8], Status> {
    let (&flag, rest) = body
        .split_first()
        .ok_or_else(|| invalid("an empty request"))?;
    if flag != 0 {
        return Err(invalid(
            "compressed messages are not accepted at the gateway",
        ));
    }
    let len = rest
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| invalid("a truncated request"))?;
    rest.get(4..4 + len)
        .filter(|_| rest.len() == 4 + len)
        .ok_or_else(|| invalid("one message per call"))
}

fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + encoded.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&encoded);
    Bytes::from(out)
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|_| invalid("the message does not decode as the method's request"))
}

/// What judging needs beyond the message: the prefecture of a site, an
/// appointment, a report.
/// `None`: no such site. Nothing can be booked or filed there, so the call
/// goes on unjudged for the service to refuse it, naming what is wrong (the
/// policy layer refuses it should it ever succeed).
pub(crate) async fn site_prefecture(
    state: &AppState,
    site_id: &str,
) -> Result<Option<String>, Status> {
    let sites = state
        .pan
        .clone()
        .list_sites(pb::ListSitesRequest::default())
        .await?
        .into_inner()
        .sites;
    Ok(sites
        .into_iter()
        .find(|s| s.id == site_id)
        .map(|s| s.prefecture))
}

/// The call is about the appointment `id`: judged on its prefecture.
async fn allow_appointment(state: &AppState, access: &Access, id: &str) -> Result<(), Status> {
    let a = state
        .pan
        .clone()
        .get_appointment(pb::GetAppointmentRequest { id: id.into() })
        .await?
        .into_inner();
    allow(
        access,
        &Facts::none().appointment(&a.id).prefecture(&a.prefecture),
    )
}

/// The call is about the report `id`: judged on its prefecture.
async fn allow_report(state: &AppState, access: &Access, id: &str) -> Result<(), Status> {
    let r = state
        .ccc
        .clone()
        .get_report(pb::GetReportRequest { id: id.into() })
        .await?
        .into_inner();
    allow(
        access,
        &Facts::none().report(&r.id).prefecture(&r.prefecture),
    )
}

/// The call is about the site `id`: judged on its prefecture, or passed on
/// unjudged when there is no such site (see `site_prefecture`).
async fn allow_site(state: &AppState, access: &Access, id: &str) -> Result<(), Status> {
    match site_prefecture(state, id).await? {
        Some(prefecture) => allow(access, &Facts::none().prefecture(&prefecture)),
        None => Ok(()),
    }
}

/// A call judged: the body to pass on, and the keys to count a try
/// against should the answer be `NOT_FOUND` (a wrong birth date).
pub struct Judged {
    pub body: Body,
    pub tries: Option<Vec<String>>,
}

/// Judges the call `method` (`guichet.v1.Desk/Book`) on its message and
/// returns the body to pass on, with the acting agent written in.
pub async fn judge(
    state: &AppState,
    access: &Access,
    method: &str,
    body: Body,
) -> Result<Judged, Status> {
    let (service, name) = method.rsplit_once('/').unwrap_or((method, ""));
    let keyed =
        service == "guichet.v1.Postal" && matches!(name, "ConfirmEnvelope" | "RouteEnvelope");
    if !keyed && !matches!(service, "guichet.v1.Desk" | "guichet.v1.CallCentre") {
        // The mailroom's calls need no fact and name no agent: passed on
        // as they came (uploads stream).
        allow(access, &Facts::none())?;
        return Ok(Judged { body, tries: None });
    }
    let bytes = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .map_err(|_| invalid("the message is too large"))?;
    let m = message_of(&bytes)?;
    let acting = access.agent_uid().unwrap_or_default().to_string();
    let mut tries = None;
    let out = match (service, name) {
        ("guichet.v1.Desk", "UpsertSite") => {
            let site: pb::Site = decode(m)?;
            allow(access, &Facts::none().prefecture(&site.prefecture))?;
            frame(&site)
        }
        ("guichet.v1.Desk", "Book") => {
            let mut r: pb::BookRequest = decode(m)?;
            allow_site(state, access, &r.site_id).await?;
            r.booked_by = acting;
            frame(&r)
        }
        ("guichet.v1.Desk", "Move") => {
            let mut r: pb::MoveRequest = decode(m)?;
            allow_appointment(state, access, &r.id).await?;
            r.by = acting;
            frame(&r)
        }
        ("guichet.v1.Desk", "Cancel") => {
            let mut r: pb::CancelRequest = decode(m)?;
            allow_appointment(state, access, &r.id).await?;
            r.by = acting;
            frame(&r)
        }
        ("guichet.v1.Desk", "RecordAttendance") => {
            let mut r: pb::RecordAttendanceRequest = decode(m)?;
            allow_appointment(state, access, &r.id).await?;
            r.by = acting;
            frame(&r)
        }
        ("guichet.v1.Desk", "GetAppointment") => {
            let r: pb::GetAppointmentRequest = decode(m)?;
            allow_appointment(state, access, &r.id).await?;
            frame(&r)
        }
        ("guichet.v1.Desk", "ListAppointments") => {
            let r: pb::ListAppointmentsRequest = decode(m)?;
            match site_prefecture(state, &r.site_id).await? {
                Some(prefecture) => allow(access, &Facts::none().prefecture(&prefecture))?,
                None => return Err(Status::not_found("no such site")),
            }
            frame(&r)
        }
        ("guichet.v1.Desk", "FileAssisted") => {
            let mut r: pb::FileAssistedRequest = decode(m)?;
            allow_site(state, access, &r.site_id).await?;
            r.desk_agent_id = acting;
            frame(&r)
        }
        ("guichet.v1.CallCentre", "FileOnBehalf") => {
            let mut r: pb::FileOnBehalfRequest = decode(m)?;
            allow(access, &Facts::none())?;
            r.agent_id = acting;
            frame(&r)
        }
        ("guichet.v1.CallCentre", "OpenReport") => {
            let mut r: pb::OpenReportRequest = decode(m)?;
            allow(access, &Facts::none())?;
            r.agent_id = acting;
            frame(&r)
        }
        ("guichet.v1.CallCentre", "GetReport") => {
            let r: pb::GetReportRequest = decode(m)?;
            allow_report(state, access, &r.id).await?;
            frame(&r)
        }
        ("guichet.v1.CallCentre", "ListReports") => {
            let r: pb::ListReportsRequest = decode(m)?;
            // A prefecture's agents list their own: the filter is the fact.
            if r.prefecture.is_empty() {
                allow(access, &Facts::none())?;
            } else {
                allow(access, &Facts::none().prefecture(&r.prefecture))?;
            }
            frame(&r)
        }
        ("guichet.v1.CallCentre", "OfferAlternative") => {
            let mut r: pb::OfferAlternativeRequest = decode(m)?;
            allow_report(state, access, &r.id).await?;
            r.agent_id = acting;
            frame(&r)
        }
        ("guichet.v1.CallCentre", "RecordOutcome") => {
            let mut r: pb::RecordOutcomeRequest = decode(m)?;
            allow_report(state, access, &r.id).await?;
            r.agent_id = acting;
            frame(&r)
        }
        // The call centre's status look-up: wrong birth dates count per
        // file and per agent, as they do per file and address over REST.
        ("guichet.v1.CallCentre", "LookUpStatus") => {
            let r: pb::GetStatusRequest = decode(m)?;
            allow(access, &Facts::none())?;
            let keys = vec![
                format!("reference:{}", r.reference),
                format!("agent:{acting}"),
            ];
            if state.status_tries.wait(&keys, state.clock.now()).is_some() {
                return Err(Status::resource_exhausted(
                    "too many wrong birth dates for this file or by this agent; try again later",
                ));
            }
            tries = Some(keys);
            frame(&r)
        }
        // The operator keying is the one signed in (two operators vouch
        // for a doubtful postmark: neither may name the other).
        ("guichet.v1.Postal", "ConfirmEnvelope") => {
            let mut r: pb::ConfirmEnvelopeRequest = decode(m)?;
            allow(access, &Facts::none())?;
            r.operator_id = acting;
            frame(&r)
        }
        ("guichet.v1.Postal", "RouteEnvelope") => {
            let mut r: pb::RouteEnvelopeRequest = decode(m)?;
            allow(access, &Facts::none())?;
            r.operator_id = acting;
            frame(&r)
        }
        // Public calls (sites, slots) and the status look-up: no fact.
        _ => {
            allow(access, &Facts::none())?;
            bytes
        }
    };
    Ok(Judged {
        body: Body::from(out),
        tries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uncompressed_message_per_call() {
        let framed = frame(&pb::GetReportRequest { id: "r1".into() });
        let m = message_of(&framed).unwrap();
        assert_eq!(decode::<pb::GetReportRequest>(m).unwrap().id, "r1");
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert!(message_of(&compressed).is_err());
        let mut two = framed.to_vec();
        two.extend_from_slice(&framed);
        assert!(message_of(&two).is_err());
        assert!(message_of(&framed[..3]).is_err());
        assert!(message_of(&[]).is_err());
    }
}
