//! Sites, slots and appointments, on both backends. Booking takes a place
//! with one conditional UPDATE of the slot's row (`booked < limit`), so no
//! two concurrent bookings can take the last place; moving an appointment
//! takes the new place and gives back the old one in the same transaction.
//! Every step is a row in `appointment_events` and an event on
//! `guichet.events` (`appointment.<step>.<site>`), through the outbox.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use guichet_dossier::desk::{AppointmentState, BookingRoute, RawSite, SiteRules};
use guichet_dossier::idempotency;
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::db::{self, Database};
use guichet_kit::sql::{Conn, Stmt};
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
    /// A stored site or appointment this service cannot read back.
    #[error(transparent)]
    Unreadable(#[from] db::Unreadable),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<idempotency::KeyReused> for DeskError {
    fn from(_: idempotency::KeyReused) -> Self {
        DeskError::KeyReused
    }
}

/// An appointment as stored, its state and route read back as their types.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppointmentRow {
    pub id: String,
    pub site_id: String,
    pub starts_at: DateTime<Utc>,
    pub family_name: String,
    pub given_names: String,
    pub phone: String,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub route: BookingRoute,
    pub booked_by: String,
    pub report_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: AppointmentState,
    pub booked_at: DateTime<Utc>,
    /// The site's prefecture, as the site stands now.
    pub prefecture: Option<String>,
}

/// A site's definition as stored.
#[derive(sqlx::FromRow)]
struct SiteRow {
    #[sqlx(try_from = "Vec<u8>")]
    site: pb::Site,
}

/// What the figures need of an appointment: how many per site and state.
#[derive(sqlx::FromRow)]
struct StateCount {
    site_id: String,
    #[sqlx(try_from = "String")]
    state: AppointmentState,
    n: i64,
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
    pub route: BookingRoute,
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

async fn site_in(c: &mut Conn<'_>, id: &str) -> Result<pb::Site, DeskError> {
    let row: Option<SiteRow> = c
        .fetch_optional(Stmt::new("SELECT site FROM sites WHERE id = $1").bind(id))
        .await
        .map_err(db::reading::<DeskError>(|| format!("site {id}")))?;
    row.map(|r| r.site)
        .ok_or_else(|| DeskError::NoSite(id.to_string()))
}

/// Appointment `id`, read with `sql` (plain, or locked for a change).
async fn appointment_in(
    c: &mut Conn<'_>,
    sql: &str,
    id: &str,
) -> Result<AppointmentRow, DeskError> {
    let row: Option<AppointmentRow> = c
        .fetch_optional(Stmt::new(sql.to_string()).bind(id))
        .await
        .map_err(db::reading::<DeskError>(|| format!("appointment {id}")))?;
    row.ok_or_else(|| DeskError::NoAppointment(id.to_string()))
}

/// Takes one place of a slot, creating its row on first use. Fails with
/// `SlotFull` when the places open to this booking are all taken.
async fn take_place(
    c: &mut Conn<'_>,
    site_id: &str,
    starts_at: DateTime<Utc>,
    rules: &SiteRules,
    for_report: bool,
) -> Result<(), DeskError> {
    c.execute(
        Stmt::new(
            "INSERT INTO slots (site_id, starts_at, places, places_for_reports) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (site_id, starts_at) DO NOTHING",
        )
        .bind(site_id)
        .bind(starts_at)
        .bind(rules.places_per_slot as i32)
        .bind(rules.places_for_reports as i32),
    )
    .await?;
    // The same condition as guichet_dossier::desk::may_book, applied by the
    // database to the row it locks: free places beyond those still kept.
    let taken = c
        .execute(
            Stmt::new(
                "UPDATE slots SET booked = booked + 1, \
                 booked_for_reports = booked_for_reports + CASE WHEN $3 THEN 1 ELSE 0 END \
                 WHERE site_id = $1 AND starts_at = $2 AND places - booked > CASE WHEN $3 THEN 0 \
                 WHEN places_for_reports > booked_for_reports \
                 THEN places_for_reports - booked_for_reports ELSE 0 END",
            )
            .bind(site_id)
            .bind(starts_at)
            .bind(for_report),
        )
        .await?;
    if taken == 0 {
        return Err(DeskError::SlotFull);
    }
    Ok(())
}

/// Gives back the place an appointment held.
async fn give_back_place(c: &mut Conn<'_>, a: &AppointmentRow) -> Result<(), sqlx::Error> {
    c.execute(
        Stmt::new(
            "UPDATE slots SET booked = booked - 1, \
             booked_for_reports = booked_for_reports - CASE WHEN $3 THEN 1 ELSE 0 END \
             WHERE site_id = $1 AND starts_at = $2 AND booked > 0",
        )
        .bind(a.site_id.as_str())
        .bind(a.starts_at)
        .bind(a.report_id.is_some()),
    )
    .await?;
    Ok(())
}

/// A step of an appointment, as its history and its bus event tell it.
struct Step<'a> {
    kind: &'a str,
    actor: &'a str,
    route: BookingRoute,
    detail: &'a str,
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
    /// An appointment read to change it, locked until the change commits
    /// (the backend's words for it, asked once).
    appointment_for_change: String,
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
        let appointment_for_change = format!(
            "SELECT {COLUMNS} FROM appointments WHERE id = $1 {}",
            db.sql_backend().for_update()
        );
        Self {
            db,
            appointment_for_change,
        }
    }

    pub async fn upsert_site(&self, site: &pb::Site, now: DateTime<Utc>) -> Result<(), DeskError> {
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO sites (id, prefecture, site, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET prefecture = excluded.prefecture, \
                     site = excluded.site, updated_at = excluded.updated_at",
                )
                .bind(&site.id)
                .bind(&site.prefecture)
                .bind(site.encode_to_vec())
                .bind(now),
            )
            .await?;
        Ok(())
    }

    pub async fn site(&self, id: &str) -> Result<pb::Site, DeskError> {
        site_in(&mut self.db.acquire().await?.conn(), id).await
    }

    pub async fn sites(&self, prefecture: &str) -> Result<Vec<pb::Site>, DeskError> {
        let rows: Vec<SiteRow> = self
            .db
            .fetch_all(
                Stmt::new("SELECT site FROM sites WHERE ($1 = '' OR prefecture = $1) ORDER BY id")
                    .bind(prefecture),
            )
            .await
            .map_err(db::reading::<DeskError>(|| {
                format!("a site of prefecture {prefecture:?}")
            }))?;
        Ok(rows.into_iter().map(|r| r.site).collect())
    }

    /// The slots of `date` at a site, with what is free in each.
    pub async fn slots(&self, site_id: &str, date: NaiveDate) -> Result<Vec<SlotView>, DeskError> {
        let site = self.site(site_id).await?;
        let rules = rules_of(&site).map_err(|v| DeskError::BadSlot(v.to_string()))?;
        let from = start_of(date);
        let to = from + Duration::days(1);
        let booked: Vec<(DateTime<Utc>, i32, i32, i32, i32)> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT starts_at, places, places_for_reports, booked, booked_for_reports \
                     FROM slots WHERE site_id = $1 AND starts_at >= $2 AND starts_at < $3",
                )
                .bind(site_id)
                .bind(from)
                .bind(to),
            )
            .await?;
        if !guichet_dossier::calendar::is_working_day(date, &rules.prefecture) {
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
        let fingerprint = idempotency::fingerprint([
            b.site_id.as_bytes(),
            starts_at.as_bytes(),
            b.person.family_name.trim().as_bytes(),
            b.person.given_names.trim().as_bytes(),
            b.person.phone.trim().as_bytes(),
            b.person.email.trim().as_bytes(),
            b.route.as_str().as_bytes(),
            b.booked_by.as_bytes(),
            b.report_id.as_deref().unwrap_or_default().as_bytes(),
        ]);
        match self.book_once(&b, &fingerprint, now).await {
            // The same key booked at the same moment by another request: its
            // row is there now, to replay or to refuse.
            Err(DeskError::Db(e)) if db::is_unique_violation(&e) => {
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
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let found = c
            .fetch_optional(
                Stmt::new(
                    "SELECT id, request_fingerprint FROM appointments WHERE idempotency_key = $1",
                )
                .bind(&b.idempotency_key),
            )
            .await?;
        if let Some(id) = idempotency::earlier(found, fingerprint)? {
            return appointment_in(&mut c, &self.appointment_for_change, &id).await;
        }
        let site = site_in(&mut c, &b.site_id).await?;
        let rules = check_slot(&site, b.starts_at, now)?;
        take_place(
            &mut c,
            &b.site_id,
            b.starts_at,
            &rules,
            b.report_id.is_some(),
        )
        .await?;
        let id = uuid::Uuid::now_v7().to_string();
        c.execute(
            Stmt::new(
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
            .bind(b.route.as_str())
            .bind(&b.booked_by)
            .bind(&b.report_id)
            .bind(now)
            .bind(fingerprint),
        )
        .await?;
        let actor = if b.booked_by.is_empty() {
            "the person"
        } else {
            b.booked_by.as_str()
        };
        let step = Step {
            kind: "booked",
            actor,
            route: b.route,
            detail: "",
        };
        let row = self.record_step(&mut c, &id, step, now).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records a step of an appointment: its event row and its bus event,
    /// with the appointment as it stands after the step.
    async fn record_step(
        &self,
        c: &mut Conn<'_>,
        id: &str,
        step: Step<'_>,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        c.execute(
            Stmt::new(
                "INSERT INTO appointment_events (appointment_id, kind, actor, route, at, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(step.kind)
            .bind(step.actor)
            .bind(step.route.as_str())
            .bind(now)
            .bind(step.detail),
        )
        .await?;
        let row = appointment_in(c, &self.appointment_for_change, id).await?;
        let mut event = to_pb(&row);
        event.changed_at = Some(convert::timestamp_to_pb(now));
        c.enqueue(&event_message(&event, step.kind)).await?;
        Ok(row)
    }

    /// The appointment an earlier booking with this key made, if any: a
    /// retry is answered with it before anything is checked again.
    pub async fn booked_with_key(&self, key: &str) -> Result<Option<AppointmentRow>, DeskError> {
        self.db
            .fetch_optional(
                Stmt::new(format!(
                    "SELECT {COLUMNS} FROM appointments WHERE idempotency_key = $1"
                ))
                .bind(key),
            )
            .await
            .map_err(db::reading(|| {
                format!("the appointment booked with key {key}")
            }))
    }

    pub async fn move_to(
        &self,
        id: &str,
        starts_at: DateTime<Utc>,
        route: BookingRoute,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let a = appointment_in(&mut c, &self.appointment_for_change, id).await?;
        if a.state != AppointmentState::Booked {
            return Err(DeskError::WrongState(format!(
                "an appointment that is {} cannot be moved",
                a.state
            )));
        }
        if a.starts_at == starts_at {
            return Ok(a);
        }
        let site = site_in(&mut c, &a.site_id).await?;
        let rules = check_slot(&site, starts_at, now)?;
        take_place(&mut c, &a.site_id, starts_at, &rules, a.report_id.is_some()).await?;
        give_back_place(&mut c, &a).await?;
        c.execute(
            Stmt::new("UPDATE appointments SET starts_at = $2 WHERE id = $1")
                .bind(id)
                .bind(starts_at),
        )
        .await?;
        let detail = format!("from {}", a.starts_at.to_rfc3339());
        let step = Step {
            kind: "moved",
            actor: by,
            route,
            detail: &detail,
        };
        let row = self.record_step(&mut c, id, step, now).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn cancel(
        &self,
        id: &str,
        route: BookingRoute,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let a = appointment_in(&mut c, &self.appointment_for_change, id).await?;
        match a.state {
            // Cancelling twice is answered as the first time.
            AppointmentState::Cancelled => return Ok(a),
            AppointmentState::Booked => {}
            other => {
                return Err(DeskError::WrongState(format!(
                    "an appointment that is {other} cannot be cancelled"
                )));
            }
        }
        give_back_place(&mut c, &a).await?;
        let step = Step {
            kind: "cancelled",
            actor: by,
            route,
            detail: reason,
        };
        let row = self
            .change_state(&mut c, id, AppointmentState::Cancelled, step, now)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn record_attendance(
        &self,
        id: &str,
        attended: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        let state = if attended {
            AppointmentState::Attended
        } else {
            AppointmentState::NoShow
        };
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let a = appointment_in(&mut c, &self.appointment_for_change, id).await?;
        if a.state != AppointmentState::Booked {
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
        let step = Step {
            kind: state.as_str(),
            actor: by,
            route: BookingRoute::FrontDesk,
            detail: "",
        };
        let row = self.change_state(&mut c, id, state, step, now).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Puts the appointment in `state`, with the step that did it.
    async fn change_state(
        &self,
        c: &mut Conn<'_>,
        id: &str,
        state: AppointmentState,
        step: Step<'_>,
        now: DateTime<Utc>,
    ) -> Result<AppointmentRow, DeskError> {
        c.execute(
            Stmt::new("UPDATE appointments SET state = $2 WHERE id = $1")
                .bind(id)
                .bind(state.as_str()),
        )
        .await?;
        self.record_step(c, id, step, now).await
    }

    /// The site's appointments of `day` (Paris), in time order.
    pub async fn appointments_of_day(
        &self,
        site_id: &str,
        day: NaiveDate,
    ) -> Result<Vec<AppointmentRow>, DeskError> {
        let (from, to) = (start_of(day), start_of(day + Duration::days(1)));
        self.db
            .fetch_all(
                Stmt::new(format!(
                    "SELECT {COLUMNS} FROM appointments \
                     WHERE site_id = $1 AND starts_at >= $2 AND starts_at < $3 \
                     ORDER BY starts_at, id"
                ))
                .bind(site_id)
                .bind(from)
                .bind(to),
            )
            .await
            .map_err(db::reading::<DeskError>(|| {
                format!("an appointment of site {site_id}")
            }))
    }

    pub async fn appointment(&self, id: &str) -> Result<AppointmentRow, DeskError> {
        let sql = format!("SELECT {COLUMNS} FROM appointments WHERE id = $1");
        appointment_in(&mut self.db.acquire().await?.conn(), &sql, id).await
    }

    /// Per site, over the 30 days before `today`: places offered by the
    /// opening hours, appointments kept or missed, and no-shows.
    pub async fn figures(&self, today: NaiveDate) -> Result<Vec<SiteFigures>, DeskError> {
        let from_day = today - Duration::days(30);
        let (from, to) = (start_of(from_day), start_of(today));
        let counts: Vec<StateCount> = self
            .db
            .fetch_all(
                Stmt::new(
                    "SELECT site_id, state, count(*) AS n FROM appointments \
                     WHERE starts_at >= $1 AND starts_at < $2 GROUP BY site_id, state",
                )
                .bind(from)
                .bind(to),
            )
            .await
            .map_err(db::reading::<DeskError>(|| {
                "an appointment counted in the figures".to_string()
            }))?;
        let mut out = Vec::new();
        for site in self.sites("").await? {
            let Ok(rules) = rules_of(&site) else { continue };
            let places_offered: u64 = from_day
                .iter_days()
                .take_while(|d| *d < today)
                .filter(|d| guichet_dossier::calendar::is_working_day(*d, &site.prefecture))
                .map(|d| rules.slots_of_day(d).len() as u64 * u64::from(rules.places_per_slot))
                .sum();
            let count = |states: &[AppointmentState]| -> u64 {
                counts
                    .iter()
                    .filter(|c| c.site_id == site.id && states.contains(&c.state))
                    .map(|c| c.n as u64)
                    .sum()
            };
            out.push(SiteFigures {
                site_id: site.id.clone(),
                places_offered,
                booked: count(&[
                    AppointmentState::Booked,
                    AppointmentState::Attended,
                    AppointmentState::NoShow,
                ]),
                no_shows: count(&[AppointmentState::NoShow]),
            });
        }
        Ok(out)
    }
}

/// The start of `day` in Paris. Midnight is always a time there (the clocks
/// change in the night at 2 or 3); were it not, UTC's midnight would do.
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    guichet_dossier::desk::from_local(midnight).unwrap_or_else(|| midnight.and_utc())
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
        route: convert::booking_route_to_pb(a.route),
        booked_by: a.booked_by.clone(),
        report_id: a.report_id.clone().unwrap_or_default(),
        state: convert::appointment_state_to_pb(a.state),
        booked_at: Some(convert::timestamp_to_pb(a.booked_at)),
        prefecture: a.prefecture.clone().unwrap_or_default(),
        changed_at: None,
    }
}
