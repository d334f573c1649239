//! Sites, slots and appointments, on both backends. Booking takes a place
//! with one conditional UPDATE of the slot's row (`booked < limit`), so no
//! two concurrent bookings can take the last place; moving an appointment
//! takes the new place and gives back the old one in the same transaction.
//! Every step is a row in `appointment_events` and an event on
//! `guichet.events` (`appointment.<step>.<site>`), through the outbox.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use guichet_dossier::desk::{RawSite, SiteRules};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::db::Database;
use guichet_kit::outbox::Enqueue;
use guichet_kit::{in_tx, on_db};
use guichet_proto::{convert, v1 as pb};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("no site {0}")]
    NoSite(String),
    #[error("no appointment {0}")]
    NoAppointment(String),
    #[error("{0}")]
    BadSlot(String),
    #[error("this slot is full: choose another one")]
    SlotFull,
    #[error("{0}")]
    WrongState(String),
    #[error("this idempotency key was already used for a different booking")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppointmentRow {
    pub id: String,
    pub site_id: String,
    pub starts_at: DateTime<Utc>,
    pub family_name: String,
    pub given_names: String,
    pub phone: String,
    pub email: String,
    pub route: String,
    pub booked_by: String,
    pub report_id: Option<String>,
    pub state: String,
    pub booked_at: DateTime<Utc>,
    /// The site's prefecture, as the site stands now.
    pub prefecture: Option<String>,
}

const COLUMNS: &str = "id, site_id, starts_at, family_name, given_names, phone, email, route, \
    booked_by, report_id, state, booked_at, \
    (SELECT s.prefecture FROM sites s WHERE s.id = appointments.site_id) AS prefecture";

/// A booking, checked.
pub struct NewBooking {
    pub idempotency_key: String,
    pub site_id: String,
    pub starts_at: DateTime<Utc>,
    pub person: pb::Person,
    pub route: &'static str,
    pub booked_by: String,
    pub report_id: Option<String>,
}

/// The site's rules, from its stored definition.
pub fn rules_of(site: &pb::Site) -> Result<SiteRules, guichet_dossier::Violations> {
    raw_site(site).rules()
}

pub fn raw_site(site: &pb::Site) -> RawSite {
    RawSite {
        id: site.id.clone(),
        name: site.name.clone(),
        prefecture: site.prefecture.clone(),
        opening_hours: site
            .opening_hours
            .iter()
            .map(|h| (h.weekday, h.opens.clone(), h.closes.clone()))
            .collect(),
        desks: site.desks,
        slot_minutes: site.slot_minutes,
        places_per_slot: site.places_per_slot,
        places_for_reports: site.places_for_reports,
    }
}

macro_rules! site_in {
    ($conn:expr, $id:expr) => {{
        let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT site FROM sites WHERE id = $1")
            .bind($id)
            .fetch_optional($conn)
            .await?;
        match bytes {
            Some(b) => pb::Site::decode(b.as_slice())
                .map_err(|e| DeskError::Db(sqlx::Error::Decode(Box::new(e))))?,
            None => return Err(DeskError::NoSite($id.to_string())),
        }
    }};
}

macro_rules! appointment_in {
    ($conn:expr, $id:expr) => {{
        let row: Option<AppointmentRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM appointments WHERE id = $1"))
                .bind($id)
                .fetch_optional($conn)
                .await?;
        row.ok_or_else(|| DeskError::NoAppointment($id.to_string()))?
    }};
}

/// Takes one place of a slot, creating its row on first use. Fails with
/// `SlotFull` when the places open to this booking are all taken.
macro_rules! take_place {
    ($conn:expr, $site_id:expr, $starts_at:expr, $rules:expr, $for_report:expr) => {{
        let rules: &SiteRules = $rules;
        sqlx::query(
            "INSERT INTO slots (site_id, starts_at, places, places_for_reports) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (site_id, starts_at) DO NOTHING",
        )
        .bind($site_id)
        .bind($starts_at)
        .bind(rules.places_per_slot as i32)
        .bind(rules.places_for_reports as i32)
        .execute(&mut *$conn)
        .await?;
        // The same condition as guichet_dossier::desk::may_book, applied by the
        // database to the row it locks: free places beyond those still kept.
        let taken = sqlx::query(
            "UPDATE slots SET booked = booked + 1, \
             booked_for_reports = booked_for_reports + CASE WHEN $3 THEN 1 ELSE 0 END \
             WHERE site_id = $1 AND starts_at = $2 AND places - booked > CASE WHEN $3 THEN 0 \
             WHEN places_for_reports > booked_for_reports \
             THEN places_for_reports - booked_for_reports ELSE 0 END",
        )
        .bind($site_id)
        .bind($starts_at)
        .bind($for_report)
        .execute(&mut *$conn)
        .await?
        .rows_affected();
        if taken == 0 {
            return Err(DeskError::SlotFull);
        }
    }};
}

macro_rules! give_back_place {
    ($conn:expr, $site_id:expr, $starts_at:expr, $for_report:expr) => {
        sqlx::query(
            "UPDATE slots SET booked = booked - 1, \
             booked_for_reports = booked_for_reports - CASE WHEN $3 THEN 1 ELSE 0 END \
             WHERE site_id = $1 AND starts_at = $2 AND booked > 0",
        )
        .bind($site_id)
        .bind($starts_at)
        .bind($for_report)
        .execute(&mut *$conn)
        .await?
    };
}

/// Records a step of an appointment: its event row and its bus event.
macro_rules! record_step {
    ($conn:expr, $id:expr, $kind:expr, $actor:expr, $route:expr, $now:expr, $detail:expr) => {{
        sqlx::query(
            "INSERT INTO appointment_events (appointment_id, kind, actor, route, at, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($id)
        .bind($kind)
        .bind($actor)
        .bind($route)
        .bind($now)
        .bind($detail)
        .execute(&mut *$conn)
        .await?;
        let row = appointment_in!(&mut *$conn, $id);
        $conn.enqueue(&event_message(&to_pb(&row), $kind)).await?;
        row
    }};
}

fn event_message(a: &pb::Appointment, kind: &str) -> OutgoingMessage {
    OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("appointment.{kind}.{}", a.site_id),
        a.encode_to_vec(),
    )
}

#[derive(Clone)]
pub struct Desks {
    db: Database,
}

/// One slot as shown to whoever books.
pub struct SlotView {
    pub starts_at: DateTime<Utc>,
    pub places: u32,
    pub booked: u32,
    pub free: u32,
    pub free_for_reports: u32,
}

/// A site's figures over a period.
pub struct SiteFigures {
    pub site_id: String,
    pub places_offered: u64,
    pub booked: u64,
    pub no_shows: u64,
}

impl Desks {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn upsert_site(&self, site: &pb::Site, now: DateTime<Utc>) -> Result<(), DeskError> {
        let bytes = site.encode_to_vec();
        on_db!(&self.db, |p| sqlx::query(
            "INSERT INTO sites (id, prefecture, site, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET prefecture = excluded.prefecture, \
             site = excluded.site, updated_at = excluded.updated_at"
        )
        .bind(&site.id)
        .bind(&site.prefecture)
        .bind(&bytes)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn site(&self, id: &str) -> Result<pb::Site, DeskError> {
        on_db!(&self.db, |p| {
            let mut conn = p.acquire().await?;
            Ok(site_in!(&mut *conn, id))
        })
    }

    pub async fn sites(&self, prefecture: &str) -> Result<Vec<pb::Site>, DeskError> {
        let rows: Vec<Vec<u8>> = on_db!(&self.db, |p| sqlx::query_scalar(
            "SELECT site FROM sites WHERE ($1 = '' OR prefecture = $1) ORDER BY id"
        )
        .bind(prefecture)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .iter()
            .filter_map(|b| pb::Site::decode(b.as_slice()).ok())
            .collect())
    }

    /// The slots of `date` at a site, with what is free in each.
    pub async fn slots(&self, site_id: &str, date: NaiveDate) -> Result<Vec<SlotView>, DeskError> {
        let site = self.site(site_id).await?;
        let rules = rules_of(&site).map_err(|v| DeskError::BadSlot(v.to_string()))?;
        let from = guichet_dossier::desk::from_local(date.and_hms_opt(0, 0, 0).unwrap_or_default())
            .unwrap_or_default();
        let to = from + Duration::days(1);
        let booked: Vec<(DateTime<Utc>, i32, i32, i32, i32)> = on_db!(&self.db, |p| {
            sqlx::query_as(
            "SELECT starts_at, places, places_for_reports, booked, booked_for_reports FROM slots \
             WHERE site_id = $1 AND starts_at >= $2 AND starts_at < $3"
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await
        })?;
        if !guichet_dossier::calendar::is_working_day(date) {
            return Ok(Vec::new());
        }
        Ok(rules
            .slots_of_day(date)
            .into_iter()
            .filter_map(guichet_dossier::desk::from_local)
            .map(|starts_at| {
                let (places, kept, taken, taken_by_reports) = booked
                    .iter()
                    .find(|(t, ..)| *t == starts_at)
                    .map(|(_, p, k, b, r)| (*p as u32, *k as u32, *b as u32, *r as u32))
                    .unwrap_or((rules.places_per_slot, rules.places_for_reports, 0, 0));
                let free = places.saturating_sub(taken);
                let still_kept =
                    guichet_dossier::desk::places_still_kept(kept, taken_by_reports).min(free);
                SlotView {
                    starts_at,
                    places,
                    booked: taken,
                    free: free - still_kept,
                    free_for_reports: still_kept,
                }
            })
            .collect())
    }

    /// Books once per idempotency key: the same key again with the same
    /// booking answers the appointment made; with another booking it is
    /// refused (`KeyReused`).
    pub async fn book(
        &self,
        b: NewBooking,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let starts_at = b.starts_at.to_rfc3339();
        let fingerprint = guichet_dossier::idempotency::fingerprint([
            b.site_id.as_bytes(),
            starts_at.as_bytes(),
            b.person.family_name.trim().as_bytes(),
            b.person.given_names.trim().as_bytes(),
            b.person.phone.trim().as_bytes(),
            b.person.email.trim().as_bytes(),
            b.route.as_bytes(),
            b.booked_by.as_bytes(),
            b.report_id.as_deref().unwrap_or_default().as_bytes(),
        ]);
        match self.book_once(&b, &fingerprint, now).await {
            // The same key booked at the same moment by another request: its
            // row is there now, to replay or to refuse.
            Err(DeskError::Db(e)) if guichet_kit::db::is_unique_violation(&e) => {
                self.book_once(&b, &fingerprint, now).await
            }
            other => other,
        }
    }

    async fn book_once(
        &self,
        b: &NewBooking,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let row = in_tx!(&self.db, |tx| {
            let existing: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT id, request_fingerprint FROM appointments WHERE idempotency_key = $1",
            )
            .bind(&b.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some((_, stored))
                    if !guichet_dossier::idempotency::same_request(
                        stored.as_deref(),
                        fingerprint,
                    ) =>
                {
                    return Err(DeskError::KeyReused);
                }
                Some((id, _)) => appointment_in!(&mut *tx, &id),
                None => {
                    let site = site_in!(&mut *tx, &b.site_id);
                    let rules = check_slot(&site, b.starts_at, now)?;
                    take_place!(tx, &b.site_id, b.starts_at, &rules, b.report_id.is_some());
                    let id = uuid::Uuid::now_v7().to_string();
                    sqlx::query(
                        "INSERT INTO appointments (id, idempotency_key, site_id, starts_at, \
                         family_name, given_names, phone, email, route, booked_by, report_id, \
                         state, booked_at, request_fingerprint) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'booked', $12, $13)",
                    )
                    .bind(&id)
                    .bind(&b.idempotency_key)
                    .bind(&b.site_id)
                    .bind(b.starts_at)
                    .bind(b.person.family_name.trim())
                    .bind(b.person.given_names.trim())
                    .bind(b.person.phone.trim())
                    .bind(b.person.email.trim())
                    .bind(b.route)
                    .bind(&b.booked_by)
                    .bind(&b.report_id)
                    .bind(now)
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?;
                    let actor = if b.booked_by.is_empty() {
                        "the person"
                    } else {
                        b.booked_by.as_str()
                    };
                    record_step!(tx, &id, "booked", actor, b.route, now, "")
                }
            }
        });
        Ok(row)
    }

    /// The appointment an earlier booking with this key made, if any: a
    /// retry is answered with it before anything is checked again.
    pub async fn booked_with_key(&self, key: &str) -> Result<Option<AppointmentRow>, DeskError> {
        let sql = format!("SELECT {COLUMNS} FROM appointments WHERE idempotency_key = $1");
        Ok(on_db!(&self.db, |p| sqlx::query_as(&sql)
            .bind(key)
            .fetch_optional(p)
            .await)?)
    }

    pub async fn move_to(
        &self,
        id: &str,
        starts_at: DateTime<Utc>,
        route: &'static str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let row = in_tx!(&self.db, |tx| {
            let a = appointment_in!(&mut *tx, id);
            if a.state != "booked" {
                return Err(DeskError::WrongState(format!(
                    "an appointment that is {} cannot be moved",
                    a.state
                )));
            }
            if a.starts_at == starts_at {
                a
            } else {
                let site = site_in!(&mut *tx, &a.site_id);
                let rules = check_slot(&site, starts_at, now)?;
                take_place!(tx, &a.site_id, starts_at, &rules, a.report_id.is_some());
                give_back_place!(tx, &a.site_id, a.starts_at, a.report_id.is_some());
                sqlx::query("UPDATE appointments SET starts_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(starts_at)
                    .execute(&mut *tx)
                    .await?;
                let detail = format!("from {}", a.starts_at.to_rfc3339());
                record_step!(tx, id, "moved", by, route, now, &detail)
            }
        });
        Ok(row)
    }

    pub async fn cancel(
        &self,
        id: &str,
        route: &'static str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let row = in_tx!(&self.db, |tx| {
            let a = appointment_in!(&mut *tx, id);
            match a.state.as_str() {
                // Cancelling twice is answered as the first time.
                "cancelled" => a,
                "booked" => {
                    give_back_place!(tx, &a.site_id, a.starts_at, a.report_id.is_some());
                    sqlx::query("UPDATE appointments SET state = 'cancelled' WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    record_step!(tx, id, "cancelled", by, route, now, reason)
                }
                other => {
                    return Err(DeskError::WrongState(format!(
                        "an appointment that is {other} cannot be cancelled"
                    )));
                }
            }
        });
        Ok(row)
    }

    pub async fn record_attendance(
        &self,
        id: &str,
        attended: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let state = if attended { "attended" } else { "no_show" };
        let row = in_tx!(&self.db, |tx| {
            let a = appointment_in!(&mut *tx, id);
            if a.state != "booked" {
                return Err(DeskError::WrongState(format!(
                    "attendance is recorded once, for a booked appointment; this one is {}",
                    a.state
                )));
            }
            if now < a.starts_at - Duration::minutes(30) {
                return Err(DeskError::WrongState(
                    "attendance is recorded at the time of the appointment, not before".into(),
                ));
            }
            sqlx::query("UPDATE appointments SET state = $2 WHERE id = $1")
                .bind(id)
                .bind(state)
                .execute(&mut *tx)
                .await?;
            record_step!(tx, id, state, by, "front_desk", now, "")
        });
        Ok(row)
    }

    pub async fn appointment(&self, id: &str) -> Result<AppointmentRow, DeskError> {
        on_db!(&self.db, |p| {
            let mut conn = p.acquire().await?;
            Ok(appointment_in!(&mut *conn, id))
        })
    }

    /// Per site, over the 30 days before `today`: places offered by the
    /// opening hours, appointments kept or missed, and no-shows.
    pub async fn figures(&self, today: NaiveDate) -> Result<Vec<SiteFigures>, DeskError> {
        let from_day = today - Duration::days(30);
        let from =
            guichet_dossier::desk::from_local(from_day.and_hms_opt(0, 0, 0).unwrap_or_default())
                .unwrap_or_default();
        let to = guichet_dossier::desk::from_local(today.and_hms_opt(0, 0, 0).unwrap_or_default())
            .unwrap_or_default();
        let counts: Vec<(String, String, i64)> = on_db!(&self.db, |p| sqlx::query_as(
            "SELECT site_id, state, count(*) FROM appointments \
             WHERE starts_at >= $1 AND starts_at < $2 GROUP BY site_id, state"
        )
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await)?;
        let mut out = Vec::new();
        for site in self.sites("").await? {
            let Ok(rules) = rules_of(&site) else { continue };
            let places_offered: u64 = from_day
                .iter_days()
                .take_while(|d| *d < today)
                .filter(|d| guichet_dossier::calendar::is_working_day(*d))
                .map(|d| rules.slots_of_day(d).len() as u64 * u64::from(rules.places_per_slot))
                .sum();
            let count = |states: &[&str]| -> u64 {
                counts
                    .iter()
                    .filter(|(s, st, _)| *s == site.id && states.contains(&st.as_str()))
                    .map(|(_, _, n)| *n as u64)
                    .sum()
            };
            out.push(SiteFigures {
                site_id: site.id.clone(),
                places_offered,
                booked: count(&["booked", "attended", "no_show"]),
                no_shows: count(&["no_show"]),
            });
        }
        Ok(out)
    }
}

/// The site's rules, once the slot is one of its slots and still ahead.
fn check_slot(
    site: &pb::Site,
    starts_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<SiteRules, DeskError> {
    let rules = rules_of(site).map_err(|v| DeskError::BadSlot(v.to_string()))?;
    if starts_at <= now {
        return Err(DeskError::BadSlot("this slot has already begun".into()));
    }
    rules
        .check_slot(starts_at)
        .map_err(|e| DeskError::BadSlot(e.to_string()))?;
    Ok(rules)
}

pub fn route_to_pb(route: &str) -> pb::BookingRoute {
    match route {
        "online" => pb::BookingRoute::Online,
        "phone" => pb::BookingRoute::Phone,
        "front_desk" => pb::BookingRoute::FrontDesk,
        _ => pb::BookingRoute::Unspecified,
    }
}

pub fn route_from_pb(route: i32) -> Option<&'static str> {
    match pb::BookingRoute::try_from(route).ok()? {
        pb::BookingRoute::Online => Some("online"),
        pb::BookingRoute::Phone => Some("phone"),
        pb::BookingRoute::FrontDesk => Some("front_desk"),
        pb::BookingRoute::Unspecified => None,
    }
}

pub fn to_pb(a: &AppointmentRow) -> pb::Appointment {
    pb::Appointment {
        id: a.id.clone(),
        site_id: a.site_id.clone(),
        starts_at: Some(convert::timestamp_to_pb(a.starts_at)),
        person: Some(pb::Person {
            family_name: a.family_name.clone(),
            given_names: a.given_names.clone(),
            phone: a.phone.clone(),
            email: a.email.clone(),
        }),
        route: route_to_pb(&a.route) as i32,
        booked_by: a.booked_by.clone(),
        report_id: a.report_id.clone().unwrap_or_default(),
        state: match a.state.as_str() {
            "booked" => pb::AppointmentState::Booked,
            "cancelled" => pb::AppointmentState::Cancelled,
            "attended" => pb::AppointmentState::Attended,
            "no_show" => pb::AppointmentState::NoShow,
            _ => pb::AppointmentState::Unspecified,
        } as i32,
        booked_at: Some(convert::timestamp_to_pb(a.booked_at)),
        prefecture: a.prefecture.clone().unwrap_or_default(),
    }
}
