//! The call-centre and desk channels, end to end through the gateway's gRPC
//! and REST: filings on behalf and at the desk join the one queue with web
//! and postal filings, by legal filing date; a slot never takes more people
//! than it has places; a report nobody answers is escalated on the clock.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Days, NaiveDate, Utc};
use common::{App, Backend, ShiftedClock, TestEnv, eventually, example};
use guichet_proto::v1 as pb;
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

async fn grpc(app: &App) -> Channel {
    tonic::transport::Endpoint::from_shared(app.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn person(name: &str) -> Value {
    let mut body = example("renewal-employee.json");
    body["applicant"]["family_name"] = json!(name);
    body
}

/// The filing as a channel's software sends it over gRPC.
fn wire_filing(body: &Value) -> pb::Filing {
    let raw: guichet_dossier::RawFiling = serde_json::from_value(body.clone()).unwrap();
    let mut raw = raw;
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let filing = guichet_dossier::Filing::parse(
        &raw,
        &guichet_dossier::filing::RawProvenance::Web { account_id: None },
        Utc::now().date_naive(),
    )
    .unwrap();
    guichet_proto::convert::filing_to_pb(&filing)
}

/// A prefecture site open on weekdays, 08:30-12:00 and 13:30-16:00.
fn lille(places: u32, for_reports: u32) -> pb::Site {
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

/// 09:00 (Paris) on the first working day after tomorrow.
fn next_slot() -> chrono::DateTime<Utc> {
    let mut day = Utc::now().date_naive() + Days::new(2);
    while !guichet_dossier::calendar::is_working_day(day) {
        day = day + Days::new(1);
    }
    guichet_dossier::desk::from_local(day.and_hms_opt(9, 0, 0).unwrap()).unwrap()
}

async fn queue_references(app: &App) -> Vec<(String, String)> {
    let r: Vec<Value> = app
        .http
        .get(format!("{}/api/v1/queue?prefecture=59", app.base))
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
    let env = TestEnv::on(backend).await;
    let app = App::start(&env.config()).await;
    let channel = grpc(&app).await;
    let mut ccc = CallCentreClient::new(channel.clone());
    let mut desk = DeskClient::new(channel);
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

    let r = app.file(&person("Toile"), None).await;
    assert_eq!(r.status(), 201);
    let web_ref = r.json::<Value>().await.unwrap()["reference"]
        .as_str()
        .unwrap()
        .to_string();

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

    let today = Utc::now().date_naive();
    let postal_ref = app
        .file_by_post(&person("Lettre"), today - Days::new(3), today)
        .await;

    let order = eventually(WAIT, "four dossiers in the queue", || async {
        let q = queue_references(&app).await;
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
    assert_eq!(queue_references(&app).await.len(), 4);

    app.stop().await;
    env.cleanup().await;
}

on_both_backends!(fifty_concurrent_bookings_of_a_ten_place_slot_give_exactly_ten);
async fn fifty_concurrent_bookings_of_a_ten_place_slot_give_exactly_ten(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let app = App::start(&env.config()).await;
    let channel = grpc(&app).await;
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
    let day = guichet_dossier::desk::to_local(slot).date();
    let slots = desk
        .list_slots(pb::ListSlotsRequest {
            site_id: "59-lille".into(),
            date: Some(guichet_proto::convert::date_to_pb(day)),
        })
        .await
        .unwrap()
        .into_inner()
        .slots;
    let nine = slots
        .iter()
        .find(|s| {
            s.starts_at
                .as_ref()
                .and_then(guichet_proto::convert::timestamp_from_pb)
                == Some(slot)
        })
        .unwrap();
    assert_eq!((nine.places, nine.booked, nine.free), (10, 10, 0));

    app.stop().await;
    env.cleanup().await;
}

on_both_backends!(appointments_are_made_moved_and_cancelled_online_by_phone_and_at_the_desk);
async fn appointments_are_made_moved_and_cancelled_online_by_phone_and_at_the_desk(
    backend: Backend,
) {
    let env = TestEnv::on(backend).await;
    let app = App::start(&env.config()).await;
    let mut desk = DeskClient::new(grpc(&app).await);
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

    // The open place is taken: someone calling gets "full"...
    let person = |name: &str| pb::Person {
        family_name: name.into(),
        given_names: String::new(),
        phone: "06 11 22 33 44".into(),
        email: String::new(),
    };
    let by_phone = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
            person: Some(person("Martin")),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "ccc-agent-1".into(),
            report_id: String::new(),
            idempotency_key: "phone-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(by_phone.code(), tonic::Code::FailedPrecondition);
    // ...but the place kept for reports goes to a blocked person's alternative.
    let for_report = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
            person: Some(person("Haidari")),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "pref-59-agent".into(),
            report_id: "report-1".into(),
            idempotency_key: "report-booking-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(for_report.report_id, "report-1");

    // The person online moves theirs half an hour later; the place frees up
    // and a phone booking now fits.
    let moved = app
        .http
        .post(format!("{}/api/v1/appointments/{online_id}/move", app.base))
        .json(&json!({"starts_at": later.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let phone = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
            person: Some(person("Martin")),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "ccc-agent-1".into(),
            report_id: String::new(),
            idempotency_key: "phone-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The same request again is the same appointment, not a second place.
    let again = desk
        .book(pb::BookRequest {
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(slot)),
            person: Some(person("Martin")),
            route: pb::BookingRoute::Phone as i32,
            booked_by: "ccc-agent-1".into(),
            report_id: String::new(),
            idempotency_key: "phone-2".into(),
        })
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
        .http
        .get(format!(
            "{}/api/v1/sites/59-lille/slots?date={day}",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 09:00 has its open place free again (the report's place is taken);
    // 09:30 has the moved appointment.
    let at = |t: chrono::DateTime<Utc>| free.iter().find(|s| s["starts_at"] == t.to_rfc3339());
    assert_eq!(at(slot).map(|s| s["free"].clone()), Some(json!(1)));
    assert_eq!(at(later), None, "09:30 is full to online bookings");

    app.stop().await;
    env.cleanup().await;
}

on_both_backends!(a_report_unanswered_past_its_deadline_is_escalated_and_shows_as_overdue);
async fn a_report_unanswered_past_its_deadline_is_escalated_and_shows_as_overdue(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.sweep_interval_s = 1;
    let clock = Arc::new(ShiftedClock::default());
    let app = App::start_with(&config, clock.clone()).await;
    let channel = grpc(&app).await;
    let mut ccc = CallCentreClient::new(channel.clone());
    let mut desk = DeskClient::new(channel);

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
        }),
        procedure: pb::Procedure::Renewal as i32,
        agent_id: "ccc-agent-3".into(),
        call_id: format!("call-{key}"),
        idempotency_key: key.into(),
    };
    let late = ccc.open_report(open("late")).await.unwrap().into_inner();
    let answered = ccc
        .open_report(open("answered"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.prefecture, "59");
    assert_eq!(late.state, pb::ReportState::Open as i32);
    let opened: NaiveDate = Utc::now().date_naive();
    let deadline = guichet_proto::convert::date_from_pb(late.deadline.as_ref().unwrap()).unwrap();
    assert_eq!(
        deadline,
        guichet_dossier::calendar::add_working_days(opened, 5)
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
        .http
        .get(format!("{}/api/v1/reports/{}", app.base, late.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["state"], "closed");
    assert_eq!(seen["alternative"], "paper_kit");

    app.stop().await;
    env.cleanup().await;
}

/// A call-centre client written in Python from `proto/` alone, with grpcio:
/// nothing of the servers' Rust types. It discovers the services through the
/// gateway's reflection and files on behalf of a caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_built_from_the_protos_files_through_the_gateway() {
    let env = TestEnv::on(Backend::Servers).await;
    let app = App::start(&env.config()).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let address = app.base.trim_start_matches("http://").to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
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

    app.stop().await;
    env.cleanup().await;
}
