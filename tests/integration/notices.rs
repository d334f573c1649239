//! Everyone hears back on the media they gave, whatever their channel: the
//! notifier end to end, through a real SMTP server (aiosmtpd), the SMS
//! provider double and the mailroom's print list.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use common::notify::{
    NEVER_DELIVERED, NOT_A_MOBILE, SmsDouble, SmtpInbox, daytime_clock, notified_app,
};
use common::{
    App, Backend, PREFECTURE_AGENT, ShiftedClock, TestEnv, count, eventually, example, pdf_text,
};
use guichet_kit::Clock as _;
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_proto::v1 as pb;
use guichet_proto::v1::call_centre_client::CallCentreClient;
use prost::Message as _;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn paris_today(clock: &ShiftedClock) -> NaiveDate {
    guichet_dossier::calendar::paris_date(clock.now())
}

async fn notices(env: &TestEnv, reference: &str, medium: &str, state: &str) -> i64 {
    let db = env.db("notifier").await;
    let n = count(
        &db,
        &format!(
            "SELECT count(*) FROM notices WHERE subject_ref = '{reference}' \
             AND medium = '{medium}' AND state = '{state}'"
        ),
    )
    .await;
    db.close().await;
    n
}

/// A case event as instruction publishes it, for a web filer answered by
/// e-mail at `email`.
pub(crate) fn case_event(kind: &str, reference: &str, email: &str) -> OutgoingMessage {
    let event = pb::CaseEvent {
        reference: reference.into(),
        kind: kind.into(),
        channel: pb::Channel::Web as i32,
        at: Some(guichet_proto::convert::timestamp_to_pb(Utc::now())),
        contact: Some(pb::Contact {
            email: email.into(),
            answer_channel: pb::AnswerChannel::Email as i32,
            ..Default::default()
        }),
        given_names: "Test".into(),
        family_name: "Person".into(),
        ..Default::default()
    };
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("case.{kind}.web"),
        event.encode_to_vec(),
    )
}

on_both_backends!(a_web_filing_hears_back_by_mail_and_sms_with_its_receipt_and_attestation);
async fn a_web_filing_hears_back_by_mail_and_sms_with_its_receipt_and_attestation(
    backend: Backend,
) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let clock = daytime_clock();
    let app = notified_app(env.config(), &inbox, &sms, clock.clone()).await;

    // A renewal whose title ends in ten days: complete on arrival, and owed
    // an attestation at once (the horizon is 15 days).
    let mut body = example("renewal-employee.json");
    body["current_title"]["expires_on"] = json!((paris_today(&clock) + Days::new(10)).to_string());
    let reference = app.file_accepted(&body).await;

    let mail_with = |file: String| {
        let inbox = &inbox;
        async move {
            inbox
                .messages()
                .into_iter()
                .find(|m| m.to == "samira.benali@example.org" && m.raw.contains(&file))
        }
    };
    let receipt = eventually(WAIT, "the receipt e-mail", || {
        mail_with(format!("recepisse-{reference}.pdf"))
    })
    .await;
    let pdf = receipt
        .attachment(&format!("recepisse-{reference}.pdf"))
        .expect("the receipt attached");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    assert!(text.contains(&reference), "{text}");
    assert!(text.contains("Samira BENALI"), "{text}");

    let attestation = eventually(WAIT, "the attestation e-mail", || {
        mail_with(format!("attestation-{reference}.pdf"))
    })
    .await;
    let text = pdf_text(
        &attestation
            .attachment(&format!("attestation-{reference}.pdf"))
            .expect("the attestation attached"),
    );
    assert!(
        text.contains("prouve la régularité de son séjour"),
        "{text}"
    );
    let code = text
        .split("Code de vérification : ")
        .nth(1)
        .and_then(|t| t.get(..8))
        .expect("a verification code")
        .to_string();
    // The code printed is one that checks.
    let check: Value = app
        .get(&format!("/api/v1/attestations/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["attestation"]["verification_code"], code, "{check}");

    // The SMS: one for the receipt, one for the attestation, each one
    // segment, with the first name and the reference and nothing else.
    let texts = eventually(WAIT, "two SMS", || async {
        let texts: Vec<String> = sms
            .messages()
            .into_iter()
            .filter(|s| s.to == "+33612345678")
            .map(|s| s.body)
            .collect();
        (texts.len() >= 2).then_some(texts)
    })
    .await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    for t in &texts {
        assert!(t.starts_with("Bonjour Samira, "), "{t}");
        assert!(t.contains(&reference), "{t}");
        assert!(t.chars().count() <= 160 && !t.contains("BENALI"), "{t}");
    }
    assert!(texts.iter().any(|t| t.contains("attestation")), "{texts:?}");

    // Where each stands: e-mails sent, SMS delivered (the provider says
    // so), nothing on paper for someone reached electronically.
    eventually(WAIT, "the SMS reported delivered", || async {
        (notices(&env, &reference, "sms", "delivered").await == 2).then_some(())
    })
    .await;
    assert_eq!(notices(&env, &reference, "email", "sent").await, 2);
    let db = env.db("notifier").await;
    let paper = format!(
        "SELECT count(*) FROM notices WHERE subject_ref = '{reference}' AND medium = 'paper'"
    );
    assert_eq!(count(&db, &paper).await, 0);
    db.close().await;
    assert!(app.metric("guichet_notifier_messages_total{medium=\"email\",kind=\"attestation_issued\",outcome=\"sent\"}").await >= 1.0);

    // The agents who answer her see what she was sent, never where to.
    let path = format!("/api/v1/dossiers/{reference}/notices");
    let seen: Vec<Value> = app
        .as_agent(reqwest::Method::GET, "instructor-59", &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut shown: Vec<(String, String, String)> = seen
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["medium"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    shown.sort();
    let expected: Vec<(String, String, String)> = [
        ("attestation_issued", "email", "sent"),
        ("attestation_issued", "sms", "delivered"),
        ("receipt", "email", "sent"),
        ("receipt", "sms", "delivered"),
    ]
    .iter()
    .map(|(k, m, s)| (k.to_string(), m.to_string(), s.to_string()))
    .collect();
    assert_eq!(shown, expected);
    let body = serde_json::to_string(&seen).unwrap();
    assert!(
        !body.contains("example.org") && !body.contains("+336"),
        "{body}"
    );
    let anonymous = app.get(&path).await;
    assert_eq!(anonymous.status(), 401);
    let elsewhere = app
        .as_agent(reqwest::Method::GET, "instructor-75", &path)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    common::stop(app, env).await;
}

on_both_backends!(a_call_centre_filer_answered_by_post_gets_a_letter_on_the_print_list);
async fn a_call_centre_filer_answered_by_post_gets_a_letter_on_the_print_list(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(env.config(), &inbox, &sms, daytime_clock()).await;

    let mut body = example("renewal-employee.json");
    body["applicant"]["family_name"] = json!("Papier");
    body["contact"] = json!({
        "address": {"line1": "4 rue du Port", "postal_code": "59140", "city": "Dunkerque"},
        "answer_channel": "post",
    });
    let raw: guichet_dossier::RawFiling = serde_json::from_value(body).unwrap();
    let mut raw = raw;
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let filing = guichet_dossier::Filing::parse(
        &raw,
        &guichet_dossier::filing::RawProvenance::Web { account_id: None },
        guichet_dossier::calendar::paris_date(Utc::now()),
    )
    .unwrap();
    let mut ccc = CallCentreClient::new(app.grpc_as(PREFECTURE_AGENT).await);
    let reference = ccc
        .file_on_behalf(pb::FileOnBehalfRequest {
            filing: Some(guichet_proto::convert::filing_to_pb(&filing)),
            agent_id: "ccc-agent-3".into(),
            call_id: "call-0042".into(),
            consent_recorded: true,
        })
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap()
        .reference;

    let letter = eventually(WAIT, "the letter on the print list", || async {
        let letters: Vec<Value> = app
            .mailroom_get(&format!("/api/v1/postal/letters?reference={reference}"))
            .await
            .json()
            .await
            .ok()?;
        letters.into_iter().find(|l| l["kind"] == "found_complete")
    })
    .await;
    let pdf = app
        .mailroom_get(&format!(
            "/api/v1/postal/letters/{}",
            letter["id"].as_str().unwrap()
        ))
        .await
        .bytes()
        .await
        .unwrap();
    let text = pdf_text(&pdf);
    assert!(text.contains("Samira PAPIER"), "{text}");
    assert!(text.contains("4 rue du Port"), "{text}");
    assert!(
        text.contains(&format!("enregistrée sous le numéro {reference}")),
        "{text}"
    );
    assert_eq!(notices(&env, &reference, "paper", "sent").await, 1);
    // Nothing else was given: no e-mail, no SMS.
    assert!(inbox.messages().iter().all(|m| !m.raw.contains(&reference)));
    assert!(sms.messages().iter().all(|s| !s.body.contains(&reference)));
    common::stop(app, env).await;
}

on_both_backends!(when_every_electronic_medium_fails_for_good_paper_follows);
async fn when_every_electronic_medium_fails_for_good_paper_follows(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(env.config(), &inbox, &sms, daytime_clock()).await;

    // The SMS provider refuses this number for good; the relay refuses
    // nothing, so the e-mail address is one no relay takes: no e-mail given.
    let mut body = example("renewal-employee.json");
    body["applicant"]["family_name"] = json!("Fixe");
    body["contact"]["email"] = Value::Null;
    body["contact"]["phone"] = json!(NOT_A_MOBILE);
    body["contact"]["answer_channel"] = json!("sms");
    let reference = app.file_accepted(&body).await;
    eventually(WAIT, "the letter that follows the failed SMS", || async {
        let letters: Vec<Value> = app
            .mailroom_get(&format!("/api/v1/postal/letters?reference={reference}"))
            .await
            .json()
            .await
            .ok()?;
        letters.into_iter().find(|l| l["kind"] == "found_complete")
    })
    .await;
    assert_eq!(notices(&env, &reference, "sms", "failed").await, 1);
    assert_eq!(notices(&env, &reference, "paper", "sent").await, 1);

    // Taken by the provider, then reported undelivered: paper follows too.
    body["applicant"]["family_name"] = json!("Eteint");
    body["contact"]["phone"] = json!(NEVER_DELIVERED);
    let reference = app.file_accepted(&body).await;
    eventually(
        WAIT,
        "the letter that follows the undelivered SMS",
        || async { (notices(&env, &reference, "paper", "sent").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(notices(&env, &reference, "sms", "failed").await, 1);
    common::stop(app, env).await;
}

/// A title expiry alert as instruction publishes it.
fn expiry_alert(expires_on: NaiveDate) -> OutgoingMessage {
    use chrono::Datelike;
    let alert = pb::TitleExpiryAlert {
        kind: pb::TitleKind::TemporaryCard as i32,
        number_ending: "59T1".into(),
        expires_on: Some(pb::CalendarDate {
            year: expires_on.year(),
            month: expires_on.month() as i32,
            day: expires_on.day() as i32,
        }),
        offset_days: 60,
        renew_by: None,
        family_name: "Benali".into(),
        given_names: "Samira".into(),
        contact: Some(pb::Contact {
            email: "s.benali@example.org".into(),
            phone: "+33612345679".into(),
            address: None,
            answer_channel: pb::AnswerChannel::Email as i32,
            language: "fr".into(),
        }),
        prefecture: "59".into(),
        title_key: guichet_dossier::alerts::title_key("temporary_card", "FR59T1"),
    };
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        "title.expiry_alert.email".into(),
        alert.encode_to_vec(),
    )
}

on_both_backends!(an_expiry_alert_is_sent_once_however_often_it_is_swept_or_delivered);
async fn an_expiry_alert_is_sent_once_however_often_it_is_swept_or_delivered(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let clock = daytime_clock();
    let app = notified_app(env.config(), &inbox, &sms, clock.clone()).await;

    // A title recorded as imported, expiring in 60 days: the sweep warns.
    let in_60 = paris_today(&clock) + Days::new(60);
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let csv = env.data_dir.join("legacy.csv");
    std::fs::write(
        &csv,
        format!(
            "kind,number,expires_on,family_name,given_names,birth_date,nationality,email,phone,address_line1,postal_code,city,answer_channel\n\
             temporary_card,FR59T1,{in_60},Benali,Samira,1991-03-02,DZA,s.benali@example.org,+33612345679,12 rue Solférino,59000,Lille,email\n"
        ),
    )
    .unwrap();
    let (records, _) = guichet_instruction::titles::read_file(&csv, paris_today(&clock)).unwrap();
    let db = env.db("instruction").await;
    guichet_instruction::titles::record(&db, &records, "imported", None, clock.now())
        .await
        .unwrap();
    db.close().await;

    // Three sweeps at least, and the same alert delivered twice more.
    app.two_more_sweeps().await;
    app.two_more_sweeps().await;
    let alert = expiry_alert(in_60);
    for _ in 0..2 {
        for r in app.mesh.bus.publish(std::slice::from_ref(&alert)).await {
            r.unwrap();
        }
    }
    app.two_more_sweeps().await;

    let to_her = || {
        inbox
            .messages()
            .into_iter()
            .filter(|m| m.to == "s.benali@example.org")
            .count()
    };
    eventually(WAIT, "the expiry alert by e-mail", || async {
        (to_her() >= 1).then_some(())
    })
    .await;
    let texts = eventually(WAIT, "the expiry alert by SMS", || async {
        let t: Vec<String> = sms
            .messages()
            .into_iter()
            .filter(|s| s.to == "+33612345679")
            .map(|s| s.body)
            .collect();
        (!t.is_empty()).then_some(t)
    })
    .await;
    // Every alert, swept or published, taken off the queue and planned;
    // every message planned, sent.
    app.two_more_sweeps().await;
    let db = env.db("notifier").await;
    eventually(WAIT, "every event taken and every message sent", || async {
        let depth = app
            .mesh
            .bus
            .queue_depth(guichet_kit::bus::NOTIFIER_QUEUE)
            .await
            .ok()?;
        let queued = count(&db, "SELECT count(*) FROM notices WHERE state = 'queued'").await;
        (depth == 0 && queued == 0).then_some(())
    })
    .await;
    assert_eq!(to_her(), 1, "one e-mail");
    let texts_now: Vec<_> = sms
        .messages()
        .into_iter()
        .filter(|s| s.to == "+33612345679")
        .collect();
    assert_eq!(texts_now.len(), 1, "one SMS: {texts:?}");
    // The date is hers: in the e-mail, not in the SMS.
    assert!(texts[0].contains("expire bientot"), "{}", texts[0]);
    assert!(
        !texts[0].contains(&in_60.format("%d/%m/%Y").to_string()),
        "{}",
        texts[0]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM notices WHERE kind = 'expiry_alert'"
        )
        .await,
        2,
        "one message per medium"
    );
    db.close().await;
    common::stop(app, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// 500 messages due while the SMTP server is down for two minutes: all
/// arrive once it is back, none twice.
async fn the_smtp_server_down_for_two_minutes_delays_500_mails_and_loses_none() {
    let env = TestEnv::on(Backend::Servers).await;
    let mut inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let app = notified_app(env.config(), &inbox, &sms, daytime_clock()).await;
    inbox.stop().await;
    let stopped = tokio::time::Instant::now();

    let events: Vec<OutgoingMessage> = (0..500)
        .map(|i| {
            case_event(
                "found_complete",
                &format!("W26-TEST-{i:04}-X"),
                &format!("person-{i}@example.org"),
            )
        })
        .collect();
    for chunk in events.chunks(100) {
        for r in app.mesh.bus.publish(chunk).await {
            r.unwrap();
        }
    }
    let db = env.db("notifier").await;
    eventually(WAIT, "500 e-mails planned and failing for now", || async {
        let failing = count(
            &db,
            "SELECT count(*) FROM notices WHERE medium = 'email' AND state = 'queued' AND attempts > 0",
        )
        .await;
        (failing == 500).then_some(())
    })
    .await;
    let down_for = Duration::from_secs(120).saturating_sub(stopped.elapsed());
    tokio::time::sleep(down_for).await;
    assert!(inbox.messages().is_empty());
    inbox.restart().await;

    eventually(Duration::from_secs(300), "all 500 e-mails sent", || async {
        let sent = count(&db, "SELECT count(*) FROM notices WHERE state = 'sent'").await;
        (sent == 500).then_some(())
    })
    .await;
    let mails = inbox.messages();
    let recipients: BTreeSet<_> = mails.iter().map(|m| m.to.clone()).collect();
    assert_eq!((mails.len(), recipients.len()), (500, 500));
    assert_eq!(
        count(&db, "SELECT count(*) FROM notices WHERE state = 'failed'").await,
        0
    );
    db.close().await;
    common::stop(app, env).await;
}

on_both_backends!(the_notifier_queue_stays_within_its_bound_through_10000_events);
/// 10,000 events against a notifier queue bounded at 500: a publish past the
/// bound is refused (and tried again, as an outbox does), the depth never
/// passes the bound, and every event is taken in the end, none lost.
async fn the_notifier_queue_stays_within_its_bound_through_10000_events(backend: Backend) {
    use guichet_kit::bus::{Bound, Bounds, NOTIFIER_QUEUE};
    const BOUND: u32 = 500;
    const EVENTS: usize = 10_000;
    let env = TestEnv::on(backend).await;
    let bounds = Bounds::default()
        .with(
            NOTIFIER_QUEUE,
            Bound {
                max_length: BOUND,
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            },
        )
        .unwrap();
    let bus = env.open_bus_with_bounds(bounds).await;
    let config = env.config();
    let app = App::builder(&config)
        .only(&["notifier"])
        .bus(bus.clone())
        .start()
        .await;

    // Every tenth event calls for an e-mail (a receipt); the others are
    // steps nobody is told of, which the notifier takes and acks.
    let event = |i: usize| {
        let kind = if i.is_multiple_of(10) {
            "found_complete"
        } else {
            "taken"
        };
        case_event(
            kind,
            &format!("W26-BULK-{i:05}-X"),
            &format!("bulk-{i}@example.org"),
        )
    };
    let mut pending: Vec<OutgoingMessage> = (0..EVENTS).map(event).collect();
    let mut refused = 0usize;
    let mut deepest = 0u32;
    while !pending.is_empty() {
        let batch: Vec<OutgoingMessage> = pending.drain(..pending.len().min(200)).collect();
        let results = bus.publish(&batch).await;
        let again: Vec<OutgoingMessage> = batch
            .into_iter()
            .zip(results)
            .filter_map(|(m, r)| r.is_err().then_some(m))
            .collect();
        refused += again.len();
        deepest = deepest.max(bus.queue_depth(NOTIFIER_QUEUE).await.unwrap());
        if !again.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pending.splice(0..0, again);
    }
    eventually(Duration::from_secs(120), "the queue drained", || async {
        let depth = bus.queue_depth(NOTIFIER_QUEUE).await.ok()?;
        (depth == 0).then_some(())
    })
    .await;
    // RabbitMQ counts a quorum queue's length after taking a publish, so
    // it may pass its bound by the messages in flight; never by more.
    assert!(
        deepest <= BOUND + 200,
        "the deepest the queue got: {deepest} (bound {BOUND})"
    );
    let db = env.db("notifier").await;
    eventually(WAIT, "one receipt per tenth event", || async {
        let n = count(
            &db,
            "SELECT count(DISTINCT subject_ref) FROM notices WHERE kind = 'receipt'",
        )
        .await;
        (n == (EVENTS / 10) as i64).then_some(())
    })
    .await;
    db.close().await;
    eprintln!(
        "10,000 events: {refused} publishes refused at the bound and tried again; deepest {deepest}"
    );
    common::stop(app, env).await;
}

on_both_backends!(appointments_and_reports_are_told_and_the_reminder_follows_the_appointment);
/// An appointment booked online with an e-mail and a phone: confirmed on
/// both, its reminder planned for the eve at 10:00; moved, the old reminder
/// is cancelled and the new one sent when its time comes. A report opened
/// by the call centre is acknowledged by e-mail.
async fn appointments_and_reports_are_told_and_the_reminder_follows_the_appointment(
    backend: Backend,
) {
    use guichet_proto::v1::desk_client::DeskClient;
    let env = TestEnv::on(backend).await;
    let inbox = SmtpInbox::start().await;
    let sms = SmsDouble::start().await;
    let clock = daytime_clock();
    let app = notified_app(env.config(), &inbox, &sms, clock.clone()).await;
    let mut desk = DeskClient::new(app.grpc_as(PREFECTURE_AGENT).await);
    desk.upsert_site(common::weekday_site(
        "59-lille",
        "Préfecture du Nord, Lille",
        "59",
        "08:30",
    ))
    .await
    .unwrap();
    let mut day = paris_today(&clock) + Days::new(3);
    while !guichet_dossier::calendar::is_working_day(day, "59") {
        day = day + Days::new(1);
    }
    let slot = guichet_dossier::desk::from_local(day.and_hms_opt(9, 0, 0).unwrap()).unwrap();
    let booked = app
        .http
        .post(format!("{}/api/v1/appointments", app.base))
        .header("Idempotency-Key", "notified-booking-1")
        .json(&json!({
            "site_id": "59-lille",
            "starts_at": slot.to_rfc3339(),
            "person": {"family_name": "Diallo", "given_names": "Awa",
                       "email": "a.diallo@example.org", "phone": "06 11 22 33 44"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status(), 201);
    let booked: Value = booked.json().await.unwrap();
    let id = booked["id"].as_str().unwrap().to_string();
    let secret = booked["secret"].as_str().unwrap().to_string();

    let at_nine = day.format("%d/%m/%Y à 09h00").to_string();
    let mail_saying = |words: String| {
        let inbox = &inbox;
        async move {
            inbox
                .messages()
                .into_iter()
                .find(|m| m.to == "a.diallo@example.org" && m.raw.contains(&words))
        }
    };
    let confirmation = eventually(WAIT, "the confirmation e-mail", || {
        mail_saying(format!("{id})"))
    })
    .await;
    // With the notice to show at the desk, signed like every paper.
    let notice = confirmation
        .attachment(&format!("convocation-{id}.pdf"))
        .expect("the appointment notice attached");
    let (verdict, status) =
        crate::documents::check_paper(&app, &env.data_dir, "convocation.pdf", &notice).await;
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("genuine"), 0),
        "{verdict}"
    );
    assert_eq!(verdict["kind"], "appointment", "{verdict}");
    // The person downloads it again by their link, in English, just as
    // genuine; the id alone gets nothing.
    let again = app
        .http
        .get(format!(
            "{}/api/v1/appointments/{id}/notice?language=en",
            app.base
        ))
        .header("X-Link-Secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["content-type"], "application/pdf");
    let again = again.bytes().await.unwrap();
    let (verdict, status) =
        crate::documents::check_paper(&app, &env.data_dir, "convocation-en.pdf", &again).await;
    assert_eq!(
        (verdict["verdict"].as_str(), status),
        (Some("genuine"), 0),
        "{verdict}"
    );
    assert!(
        common::pdf_text(&again).contains("appointment"),
        "in English"
    );
    let by_id = app
        .http
        .get(format!("{}/api/v1/appointments/{id}/notice", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.status(), 401);
    // It gives the person the follow-up code the booking answered.
    assert_eq!(
        confirmation
            .word_after("code de suivi personnel : ")
            .as_deref(),
        Some(secret.as_str()),
        "{}",
        confirmation.raw
    );
    let sms_saying = |words: String| {
        let sms = &sms;
        async move {
            sms.messages()
                .into_iter()
                .find(|s| s.to == "+33611223344" && s.body.contains(&words))
        }
    };
    let confirmed = eventually(WAIT, "the confirmation SMS", || {
        sms_saying(format!("RDV en préfecture le {at_nine}"))
    })
    .await;
    assert!(
        confirmed.body.starts_with("Bonjour Awa, "),
        "{}",
        confirmed.body
    );

    // The reminder waits for the eve, 10:00 in Paris, by both media.
    let db = env.db("notifier").await;
    let reminders = |state: &str| {
        format!(
            "SELECT count(*) FROM notices WHERE subject_ref = '{id}' \
             AND kind = 'appointment_reminder' AND state = '{state}'"
        )
    };
    assert_eq!(count(&db, &reminders("queued")).await, 2);

    // Moved half an hour later: the first reminder is cancelled, a new one
    // planned, and the person told.
    let later = slot + chrono::Duration::minutes(30);
    let moved = app
        .http
        .post(format!("{}/api/v1/appointments/{id}/move", app.base))
        .header("X-Link-Secret", &secret)
        .json(&json!({"starts_at": later.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200, "{:?}", moved.text().await);
    let at_half_past = day.format("%d/%m/%Y à 09h30").to_string();
    eventually(WAIT, "the SMS of the move", || {
        sms_saying(format!("déplacé au {at_half_past}"))
    })
    .await;
    eventually(WAIT, "the first reminder cancelled", || async {
        (count(&db, &reminders("cancelled")).await == 2).then_some(())
    })
    .await;
    assert_eq!(count(&db, &reminders("queued")).await, 2);

    // The eve comes: the reminder goes, for the new time only.
    let eve = guichet_dossier::notice::reminder_at(later, clock.now()).expect("a reminder");
    clock.advance(eve - clock.now() + chrono::Duration::minutes(1));
    let reminded = eventually(WAIT, "the reminder SMS", || {
        sms_saying(format!("rappel : RDV en préfecture le {at_half_past}"))
    })
    .await;
    assert!(reminded.body.contains(&id), "{}", reminded.body);
    eventually(WAIT, "the reminder e-mail", || {
        mail_saying("Rappel".to_string())
    })
    .await;
    eventually(WAIT, "both reminders sent", || async {
        let sent = count(&db, &reminders("sent")).await + count(&db, &reminders("delivered")).await;
        (sent == 2).then_some(())
    })
    .await;
    assert!(sms.messages().iter().all(|s| {
        !s.body
            .contains(&format!("rappel : RDV en préfecture le {at_nine}"))
    }));

    // A report opened by the call centre: acknowledged by e-mail.
    let mut ccc = CallCentreClient::new(app.grpc_as(PREFECTURE_AGENT).await);
    let report = ccc
        .open_report(pb::OpenReportRequest {
            category: pb::ReportCategory::AppointmentImpossible as i32,
            what_was_tried: "no slot offered online for six weeks".into(),
            family_name: "Haidari".into(),
            given_names: "Ahmad".into(),
            contact: Some(pb::Contact {
                email: "a.haidari@example.org".into(),
                address: Some(pb::PostalAddress {
                    line1: "3 place du Marché".into(),
                    postal_code: "59000".into(),
                    city: "Lille".into(),
                    ..Default::default()
                }),
                answer_channel: pb::AnswerChannel::Email as i32,
                ..Default::default()
            }),
            procedure: pb::Procedure::Renewal as i32,
            agent_id: "ccc-agent-1".into(),
            call_id: "call-7".into(),
            idempotency_key: "notified-report-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ack = eventually(WAIT, "the report's acknowledgement", || {
        let inbox = &inbox;
        let id = report.id.clone();
        async move {
            inbox
                .messages()
                .into_iter()
                .find(|m| m.to == "a.haidari@example.org" && m.raw.contains(&id))
        }
    })
    .await;
    assert!(ack.raw.contains("Ahmad HAIDARI"), "{}", ack.raw);
    // Opened for them by the call centre, the report is theirs to follow
    // with the code the acknowledgement gives.
    let code = ack
        .word_after("code de suivi personnel : ")
        .expect("a follow-up code");
    let report_path = format!("{}/api/v1/reports/{}", app.base, report.id);
    let followed = app
        .http
        .get(&report_path)
        .header("X-Link-Secret", &code)
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200, "{:?}", followed.text().await);
    let refused = app
        .http
        .get(&report_path)
        .header("X-Link-Secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "another resource's code opens nothing"
    );
    db.close().await;
    common::stop(app, env).await;
}

on_both_backends!(an_appointment_step_delivered_after_a_later_one_changes_nothing);
/// A move handled before the booking it follows (the booking was retried):
/// the booking, older, is skipped, and the reminder kept is the move's.
async fn an_appointment_step_delivered_after_a_later_one_changes_nothing(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let config = env.config();
    let app = App::builder(&config).only(&["notifier"]).start().await;
    let now = Utc::now();
    let step = |kind: &str, starts_in_days: i64, changed_secs_ago: i64| {
        let appointment = pb::Appointment {
            id: "apt-out-of-order".into(),
            site_id: "59-lille".into(),
            starts_at: Some(guichet_proto::convert::timestamp_to_pb(
                now + chrono::Duration::days(starts_in_days),
            )),
            person: Some(pb::Person {
                given_names: "Awa".into(),
                family_name: "Diallo".into(),
                email: "a.diallo@example.org".into(),
                phone: String::new(),
            }),
            booked_at: Some(guichet_proto::convert::timestamp_to_pb(
                now - chrono::Duration::seconds(60),
            )),
            changed_at: Some(guichet_proto::convert::timestamp_to_pb(
                now - chrono::Duration::seconds(changed_secs_ago),
            )),
            prefecture: "59".into(),
            ..Default::default()
        };
        OutgoingMessage::traced(
            EVENTS_EXCHANGE,
            format!("appointment.{kind}.59-lille"),
            appointment.encode_to_vec(),
        )
    };
    // The move (10 s ago) arrives first, then the booking (60 s ago), then
    // a receipt: the one consumer takes them in order, so once the
    // receipt is planned, the booking has been handled.
    let sentinel = case_event("found_complete", "W26-SENT-INEL-X", "sentinel@example.org");
    for r in app
        .mesh
        .bus
        .publish(&[step("moved", 6, 10), step("booked", 5, 60), sentinel])
        .await
    {
        r.unwrap();
    }
    let db = env.db("notifier").await;
    eventually(WAIT, "the three events taken", || async {
        let after = count(
            &db,
            "SELECT count(*) FROM notices WHERE subject_ref = 'W26-SENT-INEL-X'",
        )
        .await;
        (after == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM notices WHERE kind = 'appointment_moved'"
        )
        .await,
        1
    );
    // Taken off the queue but planned nothing: only the move was told.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM notices WHERE kind = 'appointment_booked'"
        )
        .await,
        0
    );
    let reminders: Vec<String> = sqlx_reminders(&env).await;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM notices WHERE kind = 'appointment_reminder' AND state = 'queued'"
        )
        .await,
        1
    );
    db.close().await;
    common::stop(app, env).await;
}

/// The reminders' keys, whatever their state.
async fn sqlx_reminders(env: &TestEnv) -> Vec<String> {
    let db = env.db("notifier").await;
    let keys: Vec<String> = db
        .scalars(guichet_kit::sql::Stmt::new(
            "SELECT notice_key FROM notices WHERE kind = 'appointment_reminder'",
        ))
        .await
        .unwrap();
    db.close().await;
    keys
}
