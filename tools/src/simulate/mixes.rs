//! Every number the simulation assumes, in one place. Percent tables sum to
//! 100 (a test checks each); each row says where its figure comes from.
//! "Assumption" means nobody published it and we chose a plausible value:
//! change it here, and docs/simulation.md, when better figures exist.

use chrono::{Datelike, NaiveDate};
use guichet_dossier::{Channel, Motif, Procedure, TitleKind};
use rand::Rng;

use super::delivery::AnswerChannels;

/// A number of days drawn uniformly in `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub i64, pub i64);

impl Days {
    pub fn draw(self, rng: &mut impl Rng) -> i64 {
        rng.random_range(self.0..=self.1)
    }
}

/// Some days later, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    After(Days),
    Never,
}

impl Delay {
    pub fn draw(self, rng: &mut impl Rng) -> Option<i64> {
        match self {
            Delay::After(days) => Some(days.draw(rng)),
            Delay::Never => None,
        }
    }
}

/// One row of a percent table, drawn in proportion to its weight.
pub fn pick<T: Copy>(rng: &mut impl Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    let mut chosen = table[0].0;
    for &(value, weight) in table {
        chosen = value;
        if x < weight {
            break;
        }
        x -= weight;
    }
    chosen
}

/// A percent looked up by key; 0 when the key has no row.
pub fn percent_of<K: PartialEq>(table: &[(K, u32)], key: K) -> u32 {
    table.iter().find(|(k, _)| *k == key).map_or(0, |(_, p)| *p)
}

// ---------------------------------------------------------------------------
// Who files, how, and what for.

/// Where filings come in, percent.
pub const CHANNEL_MIX: &[(Channel, u32)] = &[
    // DOMAIN.md: 83 % of the volume is filed online (ANEF, 2024).
    (Channel::Web, 83),
    // Assumption: most of the other 17 % is filed with help at a kiosk.
    (Channel::Pan, 8),
    // Assumption: the substitute route by post.
    (Channel::Postal, 6),
    // Assumption: call-centre agents filing on a caller's behalf; the 4,377
    // escalated "blocked user" reports (0.4 %) are only part of them.
    (Channel::Ccc, 3),
];

/// What people ask for, percent.
pub const PROCEDURE_MIX: &[(Procedure, u32)] = &[
    // Assumption: renewals are the bulk of a prefecture's work.
    (Procedure::Renewal, 60),
    // Assumption: first cards, often after a long-stay visa.
    (Procedure::FirstApplication, 22),
    // Assumption: student to employee, and the like.
    (Procedure::ChangeOfStatus, 8),
    // Assumption: admission exceptionnelle au séjour.
    (Procedure::Regularisation, 6),
    // Assumption: lost or stolen cards.
    (Procedure::Duplicate, 4),
];

/// Why people are in France, percent. Only the documents required and the
/// student season depend on it.
pub const MOTIF_MIX: &[(Motif, u32)] = &[
    // Every row is an assumption. Students bring the late-summer peak.
    (Motif::Student, 15),
    (Motif::Employee, 18),
    (Motif::SelfEmployed, 2),
    (Motif::Talent, 4),
    (Motif::SeasonalWorker, 1),
    (Motif::Family, 10),
    (Motif::SpouseOfFrench, 10),
    (Motif::ParentOfFrenchChild, 7),
    (Motif::PrivateAndFamilyLife, 10),
    (Motif::InternationalProtection, 12),
    (Motif::Health, 3),
    (Motif::Visitor, 3),
    (Motif::Retired, 2),
    (Motif::EuCitizenFamily, 2),
    (Motif::Other, 1),
];

/// The title a renewal renews, percent. The last three are the long-stay
/// titles CESEDA L.433-3 extends by 3 months after expiry.
pub const RENEWED_TITLES: &[(TitleKind, u32)] = &[
    // Assumption: one-year cards, no legal extension.
    (TitleKind::TemporaryCard, 45),
    // Assumption: the 2-4 year cards.
    (TitleKind::MultiYearCard, 33),
    // Assumption: 10-year cards.
    (TitleKind::ResidentCard, 12),
    // Assumption: titles of more than one year under an international
    // agreement (Algerian residence certificates, for instance).
    (TitleKind::AgreementTitle, 10),
];

/// How many days before their title expires people file a renewal (negative:
/// after it expired), percent. Renewal is asked for in the months before
/// expiry; most file 1-4 months ahead, some late.
pub const RENEWAL_LEAD_DAYS: &[(Days, u32)] = &[
    (Days(91, 120), 22), // assumption: as soon as the window opens.
    (Days(61, 90), 30),  // assumption
    (Days(31, 60), 22),  // assumption
    (Days(8, 30), 12),   // assumption: close to the deadline.
    (Days(0, 7), 6),     // assumption: in the last week, still in time.
    (Days(-30, -1), 6),  // assumption: late, after the title expired.
    (Days(-90, -31), 2), // assumption: very late.
];

/// A first application is often made on a long-stay visa that is running
/// out, percent of first applications; the others hold no title.
pub const FIRST_APPLICATION_ON_VISA_PERCENT: u32 = 60; // assumption
/// Days left on that visa at filing.
pub const VISA_DAYS_LEFT: Days = Days(15, 75); // assumption
/// Days left on a card reported lost or stolen (a duplicate).
pub const DUPLICATE_DAYS_LEFT: Days = Days(90, 1400); // assumption

// ---------------------------------------------------------------------------
// When they file.

/// Filing volume by month, relative: (everyone but students, students).
/// Students' titles follow the academic year, hence the late-summer peak;
/// August is quieter for everyone else.
pub const MONTH_WEIGHTS: [(f64, f64); 12] = [
    // Every row is an assumption.
    (1.00, 0.4), // Jan
    (1.00, 0.3), // Feb
    (1.05, 0.3), // Mar
    (1.00, 0.3), // Apr
    (0.95, 0.4), // May
    (1.00, 0.7), // Jun
    (0.90, 1.5), // Jul
    (0.75, 3.0), // Aug: holidays; the student peak starts (DOMAIN.md).
    (1.10, 3.5), // Sep: the student peak.
    (1.10, 2.0), // Oct
    (1.05, 0.6), // Nov
    (0.85, 0.4), // Dec
];

/// Filing volume by weekday (Monday first), relative, per channel.
pub const WEEKDAY_WEIGHTS: &[(Channel, [f64; 7])] = &[
    // assumption: online filing goes on at weekends, at a lower rate.
    (Channel::Web, [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.4]),
    // assumption: the call centre works on weekdays.
    (Channel::Ccc, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
    // assumption: kiosk appointments on weekdays.
    (Channel::Pan, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
    // assumption: post offices open on Saturday mornings; the postmark is the filing date.
    (Channel::Postal, [1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.0]),
];

/// The largest product of a month weight and a weekday weight, for drawing
/// dates by rejection.
pub const MAX_DAY_WEIGHT: f64 = 3.5;

/// How heavily `channel` files `motif` on `day`, relative.
pub fn day_weight(day: NaiveDate, channel: Channel, motif: Motif) -> f64 {
    let (everyone, students) = MONTH_WEIGHTS[day.month0() as usize];
    let month = if motif == Motif::Student {
        students
    } else {
        everyone
    };
    let weekday = WEEKDAY_WEIGHTS
        .iter()
        .find(|(c, _)| *c == channel)
        .map_or(0.0, |(_, w)| {
            w[day.weekday().num_days_from_monday() as usize]
        });
    month * weekday
}

// ---------------------------------------------------------------------------
// What arrives, and how complete.

/// Files complete at filing (every required document there), percent per
/// channel. Assisted channels check the file with the person.
pub const COMPLETE_AT_FILING_PERCENT: &[(Channel, u32)] = &[
    // Assumption: failed uploads and wrong documents with nobody to ask
    // (DOMAIN.md: bugs block uploads; nobody confirms receipt).
    (Channel::Web, 55),
    // Assumption: an agent goes through the list on the phone.
    (Channel::Ccc, 70),
    // Assumption: prefecture staff check the file with the person.
    (Channel::Pan, 85),
    // Assumption: missing copies, nobody to check before posting.
    (Channel::Postal, 60),
];

/// How many required documents an incomplete file lacks, percent.
pub const MISSING_DOCUMENTS: &[(usize, u32)] = &[
    (1, 65), // assumption
    (2, 25), // assumption
    (3, 10), // assumption
];

/// Days from the request for documents to the person sending them, percent.
pub const DOCUMENTS_DELAY: &[(Delay, u32)] = &[
    (Delay::After(Days(1, 7)), 25),   // assumption
    (Delay::After(Days(8, 21)), 35),  // assumption
    (Delay::After(Days(22, 45)), 22), // assumption
    (Delay::After(Days(46, 60)), 8),  // assumption: just before the deadline.
    (Delay::Never, 10),               // assumption: the file is closed at the deadline.
];

/// Days given to send requested documents before the file is closed.
pub const DOCUMENT_DEADLINE_DAYS: i64 = 60; // assumption; the longest row above.

/// Days between the postmark and the scanned file reaching the system: the
/// post, then the mailroom. Documents sent later by post take as long.
pub const POSTAL_TRANSIT_DAYS: &[(Days, u32)] = &[
    (Days(1, 3), 55),  // assumption
    (Days(4, 7), 30),  // assumption
    (Days(8, 15), 15), // assumption: a mailroom backlog.
];

// ---------------------------------------------------------------------------
// How the prefecture decides.

/// Decisions the agents can take over the period, per filing in it. Just
/// under one (about 4 % of files close for missing documents), so the
/// backlog carried into the year never quite drains and grows in the
/// student peak while agents are on holiday. Assumption, chosen so that
/// decisions take weeks to a few months.
pub const CAPACITY_PER_FILING: f64 = 0.96;

/// Agent capacity by month, relative: holidays.
pub const AGENT_MONTH_FACTOR: [f64; 12] = [
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, // Jan-Jun
    // Assumption: agents' summer holidays.
    0.85, 0.65, // Jul, Aug
    1.0, 1.0, 1.0, // Sep-Nov
    // Assumption: year-end holidays.
    0.9, // Dec
];

/// Assumption: the prefecture simulated is a large mainland one (Nord),
/// with the national public holidays alone.
pub const DEPARTMENT: &str = "59";

/// Agents decide on working days: weekdays that are not public holidays
/// (moving ones included), the calendar the rules use.
pub fn is_working_day(day: chrono::NaiveDate) -> bool {
    guichet_dossier::calendar::is_working_day(day, DEPARTMENT)
}

/// Days from an agent taking a case up to the decision (checks with other
/// services, a work-permit opinion, card ordering), percent.
pub const REVIEW_DAYS: &[(Days, u32)] = &[
    (Days(0, 0), 50),   // assumption: decided on the spot.
    (Days(1, 10), 30),  // assumption
    (Days(11, 30), 15), // assumption
    (Days(31, 60), 5),  // assumption: consultations that take long.
];

/// Favourable decisions, percent per procedure.
pub const FAVOURABLE_PERCENT: &[(Procedure, u32)] = &[
    (Procedure::Renewal, 95),          // assumption: most renewals are granted.
    (Procedure::FirstApplication, 80), // assumption
    (Procedure::ChangeOfStatus, 85),   // assumption
    (Procedure::Regularisation, 55),   // assumption
    (Procedure::Duplicate, 99),        // assumption
];

/// Filings already pending on the first day, as days of inflow before the
/// period: the backlog a prefecture carries into the year. No decision is
/// taken in those days, so all of them are still waiting on day one.
pub const CARRY_OVER_DAYS: i64 = 56; // assumption: eight weeks of filings waiting.

/// After the period, filings go on at the same rate (so the queue stays as
/// loaded) and the period's cases are followed until decided, for at most
/// this many days.
pub const FOLLOW_UP_DAYS: i64 = 270;

// ---------------------------------------------------------------------------
// How answers reach people.

/// The answer channels people give, percent per intake channel. Paper is
/// always there to fall back on (every filing has a postal address); `POST`
/// here means they asked for paper as well or instead.
pub const ANSWER_CHANNEL_MIX: &[(Channel, &[(AnswerChannels, u32)])] = &[
    (
        Channel::Web,
        &[
            // An online account needs an e-mail address; most give a mobile too.
            (AnswerChannels::EMAIL_SMS, 70),
            (AnswerChannels::EMAIL, 27),
            // Assumption: a helper filed for them and they asked for paper too.
            (AnswerChannels::EMAIL_SMS_POST, 2),
            // Assumption: the helper's e-mail opened the account; answers by post.
            (AnswerChannels::POST, 1),
        ],
    ),
    (
        Channel::Ccc,
        &[
            // Assumption: they called, so they have a phone; many have no
            // e-mail they read, or they would have filed online.
            (AnswerChannels::EMAIL_SMS, 35),
            (AnswerChannels::SMS, 30),
            (AnswerChannels::SMS_POST, 20),
            (AnswerChannels::POST, 15),
        ],
    ),
    (
        Channel::Pan,
        &[
            // Assumption: staff help set up an e-mail where the person can
            // use one; those far from digital tools keep a phone or paper.
            (AnswerChannels::EMAIL_SMS, 45),
            (AnswerChannels::SMS, 20),
            (AnswerChannels::SMS_POST, 15),
            (AnswerChannels::POST, 20),
        ],
    ),
    (
        Channel::Postal,
        &[
            // Assumption: those who file on paper mostly want paper only
            // (DOMAIN.md: a paper filer gets paper).
            (AnswerChannels::POST, 70),
            (AnswerChannels::SMS_POST, 20),
            (AnswerChannels::EMAIL_POST, 8),
            (AnswerChannels::EMAIL_SMS_POST, 2),
        ],
    ),
];

/// The answer channel mix of an intake channel.
pub fn answer_channel_mix(channel: Channel) -> &'static [(AnswerChannels, u32)] {
    ANSWER_CHANNEL_MIX
        .iter()
        .find(|(c, _)| *c == channel)
        .map_or(&[(AnswerChannels::POST, 1)], |(_, mix)| mix)
}

/// Defaults of `guichet simulate --email-delay-days` and the rest: days from
/// sending to the person having it.
/// Assumption: an e-mail or an SMS is read the day it is sent.
pub const EMAIL_DELAY_DAYS: u32 = 0;
pub const SMS_DELAY_DAYS: u32 = 0;
/// La Poste's ordinary letter (lettre verte) is delivered in 3 working days.
pub const POST_DELAY_DAYS: u32 = 3;

/// Share of sends that never reach the person, for good.
/// Assumption: addresses mistyped at a desk or dictated on the phone,
/// mailboxes abandoned, answers in the spam folder.
pub const EMAIL_FAILURE_RATE: f64 = 0.03;
/// Assumption: numbers changed or out of service.
pub const SMS_FAILURE_RATE: f64 = 0.02;
/// Assumption: letters lost or returned as "n'habite pas à l'adresse
/// indiquée", common for people hosted by others or domiciled at an
/// association.
pub const POST_FAILURE_RATE: f64 = 0.02;

// ---------------------------------------------------------------------------
// The manual baseline.

/// Days after their proof of stay ended before a person fetches an
/// attestation de prolongation by hand, percent, drawn each time it lapses.
pub const BASELINE_FETCH_DELAY: &[(Delay, u32)] = &[
    // Every row is an assumption. Today the API must be fetched by hand and
    // renewals lapse (DOMAIN.md); 58 % of social-work organisations saw
    // people lose benefits for want of proof while their file was pending.
    // Watched the date, fetched it at once:
    (Delay::After(Days(0, 0)), 15),
    (Delay::After(Days(1, 7)), 20),
    // Found out from an employer or a benefits office:
    (Delay::After(Days(8, 30)), 30),
    (Delay::After(Days(31, 60)), 15),
    (Delay::After(Days(61, 120)), 10),
    // Does not know it exists, or cannot get through:
    (Delay::Never, 10),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn sum<T>(table: &[(T, u32)]) -> u32 {
        table.iter().map(|(_, w)| w).sum()
    }

    #[test]
    fn percent_tables_sum_to_100() {
        assert_eq!(sum(CHANNEL_MIX), 100);
        assert_eq!(sum(PROCEDURE_MIX), 100);
        assert_eq!(sum(MOTIF_MIX), 100);
        assert_eq!(sum(RENEWED_TITLES), 100);
        assert_eq!(sum(RENEWAL_LEAD_DAYS), 100);
        assert_eq!(sum(MISSING_DOCUMENTS), 100);
        assert_eq!(sum(DOCUMENTS_DELAY), 100);
        assert_eq!(sum(POSTAL_TRANSIT_DAYS), 100);
        assert_eq!(sum(REVIEW_DAYS), 100);
        assert_eq!(sum(BASELINE_FETCH_DELAY), 100);
        for (channel, mix) in ANSWER_CHANNEL_MIX {
            assert_eq!(sum(mix), 100, "{channel}");
        }
    }

    #[test]
    fn every_code_has_exactly_one_row() {
        for c in Channel::ALL {
            assert_eq!(CHANNEL_MIX.iter().filter(|(k, _)| *k == c).count(), 1);
            assert_eq!(
                COMPLETE_AT_FILING_PERCENT
                    .iter()
                    .filter(|(k, _)| *k == c)
                    .count(),
                1
            );
            assert_eq!(WEEKDAY_WEIGHTS.iter().filter(|(k, _)| *k == c).count(), 1);
            assert_eq!(
                ANSWER_CHANNEL_MIX.iter().filter(|(k, _)| *k == c).count(),
                1
            );
        }
        for p in Procedure::ALL {
            assert_eq!(PROCEDURE_MIX.iter().filter(|(k, _)| k == p).count(), 1);
            assert_eq!(FAVOURABLE_PERCENT.iter().filter(|(k, _)| k == p).count(), 1);
        }
        for m in Motif::ALL {
            assert_eq!(MOTIF_MIX.iter().filter(|(k, _)| k == m).count(), 1);
        }
    }

    #[test]
    fn ranges_and_weights_are_sane() {
        for (Days(lo, hi), _) in RENEWAL_LEAD_DAYS
            .iter()
            .chain(POSTAL_TRANSIT_DAYS)
            .chain(REVIEW_DAYS)
        {
            assert!(lo <= hi);
        }
        for (delay, _) in DOCUMENTS_DELAY {
            if let Delay::After(Days(lo, hi)) = delay {
                assert!(1 <= *lo && lo <= hi && *hi <= DOCUMENT_DEADLINE_DAYS);
            }
        }
        for (everyone, students) in MONTH_WEIGHTS {
            for (_, week) in WEEKDAY_WEIGHTS {
                for w in week {
                    assert!(everyone * w <= MAX_DAY_WEIGHT && students * w <= MAX_DAY_WEIGHT);
                }
            }
        }
        let filed = |pct: u32| (1..=100).contains(&pct);
        assert!(COMPLETE_AT_FILING_PERCENT.iter().all(|(_, p)| filed(*p)));
        assert!(FAVOURABLE_PERCENT.iter().all(|(_, p)| filed(*p)));
        for (channel, mix) in ANSWER_CHANNEL_MIX {
            for (to, _) in *mix {
                assert!(to.email || to.sms || to.post, "{channel}: no channel");
            }
            // One row per set of channels.
            for (k, (to, _)) in mix.iter().enumerate() {
                assert!(!mix[..k].iter().any(|(other, _)| other == to), "{channel}");
            }
        }
        for rate in [EMAIL_FAILURE_RATE, SMS_FAILURE_RATE, POST_FAILURE_RATE] {
            assert!((0.0..1.0).contains(&rate));
        }
    }

    #[test]
    fn pick_follows_the_weights() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let table = [('a', 0), ('b', 30), ('c', 70)];
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            match pick(&mut rng, &table) {
                'a' => counts[0] += 1,
                'b' => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        assert_eq!(counts[0], 0);
        assert!((2_700..3_300).contains(&counts[1]), "{counts:?}");
    }
}
