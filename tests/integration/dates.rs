//! Dates a filing could have. No channel files a dossier dated after today:
//! a channel that dates a filing itself (web, call centre, desk) dates it
//! with its own clock, whatever the caller sends; a channel that is given
//! dates (post: reception, postmark) refuses one still to come; and
//! instruction dead-letters, with the reason, a dossier from any channel
//! that says it was filed tomorrow. A date that is no date, in any filter
//! or query, is a 400 / INVALID_ARGUMENT naming it, never a filter dropped.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Days, Utc};
use common::{Backend, eventually, example};
use guichet_dossier::calendar::paris_date;
use guichet_dossier::filing::RawProvenance;
use guichet_dossier::{Channel, Dossier, Filing, RawFiling, Reference};
use guichet_kit::bus::{DEAD_LETTER_QUEUE, DEATH_REASON_HEADER, INSTRUCTION_QUEUE};
use guichet_kit::{ErrorKind, ServiceError};
use guichet_proto::v1 as pb;
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use guichet_proto::v1::instruction_reader_client::InstructionReaderClient;
use guichet_proto::v1::online_intake_client::OnlineIntakeClient;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

fn raw_filing() -> RawFiling {
    let mut raw: RawFiling = serde_json::from_value(example("renewal-employee.json")).unwrap();
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    raw
}

fn postal(reception: chrono::NaiveDate) -> RawProvenance {
    RawProvenance::Postal {
        station_id: Some("station-59-1".into()),
        envelope_id: Some(uuid::Uuid::new_v4().to_string()),
        postmark_date: None,
        reception_date: Some(reception.to_string()),
    }
}

/// A filing as a channel's software sends it over gRPC, with `provenance`.
fn wire(provenance: &RawProvenance, today: chrono::NaiveDate) -> pb::Filing {
    let filing = Filing::parse(&raw_filing(), provenance, today).unwrap();
    guichet_proto::convert::filing_to_pb(&filing)
}

/// The fields an `INVALID_ARGUMENT` refusal names.
fn refused_fields(status: &tonic::Status) -> Vec<String> {
    let e = ServiceError::from_status(status);
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{status:?}");
    common::refused_fields(status)
}

fn receipt_date(receipt: Option<pb::Receipt>) -> chrono::NaiveDate {
    receipt
        .and_then(|r| r.legal_filing_date)
        .and_then(|d| guichet_proto::convert::date_from_pb(&d))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_files_a_dossier_dated_after_today() {
    let (env, app) = common::mesh_on(Backend::Embedded).await;
    let today = paris_date(Utc::now());
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap();

    // Web: the receipt is dated by the service, today.
    let r = app.file(&example("renewal-employee.json"), None).await;
    assert_eq!(r.status(), 201);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["legal_filing_date"], today.to_string());
    // ...and the only way a web filing could bring a date of its own, a
    // provenance (here a postal one, received tomorrow), is refused.
    let mut web = OnlineIntakeClient::new(
        common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.intake_web_addr)).await,
    );
    let refused = web
        .submit_filing(pb::SubmitFilingRequest {
            filing: Some(wire(&postal(tomorrow), tomorrow)),
            raw_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused_fields(&refused), ["filing.provenance"]);

    // Call centre and desk, through the gateway: dated by the service's
    // clock whatever the caller's software says.
    let grpc = app.grpc_as(crate::common::EVERY_ROLE).await;
    let answer = CallCentreClient::new(grpc.clone())
        .file_on_behalf(pb::FileOnBehalfRequest {
            filing: Some(wire(&postal(tomorrow), tomorrow)),
            agent_id: "ccc-agent-1".into(),
            call_id: "call-1".into(),
            consent_recorded: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt_date(answer.receipt), today);
    let mut desk = DeskClient::new(grpc);
    desk.upsert_site(pb::Site {
        id: "59-lille".into(),
        name: "Préfecture du Nord, Lille".into(),
        prefecture: "59".into(),
        kind: pb::SiteKind::Prefecture as i32,
        opening_hours: (1..=5)
            .map(|weekday| pb::OpeningHours {
                weekday,
                opens: "08:30".into(),
                closes: "12:00".into(),
            })
            .collect(),
        desks: 2,
        slot_minutes: 30,
        places_per_slot: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let answer = desk
        .file_assisted(pb::FileAssistedRequest {
            filing: Some(wire(&postal(tomorrow), tomorrow)),
            site_id: "59-lille".into(),
            desk_agent_id: "pan-agent-1".into(),
            appointment_id: String::new(),
            identity_checked: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt_date(answer.receipt), today);

    // Post: an envelope received tomorrow is refused at upload, by name.
    let page = Part::bytes(b"not read".to_vec())
        .file_name("a.png")
        .mime_str("image/png")
        .unwrap();
    let r = app
        .http
        .post(format!("{}/api/v1/postal/batches", app.base))
        .header(
            "Authorization",
            crate::common::client_bearer("guichet-scanner-1"),
        )
        .multipart(
            Form::new()
                .text("station_id", "station-59-1")
                .text("reception_date", tomorrow.to_string())
                .part("page", page),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "reception_date", "{body}");
    assert!(
        common::first_problem(&body).contains("in the future"),
        "{body}"
    );
    common::stop(app, env).await;
}

on_both_backends!(instruction_dead_letters_a_dossier_dated_after_today);
async fn instruction_dead_letters_a_dossier_dated_after_today(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let now = Utc::now();
    let today = paris_date(now);
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap();
    let in_two_days = now + chrono::Duration::days(2);

    // A dossier from each channel, put on the bus as a channel would, each
    // saying it was filed after today: what a channel with a clock set
    // wrong, or a forger with access to the bus, would send.
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let mut messages = Vec::new();
    for (channel, provenance) in [
        (Channel::Web, RawProvenance::Web { account_id: None }),
        (
            Channel::Ccc,
            RawProvenance::Ccc {
                agent_id: Some("a".into()),
                call_id: Some("c".into()),
                consent_recorded: true,
            },
        ),
        (
            Channel::Pan,
            RawProvenance::Pan {
                site_id: Some("59-lille".into()),
                desk_agent_id: Some("d".into()),
                appointment_id: None,
                identity_checked: true,
            },
        ),
        (Channel::Postal, postal(tomorrow)),
    ] {
        let filing = Filing::parse(&raw_filing(), &provenance, tomorrow).unwrap();
        let reference = Reference::generate(channel, 2026, &mut rand::rng());
        let dossier = Dossier::new(reference.clone(), filing, in_two_days, in_two_days);
        let field = match channel {
            Channel::Postal => "filing.provenance.postal.reception_date",
            _ => "filed_at",
        };
        expected.insert(reference.to_string(), field);
        messages.push(guichet_intake::ledger::dossier_message(&dossier));
    }
    for sent in app.mesh.bus.publish(&messages).await {
        assert!(sent.is_ok(), "{sent:?}");
    }

    // Each is dead-lettered with the reason, naming the date at fault.
    let bus = app.mesh.bus.clone();
    eventually(WAIT, "four dead letters", || async {
        (bus.queue_depth(DEAD_LETTER_QUEUE).await.unwrap() == 4).then_some(())
    })
    .await;
    let mut dead = bus
        .consume(DEAD_LETTER_QUEUE, "dates-dead", 4)
        .await
        .unwrap();
    let mut seen = BTreeMap::new();
    while seen.len() < 4 {
        let d = tokio::time::timeout(WAIT, dead.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let dossier = <pb::Dossier as prost::Message>::decode(d.body.as_slice()).unwrap();
        let reason = d
            .headers
            .get(DEATH_REASON_HEADER)
            .cloned()
            .unwrap_or_default();
        d.ack().await.unwrap();
        seen.insert(dossier.reference, reason);
    }
    drop(dead);
    for (reference, field) in &expected {
        let reason = &seen[reference];
        assert!(
            reason.starts_with("breaks a domain rule") && reason.contains(field),
            "{reference}: {reason}"
        );
        assert!(reason.contains("in the future"), "{reference}: {reason}");
        // None of them is in instruction.
        assert_eq!(app.dossier(reference).await.status(), 404, "{reference}");
    }
    let series = format!(
        "guichet_dead_letters_total{{queue=\"{INSTRUCTION_QUEUE}\",reason=\"breaks_rule\"}}"
    );
    // Counted once the dead letter is published: a moment after it is there.
    eventually(WAIT, "the four dead letters counted", || async {
        (app.metric(&series).await == 4.0).then_some(())
    })
    .await;
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_that_is_no_date_is_refused_by_name_in_every_filter() {
    let (env, app) = common::mesh_on(Backend::Embedded).await;
    let reference = app.file_accepted(&example("renewal-employee.json")).await;

    for (path, field) in [
        (
            "/api/v1/queue?cover_ends_before=2026-13-01",
            "cover_ends_before",
        ),
        (
            "/api/v1/queue?cover_ends_before=2026-02-30",
            "cover_ends_before",
        ),
        (
            "/api/v1/queue?cover_ends_before=tomorrow",
            "cover_ends_before",
        ),
        (
            &format!("/api/v1/dossiers/{reference}/status?birth_date=1990-02-30"),
            "birth_date",
        ),
        ("/api/v1/sites/59-lille/slots?date=2026-13-01", "date"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
    }
    // A real date filters: the filing just made ends its cover later.
    let r = app.get("/api/v1/queue?cover_ends_before=2026-12-01").await;
    assert_eq!(r.status(), 200);

    // The same through gRPC, on instruction's own address.
    let mut reader = InstructionReaderClient::new(
        common::grpc_channel(&guichet_kit::grpc::url_of(app.mesh.instruction_addr)).await,
    );
    let refused = reader
        .list_queue(pb::ListQueueRequest {
            cover_ends_before: Some(pb::CalendarDate {
                year: 2026,
                month: 13,
                day: 1,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused_fields(&refused), ["cover_ends_before"]);
    // An enum filter with a number no value has is refused too, not read
    // as "any".
    for (request, field) in [
        (
            pb::ListQueueRequest {
                procedure: 99,
                ..Default::default()
            },
            "procedure",
        ),
        (
            pb::ListQueueRequest {
                state: 42,
                ..Default::default()
            },
            "state",
        ),
        (
            pb::ListQueueRequest {
                channel: 7,
                ..Default::default()
            },
            "channel",
        ),
    ] {
        let refused = reader.list_queue(request).await.unwrap_err();
        assert_eq!(refused_fields(&refused), [field]);
    }
    assert!(
        reader
            .list_queue(pb::ListQueueRequest {
                procedure: pb::Procedure::Renewal as i32,
                state: pb::CaseState::Complete as i32,
                ..Default::default()
            })
            .await
            .is_ok()
    );
    assert!(
        reader
            .list_queue(pb::ListQueueRequest::default())
            .await
            .is_ok()
    );
    common::stop(app, env).await;
}

/// The next instant after now at `hour`:00 UTC.
fn next_utc_hour(hour: u32) -> chrono::DateTime<Utc> {
    let now = Utc::now();
    let today = now.date_naive().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

/// Overseas, a filing is dated by its department's own clock. Filed at
/// 23:00 in Cayenne (02:00 UTC), it is that day's filing, though Paris is
/// already at the next day: a renewal filed on its title's last day stays
/// in time. Filed at 01:00 in La Réunion (21:00 UTC), still the day before
/// in Paris, it is dated the Réunion day and recorded by instruction, not
/// dead-lettered as dated after today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overseas_filing_is_dated_by_its_departments_clock() {
    let env = common::TestEnv::on(Backend::Servers).await;
    let clock = std::sync::Arc::new(common::ShiftedClock::default());
    let app = common::App::builder(&env.config())
        .only(common::ONLINE)
        .clock(clock.clone())
        .start()
        .await;
    let filed_in = |postal_code: &str, city: &str| {
        let mut body = example("renewal-employee.json");
        body["contact"]["address"]["postal_code"] = postal_code.into();
        body["contact"]["address"]["city"] = city.into();
        body
    };
    let legal_date = |body: Value| {
        let app = &app;
        async move {
            let r = app.file(&body, None).await;
            assert_eq!(r.status(), 201, "{:?}", r.text().await);
            let receipt: Value = r.json().await.unwrap();
            let reference = receipt["reference"].as_str().unwrap().to_string();
            let date: chrono::NaiveDate = receipt["legal_filing_date"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            (reference, date)
        }
    };

    let at = next_utc_hour(2);
    clock.advance(at - Utc::now());
    let (cayenne, date) = legal_date(filed_in("97300", "Cayenne")).await;
    let day_before = at.date_naive().pred_opt().unwrap();
    assert_eq!(date, day_before, "23:00 in Cayenne");
    assert_eq!(
        paris_date(at),
        at.date_naive(),
        "already the next day in Paris"
    );

    let at = next_utc_hour(21) + chrono::Duration::days(1);
    clock.advance(at - clock_now(&clock));
    let (reunion, date) = legal_date(filed_in("97400", "Saint-Denis")).await;
    assert_eq!(
        date,
        at.date_naive().succ_opt().unwrap(),
        "01:00 in La Réunion"
    );
    assert_eq!(
        paris_date(at),
        at.date_naive(),
        "still the day before in Paris"
    );

    // Both reach instruction, with the dates their receipts gave.
    for (reference, expected) in [(&cayenne, day_before), (&reunion, date)] {
        let status = eventually(WAIT, "the overseas dossier in instruction", || async {
            let r = app
                .get(&format!(
                    "/api/v1/dossiers/{reference}/status?birth_date=1991-03-02"
                ))
                .await;
            if r.status() != 200 {
                return None;
            }
            r.json::<Value>().await.ok()
        })
        .await;
        assert_eq!(
            status["legal_filing_date"],
            expected.to_string(),
            "{status}"
        );
    }
    common::stop(app, env).await;
}

fn clock_now(clock: &common::ShiftedClock) -> chrono::DateTime<Utc> {
    guichet_kit::Clock::now(clock)
}
