//! The desks of prefectures and sub-prefectures: opening hours, the slots
//! they make, and who may take the last places of a slot. Times are local
//! (Europe/Paris): a slot at 09:00 is at 09:00 in winter and in summer.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;

use crate::Violations;
use crate::codes::codes;

codes!(
    /// Where an appointment stands.
    AppointmentState {
        Booked => "booked",
        Cancelled => "cancelled",
        Attended => "attended",
        NoShow => "no_show",
    }
);

codes!(
    /// How an appointment was booked, moved or cancelled.
    BookingRoute {
        Online => "online",
        Phone => "phone",
        FrontDesk => "front_desk",
    }
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningPeriod {
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u32,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

/// What decides a site's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRules {
    /// The site's department: whose public holidays close it.
    pub prefecture: String,
    pub periods: Vec<OpeningPeriod>,
    pub slot_minutes: u32,
    /// People one slot takes.
    pub places_per_slot: u32,
    /// Of those, places kept for alternatives offered to blocked-user reports.
    pub places_for_reports: u32,
}

/// A site as stated by its prefecture, before checking.
#[derive(Debug, Clone, Default)]
pub struct RawSite {
    pub id: String,
    pub name: String,
    pub prefecture: String,
    /// (weekday, "08:30", "12:00")
    pub opening_hours: Vec<(u32, String, String)>,
    pub desks: u32,
    pub slot_minutes: u32,
    /// 0: one per desk.
    pub places_per_slot: u32,
    pub places_for_reports: u32,
}

fn time(s: &str) -> Option<NaiveTime> {
    if s.len() != 5 {
        return None;
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

impl RawSite {
    /// Checks the site, naming every field at fault.
    pub fn rules(&self) -> Result<SiteRules, Violations> {
        let mut v = Violations::default();
        if self.id.trim().is_empty() || self.id.len() > 64 {
            v.add("id", "is required, at most 64 characters");
        }
        if self.name.trim().is_empty() {
            v.add("name", "is required");
        }
        if !crate::prefecture::is_department_code(&self.prefecture) {
            v.add(
                "prefecture",
                "must be a department code such as 59, 2A or 974",
            );
        }
        if self.desks == 0 || self.desks > 200 {
            v.add("desks", "must be between 1 and 200");
        }
        if !(5..=240).contains(&self.slot_minutes) {
            v.add("slot_minutes", "must be between 5 and 240");
        }
        let places = if self.places_per_slot == 0 {
            self.desks
        } else {
            self.places_per_slot
        };
        if self.places_for_reports > places {
            v.add(
                "places_for_reports",
                "cannot be more than the places of a slot",
            );
        }
        let mut periods = Vec::new();
        for (i, (weekday, opens, closes)) in self.opening_hours.iter().enumerate() {
            let field = |f: &str| format!("opening_hours[{i}].{f}");
            if !(1..=7).contains(weekday) {
                v.add(field("weekday"), "must be 1 (Monday) to 7 (Sunday)");
            }
            match (time(opens), time(closes)) {
                (Some(o), Some(c)) if o < c => periods.push(OpeningPeriod {
                    weekday: *weekday,
                    opens: o,
                    closes: c,
                }),
                (Some(_), Some(_)) => v.add(field("closes"), "must be after the opening time"),
                (o, c) => {
                    if o.is_none() {
                        v.add(field("opens"), "must be a time of the form HH:MM");
                    }
                    if c.is_none() {
                        v.add(field("closes"), "must be a time of the form HH:MM");
                    }
                }
            }
        }
        if self.opening_hours.is_empty() {
            v.add("opening_hours", "a site opens at least once a week");
        }
        v.into_result(SiteRules {
            prefecture: self.prefecture.clone(),
            periods,
            slot_minutes: self.slot_minutes,
            places_per_slot: places,
            places_for_reports: self.places_for_reports,
        })
    }
}

impl SiteRules {
    /// Every slot of `date`, as local start times, in order.
    pub fn slots_of_day(&self, date: NaiveDate) -> Vec<NaiveDateTime> {
        let weekday = date.weekday().number_from_monday();
        let length = Duration::minutes(i64::from(self.slot_minutes));
        let mut slots = Vec::new();
        for p in self.periods.iter().filter(|p| p.weekday == weekday) {
            let mut start = date.and_time(p.opens);
            while start + length <= date.and_time(p.closes) {
                slots.push(start);
                start += length;
            }
        }
        slots.sort();
        slots.dedup();
        slots
    }

    /// Whether an appointment may start at this instant: one of the site's
    /// slots, on a working day.
    pub fn check_slot(&self, starts_at: DateTime<Utc>) -> Result<(), SlotRefused> {
        let local = to_local(starts_at);
        if !crate::calendar::is_working_day(local.date(), &self.prefecture) {
            return Err(SlotRefused::NotWorkingDay(local.date()));
        }
        if self.slots_of_day(local.date()).contains(&local) {
            Ok(())
        } else {
            Err(SlotRefused::NotASlot(local))
        }
    }
}

/// Why an appointment may not start at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error("{} is not a working day", .0.format("%Y-%m-%d"))]
    NotWorkingDay(chrono::NaiveDate),
    #[error("{} (Paris time) is not a slot of this site", .0.format("%Y-%m-%d %H:%M"))]
    NotASlot(chrono::NaiveDateTime),
}

/// Places of a slot still kept for reports: those set aside, less the ones
/// reports already took.
pub fn places_still_kept(places_for_reports: u32, booked_for_reports: u32) -> u32 {
    places_for_reports.saturating_sub(booked_for_reports)
}

/// Whether one more booking fits: a report's alternative may take any free
/// place; anyone else only a free place beyond those still kept for reports.
/// The stores apply the same condition in the UPDATE that books, so
/// concurrent bookings cannot overfill a slot.
pub fn may_book(
    places: u32,
    booked: u32,
    places_for_reports: u32,
    booked_for_reports: u32,
    for_report: bool,
) -> bool {
    let free = places.saturating_sub(booked);
    if for_report {
        free > 0
    } else {
        free > places_still_kept(places_for_reports, booked_for_reports)
    }
}

pub fn to_local(at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&Paris).naive_local()
}

/// The instant of a local time in Paris; `None` in the hour skipped in spring.
pub fn from_local(local: NaiveDateTime) -> Option<DateTime<Utc>> {
    Paris
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> RawSite {
        RawSite {
            id: "59-lille".into(),
            name: "Préfecture du Nord".into(),
            prefecture: "59".into(),
            opening_hours: (1..=5)
                .flat_map(|d| {
                    [
                        (d, "08:30".to_string(), "12:00".to_string()),
                        (d, "13:30".to_string(), "16:00".to_string()),
                    ]
                })
                .collect(),
            desks: 4,
            slot_minutes: 30,
            places_per_slot: 0,
            places_for_reports: 1,
        }
    }

    #[test]
    fn slots_follow_the_opening_hours() {
        let rules = site().rules().unwrap();
        // Tuesday 24 November 2026: 7 morning slots (08:30 … 11:30), 5 afternoon.
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let slots = rules.slots_of_day(day);
        assert_eq!(slots.len(), 12);
        assert_eq!(slots[0].format("%H:%M").to_string(), "08:30");
        assert_eq!(slots[6].format("%H:%M").to_string(), "11:30");
        assert_eq!(slots[7].format("%H:%M").to_string(), "13:30");
        // Saturday: closed.
        assert!(rules.slots_of_day(day + Duration::days(4)).is_empty());
        assert_eq!(rules.places_per_slot, 4, "one place per desk by default");
    }

    #[test]
    fn slot_checks_table() {
        let rules = site().rules().unwrap();
        let local = |s: &str| {
            from_local(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()).unwrap()
        };
        let table = [
            ("2026-11-24 08:30", true, "first slot"),
            ("2026-11-24 11:30", true, "last morning slot"),
            ("2026-11-24 12:00", false, "lunch"),
            ("2026-11-24 08:45", false, "not on the grid"),
            ("2026-11-28 09:00", false, "Saturday"),
            ("2026-11-11 09:00", false, "11 November"),
            (
                "2026-07-07 09:00",
                true,
                "summer time: still 09:00 in Paris",
            ),
        ];
        for (at, ok, why) in table {
            assert_eq!(rules.check_slot(local(at)).is_ok(), ok, "{why}");
        }
        // Good Friday is worked in Nord, not in Bas-Rhin.
        let good_friday = local("2027-03-26 09:00");
        assert!(rules.check_slot(good_friday).is_ok());
        let strasbourg = RawSite {
            prefecture: "67".into(),
            ..site()
        };
        assert_eq!(
            strasbourg.rules().unwrap().check_slot(good_friday),
            Err(SlotRefused::NotWorkingDay(good_friday.date_naive()))
        );
    }

    #[test]
    fn places_kept_for_reports_table() {
        // 4 places, 1 kept for reports:
        // (booked, of which for reports, booking for a report, fits)
        let table = [
            (0, 0, false, true),
            (2, 0, false, true),
            (3, 0, false, false), // the last place is kept
            (3, 0, true, true),   // and a report takes it
            (4, 1, true, false),  // full
            (1, 1, false, true),  // the report used its place: 3 open ones left
            (3, 1, false, true),
            (4, 1, false, false),
            (2, 2, false, true), // two reports, one beyond the kept place
        ];
        for (booked, reports, for_report, expected) in table {
            assert_eq!(
                may_book(4, booked, 1, reports, for_report),
                expected,
                "{booked} booked ({reports} for reports), report {for_report}"
            );
        }
    }

    #[test]
    fn bad_sites_name_their_fields() {
        let mut s = site();
        s.desks = 0;
        s.slot_minutes = 1;
        s.prefecture = "XX".into();
        s.opening_hours = vec![(8, "9:00".into(), "08:00".into())];
        let fields: Vec<String> = s
            .rules()
            .unwrap_err()
            .iter()
            .map(|v| v.field.clone())
            .collect();
        for f in [
            "desks",
            "slot_minutes",
            "prefecture",
            "opening_hours[0].weekday",
            "opening_hours[0].opens",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
        }
    }
}
