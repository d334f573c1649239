//! The behaviour of each channel store, one suite run on both databases
//! (PostgreSQL with a database of its own per test, SQLite in a folder),
//! without starting the mesh: the filing ledger, the call centre's reports,
//! the desks' sites and appointments, and the postal batches, envelopes and
//! letters. Each store opens its schema with its service's migrations, as
//! the service does. Beside what the stores do, each suite damages a stored
//! value by hand and checks the read fails, naming the row, rather than
//! answering a default.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{Backend, TestEnv, count};
use guichet_dossier::calendar::{add_working_days, paris_date};
use guichet_dossier::desk::{AppointmentState, BookingRoute, from_local};
use guichet_dossier::filing::RawProvenance;
use guichet_dossier::postal::{BatchState, EnvelopeAction, EnvelopeState, PageRole};
use guichet_dossier::signalement::{
    AlternativeKind, Category, ReportOutcome, ReportState, ReportStep,
};
use guichet_dossier::{Filing, Procedure, RawFiling};
use guichet_intake::Ledger;
use guichet_intake_ccc::reports::{NewReport, ReportError, Reports, StepChange};
use guichet_intake_pan::desks::{DeskError, Desks, NewBooking};
use guichet_intake_postal::store::{
    NewBatch, NewEnvelope, NewEnvelopeEvent, NewLetter, PageReading, Store, StoreError, StoredField,
};
use guichet_kit::db::{Database, Migrations, Unreadable};
use guichet_kit::sql::Stmt;
use guichet_kit::{ErrorKind, clock};
use guichet_proto::v1 as pb;

/// A store's database, migrated as its service migrates it.
pub(crate) async fn open(env: &TestEnv, schema: &str, migrations: &Migrations) -> Database {
    Database::open(
        env.database_url.as_deref(),
        &env.data_dir,
        schema,
        guichet_kit::db::Pool::sized(2),
        migrations,
    )
    .await
    .unwrap()
}

/// Writes a value the service never would, as damage or a bug would.
async fn damage(db: &Database, sql: &str) {
    damage_with(db, Stmt::new(sql.to_string())).await;
}

/// `damage` where the value is bound, as bytes are.
async fn damage_with(db: &Database, s: Stmt) {
    assert_eq!(db.execute(s.clone()).await.unwrap(), 1, "{s:?}");
}

/// Bytes that are no protobuf message: field number 0 is invalid.
fn not_protobuf() -> Vec<u8> {
    vec![0, 0]
}

/// The read failed on the damaged row, and says which row it was.
fn names_the_row(e: &Unreadable, row: &str) {
    assert_eq!(e.row, row, "{e:?}");
}

// ---- the outbox ----------------------------------------------------------------

/// The outbox relay takes its batch by walking the unsent rows' index in
/// order, whatever PostgreSQL believes of the table. Here its statistics
/// are taken while it is empty, then thousands of rows come and most are
/// sent, as in a busy minute before autovacuum: the pick must neither read
/// every unsent entry (bitmap scan) nor sort them.
#[tokio::test]
async fn the_outbox_relay_walks_its_index_however_stale_the_statistics() {
    let env = TestEnv::on(Backend::Servers).await;
    let db = open(
        &env,
        guichet_intake_pan::server::SCHEMA,
        &guichet_intake_pan::server::MIGRATIONS,
    )
    .await;
    db.execute(Stmt::new("ANALYZE outbox")).await.unwrap();
    db.execute(Stmt::new(
        "INSERT INTO outbox (message_id, exchange, routing_key, body) \
         SELECT 'm-' || n, 'guichet.dossiers', 'dossier.submitted.pan', '\\x00' \
         FROM generate_series(1, 5000) AS n",
    ))
    .await
    .unwrap();
    db.execute(Stmt::new(
        "UPDATE outbox SET sent_at = now(), attempts = 1 \
         WHERE substr(message_id, 3)::int % 50 <> 0",
    ))
    .await
    .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await,
        100
    );

    let mut tx = db.begin_write().await.unwrap();
    tx.conn().walk_queue_in_order().await.unwrap();
    let pick = guichet_kit::outbox::OutboxRelay::PICK_PG.replace("$1", "256");
    let explain = format!("EXPLAIN (FORMAT JSON) {pick}");
    let plan: serde_json::Value = sqlx::query_scalar(&explain)
        .fetch_one(tx.conn().postgres().unwrap().0)
        .await
        .unwrap();
    let plan = plan.to_string();
    assert!(plan.contains("\"Index Scan\""), "{plan}");
    assert!(plan.contains("outbox_unsent_order"), "{plan}");
    assert!(!plan.contains("Bitmap"), "{plan}");
    assert!(!plan.contains("\"Sort\""), "{plan}");
    // And it takes the unsent rows, least tried first.
    let first_three = guichet_kit::outbox::OutboxRelay::PICK_PG
        .replacen(
            "id, message_id, exchange, routing_key, headers::text, body",
            "message_id",
            1,
        )
        .replace("$1", "3");
    let taken: Vec<String> = sqlx::query_scalar(&first_three)
        .fetch_all(tx.conn().postgres().unwrap().0)
        .await
        .unwrap();
    assert_eq!(taken, ["m-50", "m-100", "m-150"]);
}

// ---- the filing ledger -------------------------------------------------------

/// An example filing, parsed as the web channel would, under `key`.
fn filing(name: &str, key: &str) -> Filing {
    let mut json = common::example(name);
    json["idempotency_key"] = key.into();
    let raw: RawFiling = serde_json::from_value(json).unwrap();
    let today = paris_date(Utc::now());
    Filing::parse(&raw, &RawProvenance::Web { account_id: None }, today).unwrap()
}

on_both_backends!(a_filing_is_recorded_once_per_key);
async fn a_filing_is_recorded_once_per_key(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let db = open(&env, "intake_web", &guichet_intake::MIGRATIONS).await;
    let ledger = Ledger::new(db.clone(), clock::system());

    let first = ledger
        .accept(filing("renewal-employee.json", "contract-1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = ledger
        .accept(filing("renewal-employee.json", "contract-1"))
        .await
        .unwrap();
    assert!(!again.created, "a replay records nothing new");
    assert_eq!(
        again.receipt, first.receipt,
        "the saved receipt is answered"
    );
    assert_eq!(again.trace_id, first.trace_id);

    let other = ledger
        .accept(filing("first-application-student.json", "contract-1"))
        .await
        .unwrap_err();
    assert_eq!(other.kind, ErrorKind::Conflict, "{other:?}");

    let second = ledger
        .accept(filing("first-application-student.json", "contract-2"))
        .await
        .unwrap();
    assert!(second.created);
    assert_ne!(second.receipt.reference, first.receipt.reference);
    assert_eq!(count(&db, "SELECT count(*) FROM filings").await, 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox").await,
        2,
        "one dossier message per filing recorded, none for a replay"
    );
    drop(ledger);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(a_saved_receipt_that_does_not_decode_is_an_error);
async fn a_saved_receipt_that_does_not_decode_is_an_error(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let db = open(&env, "intake_web", &guichet_intake::MIGRATIONS).await;
    let ledger = Ledger::new(db.clone(), clock::system());
    let receipt = ledger
        .accept(filing("renewal-employee.json", "contract-damaged"))
        .await
        .unwrap()
        .receipt;
    damage_with(
        &db,
        Stmt::new("UPDATE filings SET receipt = $1 WHERE idempotency_key = 'contract-damaged'")
            .bind(not_protobuf()),
    )
    .await;
    let replay = ledger
        .accept(filing("renewal-employee.json", "contract-damaged"))
        .await
        .unwrap_err();
    assert_eq!(replay.kind, ErrorKind::Internal, "{replay:?}");
    assert!(!receipt.reference.is_empty());
    drop(ledger);
    db.close().await;
    env.cleanup().await;
}

// ---- the call centre's reports -----------------------------------------------

async fn reports(env: &TestEnv) -> Reports {
    Reports::new(
        open(
            env,
            guichet_intake_ccc::server::SCHEMA,
            &guichet_intake_ccc::server::MIGRATIONS,
        )
        .await,
    )
}

pub(crate) fn new_report(key: &str, what_was_tried: &str, deadline: NaiveDate) -> NewReport {
    NewReport {
        id: uuid::Uuid::now_v7().to_string(),
        idempotency_key: key.into(),
        category: Category::AppointmentImpossible,
        what_was_tried: what_was_tried.into(),
        family_name: "Haidari".into(),
        given_names: "Ahmad".into(),
        contact: pb::Contact {
            email: "a.haidari@example.org".into(),
            phone: "07 00 00 00 01".into(),
            address: Some(home()),
            ..Default::default()
        },
        procedure: Some(Procedure::Renewal),
        prefecture: "59".into(),
        opened_by: "agent-7".into(),
        call_id: "call-1".into(),
        deadline,
    }
}

fn home() -> pb::PostalAddress {
    pb::PostalAddress {
        line1: "3 place du Marché".into(),
        line2: String::new(),
        postal_code: "59000".into(),
        city: "Lille".into(),
        country: "FR".into(),
    }
}

pub(crate) async fn event_kinds(r: &Reports, id: &str) -> Vec<String> {
    r.events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

on_both_backends!(a_report_is_opened_once_per_key);
async fn a_report_is_opened_once_per_key(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let r = reports(&env).await;
    let (now, today) = (Utc::now(), paris_date(Utc::now()));
    let deadline = add_working_days(today, 5, "59");

    let opened = r
        .open(new_report("key-1", "no slot online", deadline), now, today)
        .await
        .unwrap();
    assert_eq!(opened.state, ReportState::Open);
    assert_eq!(opened.category, Category::AppointmentImpossible);
    assert_eq!(*opened.procedure, Some(Procedure::Renewal));
    assert_eq!(opened.contact.address, Some(home()));
    assert_eq!(opened.deadline, deadline);
    let got = r.get(&opened.id).await.unwrap().unwrap();
    assert_eq!(
        (got.id.as_str(), got.state),
        (opened.id.as_str(), ReportState::Open)
    );
    assert!(r.get("no-such-report").await.unwrap().is_none());
    assert_eq!(event_kinds(&r, &opened.id).await, ["opened"]);

    // The same key and report: the report it opened. Another report: refused.
    let replay = r
        .open(new_report("key-1", "no slot online", deadline), now, today)
        .await
        .unwrap();
    assert_eq!(replay.id, opened.id);
    let reused = r
        .open(new_report("key-1", "something else", deadline), now, today)
        .await
        .unwrap_err();
    assert!(matches!(reused, ReportError::KeyReused), "{reused:?}");
    assert_eq!(count(r.db(), "SELECT count(*) FROM reports").await, 1);
    assert_eq!(count(r.db(), "SELECT count(*) FROM outbox").await, 1);

    let listed = r.list("59", Some(ReportState::Open), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(r.list("62", None, 10).await.unwrap().is_empty());
    r.db().close().await;
    env.cleanup().await;
}

on_both_backends!(a_report_moves_through_its_states_with_its_events);
async fn a_report_moves_through_its_states_with_its_events(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let r = reports(&env).await;
    let (now, today) = (Utc::now(), paris_date(Utc::now()));
    let id = r
        .open(
            new_report("key-2", "upload fails", add_working_days(today, 5, "59")),
            now,
            today,
        )
        .await
        .unwrap()
        .id;

    let kit = StepChange::Offer {
        kind: AlternativeKind::PaperKit,
        appointment_id: None,
        kit_sent_to: Some(home()),
    };
    let offered = r
        .step(
            &id,
            ReportStep::OfferAlternative,
            kit,
            "agent-7",
            now,
            today,
        )
        .await
        .unwrap();
    assert_eq!(offered.state, ReportState::AlternativeOffered);
    assert_eq!(*offered.alternative_kind, Some(AlternativeKind::PaperKit));
    assert_eq!(*offered.kit_sent_to, Some(home()));
    assert_eq!(offered.offered_by.as_deref(), Some("agent-7"));

    let close = || StepChange::Close {
        outcome: ReportOutcome::Filed,
        note: "filed by post".into(),
    };
    let closed = r
        .step(&id, ReportStep::Close, close(), "agent-8", now, today)
        .await
        .unwrap();
    assert_eq!(closed.state, ReportState::Closed);
    assert_eq!(*closed.outcome, Some(ReportOutcome::Filed));
    assert_eq!(closed.outcome_note, "filed by post");
    let again = r
        .step(&id, ReportStep::Close, close(), "agent-8", now, today)
        .await
        .unwrap_err();
    assert!(matches!(again, ReportError::WrongState(_)), "{again:?}");
    let missing = r
        .step(
            "no-such-report",
            ReportStep::Close,
            close(),
            "agent-8",
            now,
            today,
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, ReportError::NotFound(_)), "{missing:?}");

    assert_eq!(
        event_kinds(&r, &id).await,
        ["opened", "alternative_offered", "closed"]
    );
    assert_eq!(
        count(r.db(), "SELECT count(*) FROM outbox").await,
        3,
        "one event published per step taken, none for a refused one"
    );
    r.db().close().await;
    env.cleanup().await;
}

on_both_backends!(a_report_past_its_deadline_is_escalated_once);
async fn a_report_past_its_deadline_is_escalated_once(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let r = reports(&env).await;
    let (now, today) = (Utc::now(), paris_date(Utc::now()));
    let late = r
        .open(
            new_report("key-3", "no receipt", today - Duration::days(1)),
            now,
            today,
        )
        .await
        .unwrap();
    r.open(
        new_report("key-4", "no receipt", add_working_days(today, 5, "59")),
        now,
        today,
    )
    .await
    .unwrap();

    assert_eq!(r.escalate_overdue(now, today).await.unwrap(), 1);
    assert_eq!(r.escalate_overdue(now, today).await.unwrap(), 0);
    let escalated = r.get(&late.id).await.unwrap().unwrap();
    assert_eq!(escalated.state, ReportState::Escalated);
    assert_eq!(event_kinds(&r, &late.id).await, ["opened", "escalated"]);
    let figures = r.figures(today).await.unwrap();
    assert_eq!(figures.len(), 1);
    assert_eq!((figures[0].waiting, figures[0].overdue), (2, 1));
    r.db().close().await;
    env.cleanup().await;
}

on_both_backends!(a_damaged_report_is_an_error_not_a_default);
async fn a_damaged_report_is_an_error_not_a_default(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let r = reports(&env).await;
    let (now, today) = (Utc::now(), paris_date(Utc::now()));
    let deadline = add_working_days(today, 5, "59");
    // One report per damaged column, so each is the only damage.
    let damages = [
        (
            "state",
            Stmt::new("UPDATE reports SET state = 'reopened' WHERE id = $1"),
        ),
        (
            "category",
            Stmt::new("UPDATE reports SET category = 'lost_passport' WHERE id = $1"),
        ),
        (
            "procedure",
            Stmt::new("UPDATE reports SET procedure = 'naturalisation' WHERE id = $1"),
        ),
        (
            "alternative",
            Stmt::new("UPDATE reports SET alternative_kind = 'pigeon' WHERE id = $1"),
        ),
        (
            "outcome",
            Stmt::new("UPDATE reports SET outcome = 'maybe' WHERE id = $1"),
        ),
        (
            "contact",
            Stmt::new("UPDATE reports SET contact = $1 WHERE id = $2").bind(not_protobuf()),
        ),
        (
            "kit address",
            Stmt::new("UPDATE reports SET kit_sent_to = $1 WHERE id = $2").bind(not_protobuf()),
        ),
    ];
    for (what, update) in damages {
        let id = r
            .open(new_report(what, what, deadline), now, today)
            .await
            .unwrap()
            .id;
        damage_with(r.db(), update.bind(id.as_str())).await;
        match r.get(&id).await {
            Err(ReportError::Unreadable(e)) => names_the_row(&e, &format!("report {id}")),
            other => panic!("{what}: {other:?}"),
        }
        let step = r
            .step(
                &id,
                ReportStep::Escalate,
                StepChange::Escalate,
                "guichet",
                now,
                today,
            )
            .await;
        assert!(
            matches!(step, Err(ReportError::Unreadable(_))),
            "{what}: {step:?}"
        );
    }
    assert!(matches!(
        r.list("", None, 10).await,
        Err(ReportError::Unreadable(_))
    ));
    assert!(matches!(
        r.figures(today).await,
        Err(ReportError::Unreadable(_))
    ));
    r.db().close().await;
    env.cleanup().await;
}

// ---- the desks -----------------------------------------------------------------

async fn desks(env: &TestEnv) -> (Desks, Database) {
    let db = open(
        env,
        guichet_intake_pan::server::SCHEMA,
        &guichet_intake_pan::server::MIGRATIONS,
    )
    .await;
    (Desks::new(db.clone()), db)
}

/// A site open on weekday mornings, a desk per place: `places` per slot,
/// `for_reports` of them kept for reports.
fn site(places: u32, for_reports: u32) -> pb::Site {
    let morning = |weekday| pb::OpeningHours {
        weekday,
        opens: "08:30".into(),
        closes: "12:00".into(),
    };
    pb::Site {
        id: "59-lille".into(),
        name: "Préfecture du Nord, Lille".into(),
        prefecture: "59".into(),
        opening_hours: (1..=5).map(morning).collect(),
        desks: places,
        slot_minutes: 30,
        places_per_slot: places,
        places_for_reports: for_reports,
        ..Default::default()
    }
}

/// A slot of the site a few working days ahead, at `hour:minute` in Paris.
fn slot(hour: u32, minute: u32) -> (NaiveDate, DateTime<Utc>) {
    let day = add_working_days(paris_date(Utc::now()), 3, "59");
    (
        day,
        from_local(day.and_hms_opt(hour, minute, 0).unwrap()).unwrap(),
    )
}

fn booking(key: &str, starts_at: DateTime<Utc>, report_id: Option<&str>) -> NewBooking {
    NewBooking {
        idempotency_key: key.into(),
        site_id: "59-lille".into(),
        starts_at,
        person: pb::Person {
            family_name: "Benali".into(),
            given_names: "Samira".into(),
            phone: "06 12 34 56 78".into(),
            email: String::new(),
        },
        route: BookingRoute::Phone,
        booked_by: "agent-7".into(),
        report_id: report_id.map(str::to_string),
    }
}

/// What `slots` says is booked at `at`.
async fn booked_at(d: &Desks, day: NaiveDate, at: DateTime<Utc>) -> (u32, u32, u32) {
    let s = d
        .slots("59-lille", day)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.starts_at == at)
        .unwrap();
    (s.booked, s.free, s.free_for_reports)
}

on_both_backends!(a_site_is_kept_and_read_back);
async fn a_site_is_kept_and_read_back(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (d, db) = desks(&env).await;
    let now = Utc::now();
    d.upsert_site(&site(2, 0), now).await.unwrap();
    d.upsert_site(&site(3, 1), now).await.unwrap();
    let got = d.site("59-lille").await.unwrap();
    assert_eq!((got.places_per_slot, got.places_for_reports), (3, 1));
    assert_eq!(d.sites("59").await.unwrap(), [site(3, 1)]);
    assert!(d.sites("62").await.unwrap().is_empty());
    assert!(matches!(
        d.site("62-arras").await,
        Err(DeskError::NoSite(_))
    ));
    let (day, _) = slot(9, 0);
    assert_eq!(d.slots("59-lille", day).await.unwrap().len(), 7);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(an_appointment_is_booked_once_per_key);
async fn an_appointment_is_booked_once_per_key(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (d, db) = desks(&env).await;
    let now = Utc::now();
    d.upsert_site(&site(2, 0), now).await.unwrap();
    let (day, nine) = slot(9, 0);

    let a = d.book(booking("book-1", nine, None), now).await.unwrap();
    assert_eq!(a.state, AppointmentState::Booked);
    assert_eq!(a.route, BookingRoute::Phone);
    assert_eq!(a.prefecture.as_deref(), Some("59"));
    assert_eq!(d.appointment(&a.id).await.unwrap().starts_at, nine);
    let again = d.book(booking("book-1", nine, None), now).await.unwrap();
    assert_eq!(
        again.id, a.id,
        "the same booking answers the appointment made"
    );
    assert_eq!(
        d.booked_with_key("book-1").await.unwrap().map(|r| r.id),
        Some(a.id.clone())
    );
    assert!(d.booked_with_key("book-9").await.unwrap().is_none());
    let ten = slot(10, 0).1;
    let reused = d.book(booking("book-1", ten, None), now).await.unwrap_err();
    assert!(matches!(reused, DeskError::KeyReused), "{reused:?}");
    assert_eq!(booked_at(&d, day, nine).await, (1, 1, 0), "one place taken");
    assert!(matches!(
        d.appointment("no-such").await,
        Err(DeskError::NoAppointment(_))
    ));
    let not_a_slot = d.book(booking("book-2", slot(9, 10).1, None), now).await;
    assert!(
        matches!(not_a_slot, Err(DeskError::BadSlot(_))),
        "{not_a_slot:?}"
    );
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(places_are_taken_and_given_back);
async fn places_are_taken_and_given_back(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (d, db) = desks(&env).await;
    let now = Utc::now();
    // Two places a slot, one kept for reports.
    d.upsert_site(&site(2, 1), now).await.unwrap();
    let (day, nine) = slot(9, 0);
    let half_past = slot(9, 30).1;

    let first = d.book(booking("p-1", nine, None), now).await.unwrap();
    assert_eq!(booked_at(&d, day, nine).await, (1, 0, 1));
    let full = d.book(booking("p-2", nine, None), now).await.unwrap_err();
    assert!(
        matches!(full, DeskError::SlotFull),
        "the kept place is not for it: {full:?}"
    );
    let for_report = d
        .book(booking("p-3", nine, Some("report-1")), now)
        .await
        .unwrap();
    assert_eq!(booked_at(&d, day, nine).await, (2, 0, 0));

    // Moving takes the new place and gives the old one back.
    let moved = d
        .move_to(
            &first.id,
            half_past,
            BookingRoute::Online,
            "the person",
            now,
        )
        .await
        .unwrap();
    assert_eq!(moved.starts_at, half_past);
    assert_eq!(booked_at(&d, day, nine).await, (1, 1, 0));
    assert_eq!(booked_at(&d, day, half_past).await, (1, 0, 1));

    // Cancelling gives the place back, once; cancelling again answers the same.
    let cancelled = d
        .cancel(
            &for_report.id,
            BookingRoute::Phone,
            "agent-7",
            "found a slot",
            now,
        )
        .await
        .unwrap();
    assert_eq!(cancelled.state, AppointmentState::Cancelled);
    assert_eq!(booked_at(&d, day, nine).await, (0, 1, 1));
    let twice = d
        .cancel(&for_report.id, BookingRoute::Phone, "agent-7", "again", now)
        .await
        .unwrap();
    assert_eq!(twice.state, AppointmentState::Cancelled);
    assert_eq!(booked_at(&d, day, nine).await, (0, 1, 1));
    let not_moved = d
        .move_to(&for_report.id, nine, BookingRoute::Phone, "agent-7", now)
        .await
        .unwrap_err();
    assert!(
        matches!(not_moved, DeskError::WrongState(_)),
        "{not_moved:?}"
    );
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(attendance_is_recorded_once_with_every_step_in_the_history);
async fn attendance_is_recorded_once_with_every_step_in_the_history(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (d, db) = desks(&env).await;
    let now = Utc::now();
    d.upsert_site(&site(1, 0), now).await.unwrap();
    let nine = slot(9, 0).1;
    let a = d.book(booking("a-1", nine, None), now).await.unwrap();

    let early = d
        .record_attendance(&a.id, true, "desk-1", now)
        .await
        .unwrap_err();
    assert!(matches!(early, DeskError::WrongState(_)), "{early:?}");
    let seen = d
        .record_attendance(&a.id, false, "desk-1", nine)
        .await
        .unwrap();
    assert_eq!(seen.state, AppointmentState::NoShow);
    let twice = d
        .record_attendance(&a.id, true, "desk-1", nine)
        .await
        .unwrap_err();
    assert!(matches!(twice, DeskError::WrongState(_)), "{twice:?}");

    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM appointment_events WHERE kind IN ('booked', 'no_show')"
        )
        .await,
        2
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM appointment_events").await,
        2
    );
    assert_eq!(count(&db, "SELECT count(*) FROM outbox").await, 2);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(a_damaged_site_or_appointment_is_an_error_not_a_default);
async fn a_damaged_site_or_appointment_is_an_error_not_a_default(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (d, db) = desks(&env).await;
    let now = Utc::now();
    d.upsert_site(&site(2, 0), now).await.unwrap();
    let nine = slot(9, 0).1;
    let a = d.book(booking("d-1", nine, None), now).await.unwrap();

    damage(
        &db,
        &format!(
            "UPDATE appointments SET state = 'lost' WHERE id = '{}'",
            a.id
        ),
    )
    .await;
    match d.appointment(&a.id).await {
        Err(DeskError::Unreadable(e)) => names_the_row(&e, &format!("appointment {}", a.id)),
        other => panic!("{other:?}"),
    }
    let cancel = d
        .cancel(&a.id, BookingRoute::Phone, "agent-7", "", now)
        .await;
    assert!(
        matches!(cancel, Err(DeskError::Unreadable(_))),
        "{cancel:?}"
    );
    damage(
        &db,
        &format!(
            "UPDATE appointments SET state = 'booked', route = 'pigeon' WHERE id = '{}'",
            a.id
        ),
    )
    .await;
    assert!(matches!(
        d.appointment(&a.id).await,
        Err(DeskError::Unreadable(_))
    ));

    damage_with(
        &db,
        Stmt::new("UPDATE sites SET site = $1 WHERE id = '59-lille'").bind(not_protobuf()),
    )
    .await;
    match d.site("59-lille").await {
        Err(DeskError::Unreadable(e)) => names_the_row(&e, "site 59-lille"),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(d.sites("").await, Err(DeskError::Unreadable(_))),
        "a damaged site is not left out of the list"
    );
    db.close().await;
    env.cleanup().await;
}

// ---- the postal batches, envelopes and letters -----------------------------------

async fn postal(env: &TestEnv) -> (Store, Database) {
    let db = open(
        env,
        guichet_intake_postal::server::SCHEMA,
        &guichet_intake_postal::server::MIGRATIONS,
    )
    .await;
    (Store::new(db.clone()), db)
}

fn batch(key: &str, fingerprint: &str, pages: usize) -> NewBatch {
    NewBatch {
        idempotency_key: key.into(),
        fingerprint: fingerprint.into(),
        station_id: "station-lille".into(),
        reception_date: "2026-11-20".into(),
        postmark_dates: vec!["2026-11-18".into()],
        pages: (0..pages)
            .map(|i| (format!("{i:064x}"), "image/png".into(), 1000))
            .collect(),
    }
}

/// Reads a two-page batch as one envelope: a form and an enclosure.
async fn read_one_envelope(s: &Store, batch_id: &str) -> String {
    let envelope = uuid::Uuid::now_v7().to_string();
    let page = |seq, role| PageReading {
        seq,
        role,
        code: "form".into(),
        envelope_id: Some(envelope.clone()),
        ocr_text: Some(format!("page {seq}")),
    };
    let fields = vec![StoredField {
        key: "family_name".into(),
        value: "Benali".into(),
        confidence: 0.9,
        source: "ocr".into(),
    }];
    s.record_reading(
        batch_id,
        &[page(1, PageRole::Form), page(2, PageRole::Enclosure)],
        &[NewEnvelope {
            id: envelope.clone(),
            seq: 1,
            page_count: 2,
            postmark_date: Some("2026-11-18".into()),
            form_id: None,
            code_problem: None,
            fields,
        }],
        Utc::now(),
    )
    .await
    .unwrap();
    envelope
}

fn event<'a>(kind: &'a str, operator: &'a str, reference: Option<&'a str>) -> NewEnvelopeEvent<'a> {
    NewEnvelopeEvent {
        kind,
        operator_id: operator,
        postmark_date: Some("2026-11-18"),
        reason: "",
        reference,
    }
}

on_both_backends!(a_batch_is_recorded_once_per_key_and_read_once);
async fn a_batch_is_recorded_once_per_key_and_read_once(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (s, db) = postal(&env).await;
    let now = Utc::now();

    let (id, created) = s.create_batch(&batch("b-1", "f-1", 2), now).await.unwrap();
    assert!(created);
    let again = s.create_batch(&batch("b-1", "f-1", 2), now).await.unwrap();
    assert_eq!(
        again,
        (id.clone(), false),
        "the same upload answers the batch made"
    );
    let reused = s
        .create_batch(&batch("b-1", "f-2", 2), now)
        .await
        .unwrap_err();
    assert!(matches!(reused, StoreError::KeyReused), "{reused:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM postal_pages").await, 2);

    let b = s.batch(&id).await.unwrap();
    assert_eq!(b.state, BatchState::Stored);
    assert_eq!(*b.postmark_dates, ["2026-11-18"]);
    assert!(matches!(
        s.batch("no-such").await,
        Err(StoreError::NoBatch(_))
    ));

    // One reader claims it for its lease; another finds nothing meanwhile.
    let lease = Duration::minutes(5);
    let claimed = s.claim_batch(now, lease).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    assert!(s.claim_batch(now, lease).await.unwrap().is_none());
    assert!(
        s.claim_batch(now + lease * 2, lease)
            .await
            .unwrap()
            .is_some()
    );

    let envelope = read_one_envelope(&s, &id).await;
    assert_eq!(s.batch(&id).await.unwrap().state, BatchState::Read);
    assert!(
        s.claim_batch(now + lease * 4, lease)
            .await
            .unwrap()
            .is_none()
    );
    let pages = s.pages_of_batch(&id).await.unwrap();
    let roles: Vec<_> = pages.iter().map(|p| *p.role).collect();
    assert_eq!(roles, [Some(PageRole::Form), Some(PageRole::Enclosure)]);
    assert_eq!(s.pages_of_envelope(&envelope).await.unwrap().len(), 2);
    let e = s.envelope(&envelope).await.unwrap();
    assert_eq!(e.state, EnvelopeState::Keying);
    assert_eq!(e.fields[0].value, "Benali");
    assert_eq!(e.station_id, "station-lille");
    assert_eq!(s.envelopes_of_batch(&id).await.unwrap().len(), 1);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(batches_are_read_fairly_between_stations);
async fn batches_are_read_fairly_between_stations(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (s, db) = postal(&env).await;
    let now = Utc::now();
    let of = |key: &str, station: &str| NewBatch {
        station_id: station.into(),
        ..batch(key, key, 1)
    };
    let (a1, _) = s.create_batch(&of("a-1", "station-a"), now).await.unwrap();
    let (a2, _) = s
        .create_batch(&of("a-2", "station-a"), now + Duration::seconds(1))
        .await
        .unwrap();
    let (b1, _) = s
        .create_batch(&of("b-1", "station-b"), now + Duration::seconds(2))
        .await
        .unwrap();
    let lease = Duration::minutes(5);
    let at = now + Duration::seconds(3);
    let first = s.claim_batch(at, lease).await.unwrap().unwrap();
    assert_eq!(first.id, a1, "the oldest first");
    // Station a's first batch is being read (a large one, say): station b's
    // goes next, though a's second came before it.
    let second = s.claim_batch(at, lease).await.unwrap().unwrap();
    assert_eq!(second.id, b1, "another station's batch is not held back");
    let third = s.claim_batch(at, lease).await.unwrap().unwrap();
    assert_eq!(third.id, a2);
    assert!(s.claim_batch(at, lease).await.unwrap().is_none());
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(an_envelope_is_held_then_closed_once_with_its_history);
async fn an_envelope_is_held_then_closed_once_with_its_history(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (s, db) = postal(&env).await;
    let now = Utc::now();
    let (batch_id, _) = s.create_batch(&batch("b-2", "f", 2), now).await.unwrap();
    let id = read_one_envelope(&s, &batch_id).await;
    assert_eq!(s.keying(10).await.unwrap().len(), 1);

    let corrected = [StoredField {
        key: "family_name".into(),
        value: "BENALI".into(),
        confidence: 1.0,
        source: "operator".into(),
    }];
    s.save_keying(&id, &corrected, Some("2026-11-17"))
        .await
        .unwrap();
    let e = s.envelope(&id).await.unwrap();
    assert_eq!(*e.fields, corrected);
    assert_eq!(e.postmark_date.as_deref(), Some("2026-11-17"));

    let held = s
        .hold_postmark(&id, &event("postmark_held", "op-1", None), now)
        .await
        .unwrap();
    assert_eq!(held.state, EnvelopeState::PostmarkCheck);
    assert_eq!(
        s.postmark_hold(&held).await.unwrap(),
        Some(("2026-11-18".into(), "op-1".into()))
    );
    assert_eq!(s.keying(10).await.unwrap().len(), 1, "held, still waiting");

    let events = [
        event("postmark_confirmed", "op-2", None),
        event("filed", "op-2", Some("P-2026-ABCD-EFGH-X")),
    ];
    let later = now + Duration::seconds(1);
    let filed = s
        .close(
            &id,
            EnvelopeAction::Confirm,
            "op-2",
            Some("P-2026-ABCD-EFGH-X"),
            None,
            &events,
            later,
        )
        .await
        .unwrap();
    assert_eq!(filed.state, EnvelopeState::Filed);
    assert_eq!(filed.reference.as_deref(), Some("P-2026-ABCD-EFGH-X"));
    assert_eq!(filed.keyed_by.as_deref(), Some("op-2"));
    assert!(s.keying(10).await.unwrap().is_empty());
    assert!(s.postmark_hold(&filed).await.unwrap().is_none());

    let routed = s
        .close(
            &id,
            EnvelopeAction::Route,
            "op-3",
            None,
            Some(("no form", "prefecture")),
            &[],
            later,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            routed,
            StoreError::WrongState("this envelope is already a dossier")
        ),
        "{routed:?}"
    );
    let kinds: Vec<String> = s
        .history(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["postmark_held", "postmark_confirmed", "filed"]);
    assert_eq!(s.history_of_batch(&batch_id).await.unwrap().len(), 3);
    let counts = s.envelope_counts().await.unwrap();
    assert_eq!(counts, [(EnvelopeState::Filed, 1)]);
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(a_letter_is_made_once_per_event);
async fn a_letter_is_made_once_per_event(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (s, db) = postal(&env).await;
    let now = Utc::now();
    let letter = |key: &str| NewLetter {
        event_key: key.into(),
        reference: "P-2026-ABCD-EFGH-X".into(),
        envelope_id: "e-1".into(),
        kind: "receipt".into(),
        sha256: "00".repeat(32),
        emailed_to: Some("a@example.org".into()),
        email_state: "pending".into(),
    };
    assert!(!s.letter_made("k-1").await.unwrap());
    let id = s.insert_letter(&letter("k-1"), now).await.unwrap().unwrap();
    assert!(
        s.insert_letter(&letter("k-1"), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.letter_made("k-1").await.unwrap());
    s.set_email_state(&id, "sent").await.unwrap();
    let l = s.letter(&id).await.unwrap();
    assert_eq!(
        (l.kind.as_str(), l.email_state.as_str()),
        ("receipt", "sent")
    );
    s.insert_letter(&letter("k-2"), now).await.unwrap().unwrap();
    assert_eq!(s.letters("P-2026-ABCD-EFGH-X", 10).await.unwrap().len(), 2);
    assert_eq!(s.letters("", 1).await.unwrap().len(), 1);
    assert!(s.letters("P-2026-OTHER", 10).await.unwrap().is_empty());
    assert!(matches!(
        s.letter("no-such").await,
        Err(StoreError::NoLetter(_))
    ));

    // A batch's letters: those already made are known in one look, and the
    // rest go in together, each once per event.
    let made = s.letters_made(&["k-1", "k-2", "k-3"]).await.unwrap();
    assert_eq!(made, ["k-1", "k-2"].map(String::from).into_iter().collect());
    let new = s
        .insert_letters(&[letter("k-2"), letter("k-3"), letter("k-4")], now)
        .await
        .unwrap();
    assert_eq!(new, ["receipt", "receipt"], "k-3 and k-4");
    assert_eq!(s.letters("P-2026-ABCD-EFGH-X", 10).await.unwrap().len(), 4);
    assert!(s.letter_made("k-4").await.unwrap());

    // A later letter names the envelope its dossier was filed from: found
    // through the ledger for a postal reference; a reference of another
    // channel came in no envelope, whatever the ledger says.
    let (batch_id, _) = s
        .create_batch(&batch("b-letters", "f-letters", 2), now)
        .await
        .unwrap();
    let envelope = read_one_envelope(&s, &batch_id).await;
    let (other_batch, _) = s
        .create_batch(&batch("b-letters-2", "f-letters-2", 2), now)
        .await
        .unwrap();
    let other = read_one_envelope(&s, &other_batch).await;
    let mut rng = rand::rng();
    let postal_ref =
        guichet_dossier::Reference::generate(guichet_dossier::Channel::Postal, 2026, &mut rng);
    let web_ref =
        guichet_dossier::Reference::generate(guichet_dossier::Channel::Web, 2026, &mut rng);
    for (key, reference) in [
        (format!("postal-{envelope}"), postal_ref.as_str()),
        (format!("postal-{other}"), web_ref.as_str()),
    ] {
        db.execute(
            Stmt::new(
                "INSERT INTO filings (idempotency_key, fingerprint, reference, legal_filing_date, \
                 filed_at, receipt, trace_id) VALUES ($1, 'f', $2, '2026-11-18', $3, $4, 't')",
            )
            .bind(key.as_str())
            .bind(reference)
            .bind(now)
            .bind(Vec::<u8>::new()),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        s.envelope_of_reference(postal_ref.as_str())
            .await
            .unwrap()
            .map(|e| e.id),
        Some(envelope)
    );
    assert!(
        s.envelope_of_reference(web_ref.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.envelope_of_reference("not a reference")
            .await
            .unwrap()
            .is_none()
    );
    db.close().await;
    env.cleanup().await;
}

on_both_backends!(a_damaged_batch_or_envelope_is_an_error_not_a_default);
async fn a_damaged_batch_or_envelope_is_an_error_not_a_default(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let (s, db) = postal(&env).await;
    let (batch_id, _) = s
        .create_batch(&batch("b-3", "f", 2), Utc::now())
        .await
        .unwrap();
    let id = read_one_envelope(&s, &batch_id).await;

    for set in [
        "state = 'lost'",
        "fields = 'not json'",
        "fields = '{\"a\": 1}'",
    ] {
        let good = s.envelope(&id).await.unwrap();
        damage(
            &db,
            &format!("UPDATE postal_envelopes SET {set} WHERE id = '{id}'"),
        )
        .await;
        match s.envelope(&id).await {
            Err(StoreError::Unreadable(e)) => names_the_row(&e, &format!("envelope {id}")),
            other => panic!("{set}: {other:?}"),
        }
        assert!(
            matches!(
                s.envelopes_of_batch(&batch_id).await,
                Err(StoreError::Unreadable(_))
            ),
            "{set}"
        );
        // Put it back, so the next one is the only damage.
        db.execute(
            Stmt::new("UPDATE postal_envelopes SET state = $1, fields = $2 WHERE id = $3")
                .bind(good.state.as_str())
                .bind(serde_json::to_string(&*good.fields).unwrap())
                .bind(id.as_str()),
        )
        .await
        .unwrap();
    }
    damage(
        &db,
        &format!("UPDATE postal_envelopes SET state = 'lost' WHERE id = '{id}'"),
    )
    .await;
    assert!(matches!(
        s.envelope_counts().await,
        Err(StoreError::Unreadable(_))
    ));
    let close = s
        .close(
            &id,
            EnvelopeAction::Route,
            "op",
            None,
            Some(("r", "d")),
            &[],
            Utc::now(),
        )
        .await;
    assert!(
        matches!(close, Err(StoreError::Unreadable(_))),
        "an unknown state is never taken as keying: {close:?}"
    );

    damage(
        &db,
        &format!(
            "UPDATE postal_pages SET role = 'cover' WHERE batch_id = '{batch_id}' AND seq = 1"
        ),
    )
    .await;
    assert!(matches!(
        s.pages_of_batch(&batch_id).await,
        Err(StoreError::Unreadable(_))
    ));
    damage(
        &db,
        &format!("UPDATE postal_batches SET postmark_dates = 'yesterday' WHERE id = '{batch_id}'"),
    )
    .await;
    match s.batch(&batch_id).await {
        Err(StoreError::Unreadable(e)) => names_the_row(&e, &format!("batch {batch_id}")),
        other => panic!("{other:?}"),
    }
    damage(&db, &format!("UPDATE postal_batches SET postmark_dates = '[]', state = 'shredded' WHERE id = '{batch_id}'")).await;
    assert!(matches!(
        s.batch(&batch_id).await,
        Err(StoreError::Unreadable(_))
    ));
    db.close().await;
    env.cleanup().await;
}

// ---- the notifier's figures ------------------------------------------------------

async fn notifier(env: &TestEnv) -> (guichet_notifier::store::Store, Database) {
    let db = open(env, guichet_notifier::SCHEMA, &guichet_notifier::MIGRATIONS).await;
    (guichet_notifier::store::Store { db: db.clone() }, db)
}

/// The notifiers' tests' clock: a day no fixed table covers.
fn notifier_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-03-14T10:00:00Z")
        .unwrap()
        .to_utc()
}

/// A message of notice `key` by `medium`, made and due at `at`.
fn new_notice(
    key: &str,
    kind: guichet_dossier::notice::NoticeKind,
    medium: guichet_dossier::notice::Medium,
    at: DateTime<Utc>,
) -> guichet_notifier::store::NewNotice {
    guichet_notifier::store::NewNotice {
        notice_key: key.into(),
        medium,
        kind,
        subject_ref: key.split(':').next_back().unwrap().into(),
        recipient: "someone".into(),
        language: "fr".into(),
        routing_key: "case.found_complete".into(),
        event: vec![1, 2, 3],
        has_address: true,
        not_before: at,
        event_at: at,
    }
}

/// The gauges and alerts count the last 30 days' notices, and the purge
/// forgets what is final and older than its limit: each reads its window of
/// rows by when they were made, nothing older.
async fn the_notifier_figures_count_their_window_only(backend: Backend) {
    use guichet_dossier::notice::{Medium, NoticeKind};
    use guichet_notifier::store::insert;
    let env = TestEnv::on(backend).await;
    let (store, db) = notifier(&env).await;
    let now = notifier_now();
    let (recent, old) = (now - Duration::days(2), now - Duration::days(45));
    // (made at, key, kind, medium, state)
    let messages = [
        (
            old,
            "attestation:A1",
            NoticeKind::AttestationIssued,
            Medium::Email,
            "failed",
        ),
        (
            old,
            "receipt:R1",
            NoticeKind::Receipt,
            Medium::Email,
            "sent",
        ),
        // Told by SMS only: an SMS says a document waits, it does not carry it.
        (
            recent,
            "attestation:A2",
            NoticeKind::AttestationIssued,
            Medium::Email,
            "failed",
        ),
        (
            recent,
            "attestation:A2",
            NoticeKind::AttestationIssued,
            Medium::Sms,
            "sent",
        ),
        (
            recent,
            "receipt:R2",
            NoticeKind::Receipt,
            Medium::Email,
            "failed",
        ),
        (
            recent,
            "receipt:R3",
            NoticeKind::Receipt,
            Medium::Email,
            "sent",
        ),
    ];
    let mut c = db.acquire().await.unwrap();
    for (made, key, kind, medium, state) in messages {
        let notice = new_notice(key, kind, medium, made);
        assert!(insert(&mut c.conn(), &notice, made).await.unwrap());
        c.conn()
            .execute(
                Stmt::new("UPDATE notices SET state = $1 WHERE notice_key = $2 AND medium = $3")
                    .bind(state)
                    .bind(key)
                    .bind(medium.as_str()),
            )
            .await
            .unwrap();
    }
    drop(c);
    let window = now - Duration::days(30);
    let mut counts = store.counts(window).await.unwrap();
    counts.sort();
    let counts: Vec<_> = counts
        .iter()
        .map(|(m, s, n)| (m.as_str(), s.as_str(), *n))
        .collect();
    assert_eq!(
        counts,
        [
            ("email", "failed", 2),
            ("email", "sent", 1),
            ("sms", "sent", 1)
        ],
        "the last 30 days' messages, not the 45-day-old ones"
    );
    assert_eq!(
        store
            .unreached(NoticeKind::AttestationIssued, window)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.lost(window).await.unwrap(), 1, "receipt R2");
    // A wider window takes the old ones in.
    let wider = now - Duration::days(60);
    assert_eq!(
        store
            .unreached(NoticeKind::AttestationIssued, wider)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.lost(wider).await.unwrap(), 2, "R2 and A1");
    assert_eq!(store.purge(window).await.unwrap(), 2, "the two old ones");
    let left: i64 = store
        .counts(wider)
        .await
        .unwrap()
        .iter()
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(left, 4);
    db.close().await;
    env.cleanup().await;
}
on_both_backends!(the_notifier_figures_count_their_window_only);

/// A batch's messages go in together, once per notice and medium however
/// often an event came, and what a pass sent is marked in one go.
async fn notices_go_in_once_and_are_marked_sent_together(backend: Backend) {
    use guichet_dossier::notice::{DeliveryState, Medium, NoticeKind};
    use guichet_notifier::store::{SentMark, insert_all};
    let env = TestEnv::on(backend).await;
    let (store, db) = notifier(&env).await;
    let now = notifier_now();
    let notice = |key: &str, medium: Medium| new_notice(key, NoticeKind::Receipt, medium, now);
    let (a_mail, a_sms, b_mail) = (
        notice("receipt:A", Medium::Email),
        notice("receipt:A", Medium::Sms),
        notice("receipt:B", Medium::Email),
    );
    let mut c = db.acquire().await.unwrap();
    // The event of A delivered twice in the batch.
    let batch = [&a_mail, &a_sms, &a_mail, &b_mail];
    assert_eq!(insert_all(&mut c.conn(), &batch, now).await.unwrap(), 3);
    assert_eq!(
        insert_all(&mut c.conn(), &batch, now).await.unwrap(),
        0,
        "already there"
    );
    drop(c);
    let due = store
        .lease_due(now, now + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|r| r.event == [1, 2, 3] && r.has_address));
    let id_of = |key: &str, medium: Medium| {
        due.iter()
            .find(|r| r.notice_key == key && r.medium == medium)
            .unwrap()
            .id
            .clone()
    };
    let sent_at = now + Duration::seconds(3);
    // A paper message's request to the mailroom goes in with the marks.
    let letter = guichet_kit::bus::OutgoingMessage::traced(
        guichet_kit::bus::EVENTS_EXCHANGE,
        "letter.found_complete.75".into(),
        vec![7],
    );
    store
        .mark_sent(
            &[
                SentMark {
                    id: id_of("receipt:A", Medium::Email),
                    at: sent_at,
                    provider_id: None,
                    delivered: false,
                },
                SentMark {
                    id: id_of("receipt:A", Medium::Sms),
                    at: sent_at,
                    provider_id: Some("provider-7".into()),
                    delivered: true,
                },
            ],
            std::slice::from_ref(&letter),
        )
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM outbox WHERE routing_key = 'letter.found_complete.75' AND sent_at IS NULL").await,
        1
    );
    let states = store.states_of("receipt:A").await.unwrap();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&(Medium::Email, DeliveryState::Sent)));
    assert!(states.contains(&(Medium::Sms, DeliveryState::Delivered)));
    let row: Option<(i32, Option<String>, bool, bool)> = db
        .fetch_optional(Stmt::new(
            "SELECT attempts, provider_id, first_try_at IS NOT NULL, lease_until IS NULL \
             FROM notices WHERE notice_key = 'receipt:A' AND medium = 'sms'",
        ))
        .await
        .unwrap();
    assert_eq!(row, Some((1, Some("provider-7".into()), true, true)));
    // Marked is marked: a second mark of a message no longer queued
    // changes nothing, and B is still due.
    store
        .mark_sent(
            &[SentMark {
                id: id_of("receipt:A", Medium::Email),
                at: sent_at + Duration::minutes(1),
                provider_id: None,
                delivered: true,
            }],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .states_of("receipt:A")
            .await
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == DeliveryState::Delivered)
            .count(),
        1
    );
    let later = now + Duration::minutes(10);
    let due = store
        .lease_due(later, later + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|r| r.notice_key.as_str())
            .collect::<Vec<_>>(),
        ["receipt:B"]
    );
    db.close().await;
    env.cleanup().await;
}
on_both_backends!(notices_go_in_once_and_are_marked_sent_together);
