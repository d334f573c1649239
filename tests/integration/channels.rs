//! The call-centre and desk channels, end to end through the gateway's gRPC
//! and REST: filings on behalf and at the desk join the one queue with web
//! and postal filings, by legal filing date; a slot never takes more people
//! than it has places; a report nobody answers is escalated on the clock.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{AuthChannel as Channel, PREFECTURE_AGENT};
use chrono::{Datelike, Days, NaiveDate, Utc};
use common::{App, Backend, ShiftedClock, TestEnv, eventually, example};
use guichet_proto::v1 as pb;
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn person(name: &str) -> Value {
    let mut body = example("renewal-employee.json");
    body["applicant"]["family_name"] = json!(name);
    body
}

/// The filing as a channel's software sends it over gRPC.
pub(crate) fn wire_filing(body: &Value) -> pb::Filing {
    let raw: guichet_dossier::RawFiling = serde_json::from_value(body.clone()).unwrap();
    let mut raw = raw;
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let filing = guichet_dossier::Filing::parse(
        &raw,
        &guichet_dossier::filing::RawProvenance::Web { account_id: None },
        guichet_dossier::calendar::paris_date(Utc::now()),
    )
    .unwrap();
    guichet_proto::convert::filing_to_pb(&filing)
}

/// A prefecture site open on weekdays, 08:30-12:00 and 13:30-16:00.
pub(crate) fn lille(places: u32, for_reports: u32) -> pb::Site {
    pb::Site {
        id: "59-lille".into(),
        name: "Préfecture du Nord, Lille".into(),
        prefecture: "59".into(),
        kind: pb::SiteKind::Prefecture as i32,
        address: None,
        opening_hours: (1..=5)
            .flat_map(|d| {
                [
                    pb::OpeningHours {
                        weekday: d,
                        opens: "08:30".into(),
                        closes: "12:00".into(),
                    },
                    pb::OpeningHours {
                        weekday: d,
                        opens: "13:30".into(),
                        closes: "16:00".into(),
                    },
                ]
            })
            .collect(),
        desks: places,
        slot_minutes: 30,
        places_per_slot: places,
        places_for_reports: for_reports,
    }
}

/// The same hours at the sub-prefecture of Arras, in the Pas-de-Calais (62).
fn arras(places: u32, for_reports: u32) -> pb::Site {
    pb::Site {
        id: "62-arras".into(),
        name: "Préfecture du Pas-de-Calais, Arras".into(),
        prefecture: "62".into(),
        ..lille(places, for_reports)
    }
}

/// A home address: street, postal code, city.
type Address = (&'static str, &'static str, &'static str);
const LILLE_ADDRESS: Address = ("3 place du Marché", "59000", "Lille");
const ARRAS_ADDRESS: Address = ("12 rue Gambetta", "62000", "Arras");
/// A postal code alone: enough to know the prefecture, not to post a kit.
const POSTAL_CODE_ONLY: Address = ("", "59000", "");

/// A report as the call-centre agent opens it; `key` is its idempotency key.
fn report_request(key: &str, (line1, postal_code, city): Address) -> pb::OpenReportRequest {
    pb::OpenReportRequest {
        category: pb::ReportCategory::AppointmentImpossible as i32,
        what_was_tried: "no slot offered online for six weeks".into(),
        family_name: "Haidari".into(),
        given_names: "Ahmad".into(),
        contact: Some(pb::Contact {
            email: "a.haidari@example.org".into(),
            phone: "07 00 00 00 01".into(),
            address: Some(pb::PostalAddress {
                line1: line1.into(),
                line2: String::new(),
                postal_code: postal_code.into(),
                city: city.into(),
                country: "FR".into(),
            }),
            answer_channel: pb::AnswerChannel::Sms as i32,
            language: String::new(),
        }),
        procedure: pb::Procedure::Renewal as i32,
        agent_id: "ccc-agent-3".into(),
        call_id: format!("call-{key}"),
        idempotency_key: key.into(),
    }
}

/// The call centre and the desk, through the gateway's gRPC.
async fn ccc_and_desk(app: &App) -> (CallCentreClient<Channel>, DeskClient<Channel>) {
    let channel = app.grpc_as(PREFECTURE_AGENT).await;
    (
        CallCentreClient::new(channel.clone()),
        DeskClient::new(channel),
    )
}

/// A report opened by the call centre (`report_request`).
async fn open_report(
    ccc: &mut CallCentreClient<Channel>,
    key: &str,
    address: Address,
) -> pb::Report {
    ccc.open_report(report_request(key, address))
        .await
        .unwrap()
        .into_inner()
}

/// A phone booking at `site` by a prefecture agent, for `report_id` ("" for none).
fn booking(site: &str, at: chrono::DateTime<Utc>, report_id: &str, key: &str) -> pb::BookRequest {
    pb::BookRequest {
        site_id: site.into(),
        starts_at: Some(guichet_proto::convert::timestamp_to_pb(at)),
        person: Some(pb::Person {
            family_name: "Haidari".into(),
            given_names: "Ahmad".into(),
            phone: "07 00 00 00 01".into(),
            email: String::new(),
        }),
        route: pb::BookingRoute::Phone as i32,
        booked_by: "pref-agent".into(),
        report_id: report_id.into(),
        idempotency_key: key.into(),
    }
}

fn offer_appointment(report_id: &str, appointment_id: &str) -> pb::OfferAlternativeRequest {
    pb::OfferAlternativeRequest {
        id: report_id.into(),
        kind: pb::AlternativeKind::PanAppointment as i32,
        appointment_id: appointment_id.into(),
        kit_sent_to: None,
        agent_id: "pref-59".into(),
    }
}

/// The slot of `site` that starts `at`, as the desk lists it.
async fn slot_at(
    desk: &mut DeskClient<Channel>,
    site: &str,
    at: chrono::DateTime<Utc>,
) -> pb::Slot {
    let day = guichet_dossier::desk::to_local(at).date();
    desk.list_slots(pb::ListSlotsRequest {
        site_id: site.into(),
        date: Some(guichet_proto::convert::date_to_pb(day)),
    })
    .await
    .unwrap()
    .into_inner()
    .slots
    .into_iter()
    .find(|s| {
        s.starts_at
            .as_ref()
            .and_then(guichet_proto::convert::timestamp_from_pb)
            == Some(at)
    })
    .unwrap_or_else(|| panic!("no slot at {at} in {site}"))
}

/// `POST /api/v1/agent/reports/{id}/alternative`: its status and body.
async fn offer_by_rest(app: &App, report_id: &str, body: Value) -> (u16, Value) {
    let path = format!("/api/v1/agent/reports/{report_id}/alternative");
    let r = app.agent_post("pref-59", &path, body).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `POST /api/v1/appointments` naming a report: its status and body.
async fn book_by_rest(
    app: &App,
    site: &str,
    at: chrono::DateTime<Utc>,
    report_id: &str,
    key: &str,
) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/appointments", app.base))
        .header("Idempotency-Key", key)
        .json(&json!({
            "site_id": site,
            "starts_at": at.to_rfc3339(),
            "person": {"family_name": "Haidari", "email": "a.haidari@example.org"},
            "report_id": report_id,
        }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// 09:00 (Paris) on the first working day after tomorrow.
fn next_slot() -> chrono::DateTime<Utc> {
    let mut day = guichet_dossier::calendar::paris_date(Utc::now()) + Days::new(2);
    while !guichet_dossier::calendar::is_working_day(day, "59") {
        day = day + Days::new(1);
    }
    guichet_dossier::desk::from_local(day.and_hms_opt(9, 0, 0).unwrap()).unwrap()
}

async fn queue_references(app: &App) -> Vec<(String, String)> {
    let r: Vec<Value> = app
        .as_agent(
            reqwest::Method::GET,
            "instructor-59",
            "/api/v1/queue?prefecture=59",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r.iter()
        .map(|e| {
            (
                e["reference"].as_str().unwrap().to_string(),
                e["channel"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

on_both_backends!(filings_on_behalf_and_at_the_desk_sort_with_web_filings_by_legal_filing_date);
async fn filings_on_behalf_and_at_the_desk_sort_with_web_filings_by_legal_filing_date(
    backend: Backend,
) {
    let (env, app) = common::mesh_on(backend).await;
    four_channels_sort_by_legal_filing_date(&app).await;
    common::stop(app, env).await;
}

/// One filing on each channel, in the queue by legal filing date; also run
/// with each service on the broker as its own user (`bus_users`).
pub async fn four_channels_sort_by_legal_filing_date(app: &App) {
    let (mut ccc, mut desk) = ccc_and_desk(app).await;
    desk.upsert_site(lille(4, 1)).await.unwrap();

    // Filed in this order: call centre, web, desk; and a letter postmarked
    // three days ago that is scanned last.
    let on_behalf = ccc
        .file_on_behalf(pb::FileOnBehalfRequest {
            filing: Some(wire_filing(&person("Appel"))),
            agent_id: "ccc-agent-7".into(),
            call_id: "call-0001".into(),
            consent_recorded: true,
        })
        .await
        .unwrap()
        .into_inner();
    let ccc_ref = on_behalf.receipt.unwrap().reference;
    assert!(ccc_ref.starts_with('C'), "{ccc_ref}");

    let web_ref = app.file_accepted(&person("Toile")).await;

    let assisted = desk
        .file_assisted(pb::FileAssistedRequest {
            filing: Some(wire_filing(&person("Guichet"))),
            site_id: "59-lille".into(),
            desk_agent_id: "pan-agent-2".into(),
            appointment_id: String::new(),
            identity_checked: true,
        })
        .await
        .unwrap()
        .into_inner();
    let pan_ref = assisted.receipt.unwrap().reference;

    let today = guichet_dossier::calendar::paris_date(Utc::now());
    let postal_ref = app
        .file_by_post(&person("Lettre"), today - Days::new(3), today)
        .await;

    let order = eventually(WAIT, "four dossiers in the queue", || async {
        let q = queue_references(app).await;
        (q.len() == 4).then_some(q)
    })
    .await;
    assert_eq!(
        order,
        vec![
            (postal_ref, "postal".to_string()),
            (ccc_ref, "ccc".to_string()),
            (web_ref, "web".to_string()),
            (pan_ref, "pan".to_string()),
        ],
        "by legal filing date, then the time of filing; never by channel"
    );

    // Without the caller's consent nothing is filed, and the answer says why.
    let refused = ccc
        .file_on_behalf(pb::FileOnBehalfRequest {
            filing: Some(wire_filing(&person("Sans"))),
            agent_id: "ccc-agent-7".into(),
            call_id: "call-0002".into(),
            consent_recorded: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let fields = guichet_kit::ServiceError::from_status(&refused).violations;
    assert!(
        fields
            .iter()
            .any(|v| v.field == "provenance.ccc.consent_recorded"),
        "{fields:?}"
    );
    // Nor at the desk without an identity check.
    let refused = desk
        .file_assisted(pb::FileAssistedRequest {
            filing: Some(wire_filing(&person("Sans"))),
            site_id: "59-lille".into(),
            desk_agent_id: "pan-agent-2".into(),
            appointment_id: String::new(),
            identity_checked: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(queue_references(app).await.len(), 4);
}

on_both_backends!(fifty_concurrent_bookings_of_a_ten_place_slot_give_exactly_ten);
async fn fifty_concurrent_bookings_of_a_ten_place_slot_give_exactly_ten(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let channel = app.grpc_as(PREFECTURE_AGENT).await;
    let mut desk = DeskClient::new(channel.clone());
    desk.upsert_site(lille(10, 0)).await.unwrap();
    let slot = next_slot();

    let mut calls = Vec::new();
    for i in 0..50 {
        let mut desk = DeskClient::new(channel.clone());
        calls.push(tokio::spawn(async move {
            desk.book(pb::BookRequest {
                site_id: "59-lille".into(),
                starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
                person: Some(pb::Person {
                    family_name: format!("Personne {i}"),
                    given_names: String::new(),
                    phone: "06 00 00 00 00".into(),
                    email: String::new(),
                }),
                route: pb::BookingRoute::Phone as i32,
                booked_by: "ccc-agent-1".into(),
                report_id: String::new(),
                idempotency_key: format!("rush-{i}"),
            })
            .await
        }));
    }
    let (mut booked, mut full) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => booked += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("slot is full"), "{status:?}");
                full += 1;
            }
        }
    }
    assert_eq!((booked, full), (10, 40));
    let nine = slot_at(&mut desk, "59-lille", slot).await;
    assert_eq!((nine.places, nine.booked, nine.free), (10, 10, 0));

    common::stop(app, env).await;
}

on_both_backends!(appointments_are_made_moved_and_cancelled_online_by_phone_and_at_the_desk);
async fn appointments_are_made_moved_and_cancelled_online_by_phone_and_at_the_desk(
    backend: Backend,
) {
    let (env, app) = common::mesh_on(backend).await;
    let mut desk = DeskClient::new(app.grpc_as(PREFECTURE_AGENT).await);
    // Two places a slot, one of them kept for reports.
    desk.upsert_site(lille(2, 1)).await.unwrap();
    let slot = next_slot();
    let later = slot + chrono::Duration::minutes(30);

    // Online, through REST.
    let booked = app
        .http
        .post(format!("{}/api/v1/appointments", app.base))
        .header("Idempotency-Key", "web-booking-1")
        .json(&json!({
            "site_id": "59-lille",
            "starts_at": slot.to_rfc3339(),
            "person": {"family_name": "Diallo", "email": "a.diallo@example.org"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status(), 201);
    let online: Value = booked.json().await.unwrap();
    assert_eq!(online["route"], "online");
    let online_id = online["id"].as_str().unwrap().to_string();
    let online_secret = online["secret"]
        .as_str()
        .expect("the person's link")
        .to_string();

    // The open place is taken: someone calling gets "full"...
    let person = |name: &str| pb::Person {
        family_name: name.into(),
        given_names: String::new(),
        phone: "06 11 22 33 44".into(),
        email: String::new(),
    };
    // An ordinary phone booking for Martin at 09:00, by the call centre.
    let phone_booking = |key: &str| pb::BookRequest {
        site_id: "59-lille".into(),
        starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
        person: Some(person("Martin")),
        route: pb::BookingRoute::Phone as i32,
        booked_by: "ccc-agent-1".into(),
        report_id: String::new(),
        idempotency_key: key.into(),
    };
    // A phone or an e-mail the confirmation could not reach is refused,
    // naming it: the person would get neither confirmation nor reminder.
    let unreachable = desk
        .book(pb::BookRequest {
            person: Some(pb::Person {
                phone: "612345678".into(),
                email: "martin.example.org".into(),
                ..person("Martin")
            }),
            ..phone_booking("phone-0")
        })
        .await
        .unwrap_err();
    assert_eq!(unreachable.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        common::refused_fields(&unreachable),
        ["person.phone", "person.email"]
    );
    let by_phone = desk.book(phone_booking("phone-1")).await.unwrap_err();
    assert_eq!(by_phone.code(), tonic::Code::FailedPrecondition);
    // ...but the place kept for reports goes to a blocked person's alternative.
    let report = open_report(
        &mut CallCentreClient::new(app.grpc_as(PREFECTURE_AGENT).await),
        "report-1",
        LILLE_ADDRESS,
    )
    .await;
    let for_report = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
            person: Some(person("Haidari")),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "pref-59-agent".into(),
            report_id: report.id.clone(),
            idempotency_key: "report-booking-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(for_report.report_id, report.id);

    // The person online moves theirs half an hour later; the place frees up
    // and a phone booking now fits.
    let moved = app
        .http
        .post(format!("{}/api/v1/appointments/{online_id}/move", app.base))
        .header("X-Link-Secret", &online_secret)
        .json(&json!({"starts_at": later.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let phone = desk
        .book(phone_booking("phone-2"))
        .await
        .unwrap()
        .into_inner();
    // The same request again is the same appointment, not a second place.
    let again = desk
        .book(phone_booking("phone-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, phone.id);

    // At the front desk, the phone appointment is cancelled.
    let cancelled = desk
        .cancel(pb::CancelRequest {
            id: phone.id.clone(),
            route: pb::BookingRoute::FrontDesk as i32,
            by: "pan-agent-2".into(),
            reason: "came in person the day before".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, pb::AppointmentState::Cancelled as i32);

    // A slot that is not one of the site's is refused, naming the field.
    let bad = app
        .http
        .post(format!("{}/api/v1/appointments", app.base))
        .header("Idempotency-Key", "web-booking-2")
        .json(&json!({
            "site_id": "59-lille",
            "starts_at": (slot + chrono::Duration::minutes(10)).to_rfc3339(),
            "person": {"family_name": "Diallo", "email": "a.diallo@example.org"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "starts_at", "{body}");

    let day = guichet_dossier::desk::to_local(slot).date();
    let free: Vec<Value> = app
        .get_json(&format!("/api/v1/sites/59-lille/slots?date={day}"))
        .await;
    // 09:00 has its open place free again (the report's place is taken);
    // 09:30 has the moved appointment.
    let at = |t: chrono::DateTime<Utc>| free.iter().find(|s| s["starts_at"] == t.to_rfc3339());
    assert_eq!(at(slot).map(|s| s["free"].clone()), Some(json!(1)));
    assert_eq!(at(later), None, "09:30 is full to online bookings");

    common::stop(app, env).await;
}

on_both_backends!(a_report_unanswered_past_its_deadline_is_escalated_and_shows_as_overdue);
async fn a_report_unanswered_past_its_deadline_is_escalated_and_shows_as_overdue(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.sweep_interval_s = 1;
    let clock = Arc::new(ShiftedClock::default());
    let app = App::builder(&config).clock(clock.clone()).start().await;
    let (mut ccc, mut desk) = ccc_and_desk(&app).await;

    let open = |key: &str| pb::OpenReportRequest {
        category: pb::ReportCategory::AppointmentImpossible as i32,
        what_was_tried: "no slot offered online for six weeks".into(),
        family_name: "Haidari".into(),
        given_names: "Ahmad".into(),
        contact: Some(pb::Contact {
            email: String::new(),
            phone: "07 00 00 00 01".into(),
            address: Some(pb::PostalAddress {
                line1: "3 place du Marché".into(),
                line2: String::new(),
                postal_code: "59000".into(),
                city: "Lille".into(),
                country: "FR".into(),
            }),
            answer_channel: pb::AnswerChannel::Sms as i32,
            language: String::new(),
        }),
        procedure: pb::Procedure::Renewal as i32,
        agent_id: "ccc-agent-3".into(),
        call_id: format!("call-{key}"),
        idempotency_key: key.into(),
    };
    // A phone or an e-mail nobody could be reached at is refused, naming
    // it: the notices of the report's steps would go nowhere.
    let mut unreachable = open("unreachable");
    let contact = unreachable.contact.as_mut().unwrap();
    contact.phone = "0700".into();
    contact.email = "a.haidari.example.org".into();
    let refused = ccc.open_report(unreachable).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        common::refused_fields(&refused),
        ["contact.phone", "contact.email"]
    );
    let late = ccc.open_report(open("late")).await.unwrap().into_inner();
    // The phone is kept as the notifier dials it.
    assert_eq!(late.contact.as_ref().unwrap().phone, "+33700000001");
    let answered = ccc
        .open_report(open("answered"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.prefecture, "59");
    assert_eq!(late.state, pb::ReportState::Open as i32);
    let opened: NaiveDate = guichet_dossier::calendar::paris_date(Utc::now());
    let deadline = guichet_proto::convert::date_from_pb(late.deadline.as_ref().unwrap()).unwrap();
    assert_eq!(
        deadline,
        guichet_dossier::calendar::add_working_days(opened, 5, "59")
    );
    assert!(deadline.weekday().number_from_monday() <= 5);
    // Opening the same report twice (a retried call) is one report.
    let again = ccc.open_report(open("late")).await.unwrap().into_inner();
    assert_eq!(again.id, late.id);

    // Closing without an alternative is refused: every report ends with one.
    let refused = ccc
        .record_outcome(pb::RecordOutcomeRequest {
            id: answered.id.clone(),
            outcome: pb::ReportOutcome::Declined as i32,
            note: String::new(),
            agent_id: "pref-59".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The prefecture answers one in time, with a desk appointment.
    desk.upsert_site(lille(4, 1)).await.unwrap();
    let appointment = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(next_slot())),
            person: Some(pb::Person {
                family_name: "Haidari".into(),
                given_names: "Ahmad".into(),
                phone: "07 00 00 00 01".into(),
                email: String::new(),
            }),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "pref-59".into(),
            report_id: answered.id.clone(),
            idempotency_key: "alt-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let offered = ccc
        .offer_alternative(pb::OfferAlternativeRequest {
            id: answered.id.clone(),
            kind: pb::AlternativeKind::PanAppointment as i32,
            appointment_id: appointment.id.clone(),
            kit_sent_to: None,
            agent_id: "pref-59".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offered.state, pb::ReportState::AlternativeOffered as i32);

    // Ten days later, the other one has had no answer.
    clock.advance(chrono::Duration::days(10));
    let escalated = eventually(WAIT, "the late report escalated", || {
        let mut ccc = ccc.clone();
        let id = late.id.clone();
        async move {
            let r = ccc
                .get_report(pb::GetReportRequest { id })
                .await
                .ok()?
                .into_inner();
            (r.state == pb::ReportState::Escalated as i32).then_some(r)
        }
    })
    .await;
    assert!(escalated.overdue);
    assert_eq!(
        escalated
            .history
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
        ["opened", "escalated"]
    );
    let overdue = ccc
        .list_reports(pb::ListReportsRequest {
            prefecture: "59".into(),
            state: 0,
            overdue_only: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .reports;
    let overdue: Vec<&str> = overdue.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(overdue, [late.id.as_str()]);
    eventually(WAIT, "the overdue report in the figures", || async {
        let overdue = app
            .metric(r#"guichet_reports_overdue{prefecture="59"}"#)
            .await;
        let open = app.metric(r#"guichet_reports_open{prefecture="59"}"#).await;
        (overdue == 1.0 && open == 1.0).then_some(())
    })
    .await;

    // Answered late all the same, then closed: no longer overdue.
    ccc.offer_alternative(pb::OfferAlternativeRequest {
        id: late.id.clone(),
        kind: pb::AlternativeKind::PaperKit as i32,
        appointment_id: String::new(),
        kit_sent_to: None,
        agent_id: "pref-59".into(),
    })
    .await
    .unwrap();
    let closed = ccc
        .record_outcome(pb::RecordOutcomeRequest {
            id: late.id.clone(),
            outcome: pb::ReportOutcome::Filed as i32,
            note: "filed by post with the kit".into(),
            agent_id: "pref-59".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, pb::ReportState::Closed as i32);
    assert!(!closed.overdue);
    let seen: Value = app
        .as_agent(
            reqwest::Method::GET,
            "ccc-1",
            &format!("/api/v1/reports/{}", late.id),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["state"], "closed");
    assert_eq!(seen["alternative"], "paper_kit");

    common::stop(app, env).await;
}

/// A call-centre client written in Python from `proto/` alone, with grpcio:
/// nothing of the servers' Rust types. It discovers the services through the
/// gateway's reflection and files on behalf of a caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_built_from_the_protos_files_through_the_gateway() {
    let (env, app) = common::mesh_on(Backend::Servers).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let address = app.base.trim_start_matches("http://").to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .env(
                "GUICHET_TOKEN",
                common::client_bearer("guichet-ccc-software"),
            )
            .env("GUICHET_ACTING_AGENT", "ccc-1")
            .arg(root.join("tests/clients/call_centre.py"))
            .arg(&address)
            .arg(root.join("proto"))
            .arg(root.join("examples/filings/renewal-employee.json"))
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed (it needs `pip install grpcio grpcio-tools grpcio-reflection \
         grpcio-health-checking`, which .ci/run does):\n{stderr}"
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let services: Vec<&str> = answer["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "guichet.v1.CallCentre",
        "guichet.v1.Desk",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&s), "{s} in {services:?}");
    }
    assert_eq!(answer["health"], "SERVING");
    assert_eq!(answer["refused"]["code"], "INVALID_ARGUMENT");
    let reference = answer["reference"].as_str().unwrap().to_string();
    eventually(WAIT, "the Python filing in instruction", || async {
        let r = app.dossier(&reference).await;
        if r.status() != 200 {
            return None;
        }
        let d: Value = r.json().await.ok()?;
        (d["channel"] == "ccc").then_some(())
    })
    .await;

    common::stop(app, env).await;
}

on_both_backends!(an_alternative_must_be_an_appointment_that_exists_for_the_report);
/// Offering a report an appointment that does not exist, was cancelled, is at
/// another prefecture's site or is somebody else's is refused, through gRPC
/// and REST, naming `appointment_id`; the real one is accepted, and a report
/// closes only while the appointment offered stands.
async fn an_alternative_must_be_an_appointment_that_exists_for_the_report(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let (mut ccc, mut desk) = ccc_and_desk(&app).await;
    desk.upsert_site(lille(4, 1)).await.unwrap();
    desk.upsert_site(arras(4, 1)).await.unwrap();
    let slot = next_slot();
    let report = open_report(&mut ccc, "lille-1", LILLE_ADDRESS).await;
    let in_arras = open_report(&mut ccc, "arras-1", ARRAS_ADDRESS).await;
    assert_eq!(in_arras.prefecture, "62");

    // An id nobody booked.
    let refused = ccc
        .offer_alternative(offer_appointment(&report.id, "no-such-appointment"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert_eq!(common::refused_fields(&refused), ["appointment_id"]);
    let (status, body) = offer_by_rest(
        &app,
        &report.id,
        json!({"kind": "pan_appointment", "appointment_id": "no-such-appointment"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errors"][0]["field"], "appointment_id", "{body}");

    // An appointment booked for this report, then cancelled.
    let cancelled = desk
        .book(booking("59-lille", slot, &report.id, "cancelled-1"))
        .await
        .unwrap()
        .into_inner();
    desk.cancel(pb::CancelRequest {
        id: cancelled.id.clone(),
        route: pb::BookingRoute::Phone as i32,
        by: "pref-59".into(),
        reason: "booked by mistake".into(),
    })
    .await
    .unwrap();
    // One at a site of the Pas-de-Calais, booked for the Arras report.
    let elsewhere = desk
        .book(booking("62-arras", slot, &in_arras.id, "arras-booking"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(elsewhere.prefecture, "62");
    // Somebody else's ordinary appointment at the right site.
    let somebody_elses = desk
        .book(booking("59-lille", slot, "", "ordinary-1"))
        .await
        .unwrap()
        .into_inner();
    for (appointment, what) in [
        (&cancelled, "cancelled"),
        (&elsewhere, "prefecture 62"),
        (&somebody_elses, "not booked for this report"),
    ] {
        let refused = ccc
            .offer_alternative(offer_appointment(&report.id, &appointment.id))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{what}: {refused:?}"
        );
        assert_eq!(
            common::refused_fields(&refused),
            ["appointment_id"],
            "{what}"
        );
        assert!(refused.message().contains(what), "{what}: {refused:?}");
        let (status, body) = offer_by_rest(
            &app,
            &report.id,
            json!({"kind": "pan_appointment", "appointment_id": appointment.id}),
        )
        .await;
        assert_eq!(status, 409, "{what}: {body}");
        assert_eq!(
            body["errors"][0]["field"], "appointment_id",
            "{what}: {body}"
        );
    }
    // Nothing was recorded: the report still waits, and cannot close.
    let still = ccc
        .get_report(pb::GetReportRequest {
            id: report.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state, pb::ReportState::Open as i32);
    assert_eq!(still.history.len(), 1);
    let closing = pb::RecordOutcomeRequest {
        id: report.id.clone(),
        outcome: pb::ReportOutcome::Filed as i32,
        note: "filed at the desk".into(),
        agent_id: "pref-59".into(),
    };
    let refused = ccc.record_outcome(closing.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The real thing, offered through REST: accepted, and the report closes.
    let real = desk
        .book(booking("59-lille", slot, &report.id, "real-1"))
        .await
        .unwrap()
        .into_inner();
    let (status, body) = offer_by_rest(
        &app,
        &report.id,
        json!({"kind": "pan_appointment", "appointment_id": real.id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "alternative_offered");
    assert_eq!(body["appointment_id"], json!(real.id));
    let closed = ccc.record_outcome(closing).await.unwrap().into_inner();
    assert_eq!(closed.state, pb::ReportState::Closed as i32);

    // An appointment offered then cancelled does not close a report: another
    // alternative is offered first.
    let other = open_report(&mut ccc, "lille-2", LILLE_ADDRESS).await;
    let offered = desk
        .book(booking(
            "59-lille",
            slot + chrono::Duration::minutes(30),
            &other.id,
            "real-2",
        ))
        .await
        .unwrap()
        .into_inner();
    ccc.offer_alternative(offer_appointment(&other.id, &offered.id))
        .await
        .unwrap();
    desk.cancel(pb::CancelRequest {
        id: offered.id.clone(),
        route: pb::BookingRoute::Online as i32,
        by: String::new(),
        reason: "cannot come that day".into(),
    })
    .await
    .unwrap();
    let closing = pb::RecordOutcomeRequest {
        id: other.id.clone(),
        outcome: pb::ReportOutcome::Filed as i32,
        note: String::new(),
        agent_id: "pref-59".into(),
    };
    let refused = ccc.record_outcome(closing.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(common::refused_fields(&refused), ["appointment_id"]);
    let again = desk
        .book(booking(
            "59-lille",
            slot + chrono::Duration::minutes(60),
            &other.id,
            "real-3",
        ))
        .await
        .unwrap()
        .into_inner();
    let reoffered = ccc
        .offer_alternative(offer_appointment(&other.id, &again.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reoffered.alternative.unwrap().appointment_id, again.id);
    let closed = ccc.record_outcome(closing).await.unwrap().into_inner();
    assert_eq!(closed.state, pb::ReportState::Closed as i32);

    common::stop(app, env).await;
}

on_both_backends!(a_kept_place_is_booked_only_for_a_real_open_report_of_the_sites_prefecture);
/// Booking a place kept for reports names a report that must exist, be
/// open and belong to the site's prefecture: refused otherwise, through gRPC
/// and REST, naming `report_id`.
async fn a_kept_place_is_booked_only_for_a_real_open_report_of_the_sites_prefecture(
    backend: Backend,
) {
    let (env, app) = common::mesh_on(backend).await;
    let (mut ccc, mut desk) = ccc_and_desk(&app).await;
    // One open place and one kept for reports.
    desk.upsert_site(lille(2, 1)).await.unwrap();
    let slot = next_slot();
    let in_arras = open_report(&mut ccc, "arras-1", ARRAS_ADDRESS).await;
    let closed = open_report(&mut ccc, "closed-1", LILLE_ADDRESS).await;
    let kit = pb::OfferAlternativeRequest {
        id: closed.id.clone(),
        kind: pb::AlternativeKind::PaperKit as i32,
        appointment_id: String::new(),
        kit_sent_to: None,
        agent_id: "pref-59".into(),
    };
    ccc.offer_alternative(kit).await.unwrap();
    ccc.record_outcome(pb::RecordOutcomeRequest {
        id: closed.id.clone(),
        outcome: pb::ReportOutcome::Filed as i32,
        note: "filed by post".into(),
        agent_id: "pref-59".into(),
    })
    .await
    .unwrap();

    let cases = [
        (
            "no-such-report",
            tonic::Code::NotFound,
            404,
            "names no report",
        ),
        (
            closed.id.as_str(),
            tonic::Code::FailedPrecondition,
            409,
            "closed",
        ),
        (
            in_arras.id.as_str(),
            tonic::Code::FailedPrecondition,
            409,
            "prefecture 62",
        ),
    ];
    for (i, (report_id, code, http, what)) in cases.into_iter().enumerate() {
        let refused = desk
            .book(booking("59-lille", slot, report_id, &format!("grpc-{i}")))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{what}: {refused:?}");
        assert_eq!(common::refused_fields(&refused), ["report_id"], "{what}");
        assert!(refused.message().contains(what), "{what}: {refused:?}");
        let (status, body) =
            book_by_rest(&app, "59-lille", slot, report_id, &format!("rest-{i}")).await;
        assert_eq!(status, http, "{what}: {body}");
        assert_eq!(body["errors"][0]["field"], "report_id", "{what}: {body}");
    }

    // Nothing was taken: the open place goes to someone online, and the kept
    // place to a real report of the Nord, booked online through REST.
    let (status, body) = book_by_rest(&app, "59-lille", slot, "", "ordinary").await;
    assert_eq!(status, 201, "{body}");
    let real = open_report(&mut ccc, "lille-1", LILLE_ADDRESS).await;
    let (status, body) = book_by_rest(&app, "59-lille", slot, &real.id, "for-report").await;
    assert_eq!(status, 201, "{body}");
    let booked = desk
        .get_appointment(pb::GetAppointmentRequest {
            id: body["id"].as_str().unwrap().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(booked.report_id, real.id);
    // The same booking again is the same appointment.
    let (status, again) = book_by_rest(&app, "59-lille", slot, &real.id, "for-report").await;
    assert_eq!((status, &again["id"]), (201, &body["id"]));

    common::stop(app, env).await;
}

on_both_backends!(a_paper_kit_offered_is_a_prefilled_form_listed_for_posting);
/// A paper kit offered to a report becomes, at the postal service, a letter
/// and a form pre-filled from the report, in the mailroom's print list under
/// the report's id; once per offer, however often the event is delivered.
/// A kit with no address to post it to is refused, naming `kit_sent_to`.
async fn a_paper_kit_offered_is_a_prefilled_form_listed_for_posting(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let mut ccc = CallCentreClient::new(app.grpc_as(PREFECTURE_AGENT).await);
    let letters_of = |reference: String| {
        let app = &app;
        async move {
            let letters: Vec<Value> = app
                .mailroom_get_json(&format!("/api/v1/postal/letters?reference={reference}"))
                .await;
            letters
        }
    };

    // Only a postal code on file, and no address given: nothing to post to.
    let unaddressed = open_report(&mut ccc, "no-address", POSTAL_CODE_ONLY).await;
    let kit = |id: &str| pb::OfferAlternativeRequest {
        id: id.into(),
        kind: pb::AlternativeKind::PaperKit as i32,
        appointment_id: String::new(),
        kit_sent_to: None,
        agent_id: "pref-59".into(),
    };
    let refused = ccc
        .offer_alternative(kit(&unaddressed.id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(common::refused_fields(&refused), ["kit_sent_to"]);
    let (status, body) = offer_by_rest(&app, &unaddressed.id, json!({"kind": "paper_kit"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "kit_sent_to", "{body}");
    // Half an address given is no better.
    let (status, body) = offer_by_rest(
        &app,
        &unaddressed.id,
        json!({"kind": "paper_kit", "kit_sent_to": {"postal_code": "59000", "city": "Lille"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "kit_sent_to.line1", "{body}");

    // Offered through REST to the address on the report.
    let report = open_report(&mut ccc, "kit-1", LILLE_ADDRESS).await;
    let (status, body) = offer_by_rest(&app, &report.id, json!({"kind": "paper_kit"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alternative"], "paper_kit");
    let letter = eventually(WAIT, "the kit in the print list", || async {
        let mut letters = letters_of(report.id.clone()).await;
        (letters.len() == 1).then(|| letters.remove(0))
    })
    .await;
    assert_eq!(letter["kind"], "paper_kit", "{letter}");
    assert_eq!(letter["reference"], json!(report.id), "{letter}");
    let pdf = app
        .mailroom_get(&format!(
            "/api/v1/postal/letters/{}",
            letter["id"].as_str().unwrap()
        ))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let has = |text: &str| pdf.windows(text.len()).any(|w| w == text.as_bytes());
    // The covering letter and the form both carry the report's reference;
    // the form is filled in with the caller's identity and address.
    assert!(has(&format!("Signalement {}", report.id)));
    assert!(has("Formulaire K"), "the form of the kit");
    // A line with accents is written as a hex string of its Latin-1 bytes.
    let hex = |text: &str| -> String {
        text.chars()
            .map(|c| format!("{:02X}", c as u32 as u8))
            .collect()
    };
    for printed in [
        "Ahmad HAIDARI",
        "Nom : Haidari",
        "Pr\u{e9}noms : Ahmad",
        "Adresse : 3 place du March\u{e9}",
        "Code postal : 59000",
        "Ville : Lille",
        "Courriel : a.haidari@example.org",
    ] {
        assert!(
            has(&format!("({printed})")) || has(&format!("<{}>", hex(printed))),
            "{printed} printed on the kit"
        );
    }

    // The same event delivered again makes no second kit: a redelivery is
    // put on the bus, then another report's kit, which comes after it.
    let event = ccc
        .get_report(pb::GetReportRequest {
            id: report.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let again = guichet_kit::bus::OutgoingMessage::traced(
        guichet_kit::bus::EVENTS_EXCHANGE,
        format!("report.alternative_offered.{}", event.prefecture),
        prost::Message::encode_to_vec(&event),
    );
    assert!(app.mesh.bus.publish(&[again]).await[0].is_ok());
    let next = open_report(&mut ccc, "kit-2", LILLE_ADDRESS).await;
    ccc.offer_alternative(kit(&next.id)).await.unwrap();
    eventually(WAIT, "the next kit in the print list", || async {
        (letters_of(next.id.clone()).await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(letters_of(report.id.clone()).await.len(), 1);
    assert!(letters_of(unaddressed.id.clone()).await.is_empty());

    common::stop(app, env).await;
}

on_both_backends!(an_unreachable_peer_makes_an_offer_or_a_kept_booking_unavailable_not_accepted);
/// The call centre and the desk each check the other's ids. When the other
/// cannot be reached the answer is UNAVAILABLE (503 with Retry-After), and
/// nothing is recorded; once it is back, the same request goes through.
async fn an_unreachable_peer_makes_an_offer_or_a_kept_booking_unavailable_not_accepted(
    backend: Backend,
) {
    let env = TestEnv::on(backend).await;
    let config = env.config();
    let shutdown = guichet_kit::shutdown::Shutdown::new();
    let shared = common::shared(&config, &shutdown).await;
    // The two services, each reaching the other through a proxy the test cuts.
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let (pan_listener, pan_addr) = guichet_kit::grpc::bind(any).await.unwrap();
    let to_desk = common::proxy::Proxy::start(pan_addr).await;
    let ccc = guichet_intake_ccc::start(
        &config,
        &config.call_centre,
        any,
        &common::not_started().instruction,
        &guichet_kit::grpc::url_of(to_desk.addr),
        &shared,
    )
    .await
    .unwrap();
    let to_call_centre = common::proxy::Proxy::start(ccc.grpc_addr).await;
    let pan = guichet_intake_pan::start(
        &config,
        pan_listener,
        &guichet_kit::grpc::url_of(to_call_centre.addr),
        &shared,
    )
    .await
    .unwrap();
    let targets = guichet_gateway::Targets {
        intake_ccc: guichet_kit::grpc::url_of(ccc.grpc_addr),
        intake_pan: guichet_kit::grpc::url_of(pan_addr),
        ..common::not_started()
    };
    let gateway = common::start_gateway(&config, targets, &shared).await;
    let base = format!("http://{}", gateway.http_addr);
    common::grant_test_roles(&config).await;
    let channel = common::signed_in(common::grpc_channel(&base).await, PREFECTURE_AGENT);
    let mut ccc_client = CallCentreClient::new(channel.clone());
    let mut desk = DeskClient::new(channel);
    let http = reqwest::Client::new();
    desk.upsert_site(lille(2, 1)).await.unwrap();
    let slot = next_slot();
    let report = open_report(&mut ccc_client, "lille-1", LILLE_ADDRESS).await;
    let appointment = desk
        .book(booking("59-lille", slot, &report.id, "booked-1"))
        .await
        .unwrap()
        .into_inner();

    to_desk.cut().await;
    to_call_centre.cut().await;
    let refused = ccc_client
        .offer_alternative(offer_appointment(&report.id, &appointment.id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let r = http
        .post(format!(
            "{base}/api/v1/agent/reports/{}/alternative",
            report.id
        ))
        .header("Authorization", crate::common::bearer("pref-59"))
        .json(&json!({"kind": "pan_appointment", "appointment_id": appointment.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let refused = desk
        .book(booking("59-lille", slot, &report.id, "booked-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let r = http
        .post(format!("{base}/api/v1/appointments"))
        .header("Idempotency-Key", "online-1")
        .json(&json!({
            "site_id": "59-lille",
            "starts_at": slot.to_rfc3339(),
            "person": {"family_name": "Haidari", "email": "a.haidari@example.org"},
            "report_id": report.id,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let still = ccc_client
        .get_report(pb::GetReportRequest {
            id: report.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state, pb::ReportState::Open as i32);
    // Nothing was booked either: the slot's kept place is taken by the
    // first booking only, and its open place is still free.
    let nine = slot_at(&mut desk, "59-lille", slot).await;
    assert_eq!((nine.booked, nine.free), (1, 1));

    // Back: the same offer goes through.
    to_desk.restore();
    to_call_centre.restore();
    let offered = ccc_client
        .offer_alternative(offer_appointment(&report.id, &appointment.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offered.state, pb::ReportState::AlternativeOffered as i32);

    shutdown.cancel();
    let mut tasks = [ccc.tasks, pan.tasks, gateway.tasks];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for set in &mut tasks {
            while set.join_next().await.is_some() {}
        }
    })
    .await;
    env.cleanup().await;
}
