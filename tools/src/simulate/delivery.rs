//! How an attestation reaches the person: on every answer channel they gave
//! at once, each with its delay and its chance of never arriving; when every
//! electronic channel has failed for good, a letter follows, as the notifier
//! does. An attestation protects from the day it reached the person.

use chrono::NaiveDate;
use guichet_dossier::calendar::add_working_days;
use rand::Rng;
use serde::Serialize;

use super::mixes::{
    EMAIL_DELAY_DAYS, EMAIL_FAILURE_RATE, POST_DELAY_DAYS, POST_FAILURE_RATE, SMS_DELAY_DAYS,
    SMS_FAILURE_RATE,
};
use super::population::plus;

/// Where a person gets answers: several at once where they gave several.
/// Everyone gives a postal address (the filing needs one), so paper is
/// always there to fall back on even when `post` is not asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerChannels {
    pub email: bool,
    pub sms: bool,
    pub post: bool,
}

impl AnswerChannels {
    pub const EMAIL: Self = Self::of(true, false, false);
    pub const SMS: Self = Self::of(false, true, false);
    pub const POST: Self = Self::of(false, false, true);
    pub const EMAIL_SMS: Self = Self::of(true, true, false);
    pub const EMAIL_POST: Self = Self::of(true, false, true);
    pub const SMS_POST: Self = Self::of(false, true, true);
    pub const EMAIL_SMS_POST: Self = Self::of(true, true, true);

    const fn of(email: bool, sms: bool, post: bool) -> Self {
        AnswerChannels { email, sms, post }
    }
}

/// Delays and failure rates of the three ways an answer travels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, clap::Args)]
pub struct Delivery {
    /// Days from sending to an e-mail being read (0: the same day).
    #[arg(long, default_value_t = EMAIL_DELAY_DAYS, value_parser = clap::value_parser!(u32).range(0..=MAX_DELAY_DAYS as i64))]
    pub email_delay_days: u32,
    /// Days from sending to an SMS being read (0: the same day).
    #[arg(long, default_value_t = SMS_DELAY_DAYS, value_parser = clap::value_parser!(u32).range(0..=MAX_DELAY_DAYS as i64))]
    pub sms_delay_days: u32,
    /// Working days from posting to a letter being in the letterbox.
    #[arg(long, default_value_t = POST_DELAY_DAYS, value_parser = clap::value_parser!(u32).range(0..=MAX_DELAY_DAYS as i64))]
    pub post_delay_days: u32,
    /// Share of e-mails that never reach the person (0 to 1).
    #[arg(long, default_value_t = EMAIL_FAILURE_RATE, value_parser = parse_rate)]
    pub email_failure_rate: f64,
    /// Share of SMS that never reach the person (0 to 1).
    #[arg(long, default_value_t = SMS_FAILURE_RATE, value_parser = parse_rate)]
    pub sms_failure_rate: f64,
    /// Share of letters lost or undeliverable (0 to 1).
    #[arg(long, default_value_t = POST_FAILURE_RATE, value_parser = parse_rate)]
    pub post_failure_rate: f64,
}

/// A delay longer than this is a typo, not a post office.
pub const MAX_DELAY_DAYS: u32 = 60;

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            email_delay_days: EMAIL_DELAY_DAYS,
            sms_delay_days: SMS_DELAY_DAYS,
            post_delay_days: POST_DELAY_DAYS,
            email_failure_rate: EMAIL_FAILURE_RATE,
            sms_failure_rate: SMS_FAILURE_RATE,
            post_failure_rate: POST_FAILURE_RATE,
        }
    }
}

impl Delivery {
    /// Nothing delayed, nothing lost: delivered is issued.
    pub const INSTANT: Delivery = Delivery {
        email_delay_days: 0,
        sms_delay_days: 0,
        post_delay_days: 0,
        email_failure_rate: 0.0,
        sms_failure_rate: 0.0,
        post_failure_rate: 0.0,
    };

    /// The first problem with these numbers, as (field, problem).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let delays = [
            ("email_delay_days", self.email_delay_days),
            ("sms_delay_days", self.sms_delay_days),
            ("post_delay_days", self.post_delay_days),
        ];
        let rates = [
            ("email_failure_rate", self.email_failure_rate),
            ("sms_failure_rate", self.sms_failure_rate),
            ("post_failure_rate", self.post_failure_rate),
        ];
        delays
            .into_iter()
            .find(|(_, d)| *d > MAX_DELAY_DAYS)
            .map(|(field, _)| (field, format!("must be between 0 and {MAX_DELAY_DAYS}")))
            .or_else(|| {
                rates
                    .into_iter()
                    .find(|(_, r)| !(0.0..=1.0).contains(r))
                    .map(|(field, _)| (field, "must be between 0 and 1".to_string()))
            })
    }

    /// The day an attestation sent on `sent` first reaches a person who
    /// gave `to`, or `None` if it never does. A failed electronic send is
    /// known to have failed on the day it would have arrived; once every
    /// electronic channel given has failed, a letter goes out that day
    /// (unless one went out already because the person asked for paper).
    pub fn reaches(
        &self,
        to: AnswerChannels,
        sent: NaiveDate,
        rng: &mut impl Rng,
    ) -> Option<NaiveDate> {
        let mut first: Option<NaiveDate> = None;
        let mut arrived = |day: NaiveDate| first = Some(first.map_or(day, |f| f.min(day)));
        let electronic = [
            (to.email, self.email_delay_days, self.email_failure_rate),
            (to.sms, self.sms_delay_days, self.sms_failure_rate),
        ];
        let mut tried = false;
        let mut all_failed = true;
        // The day the last electronic failure is known.
        let mut failed_on = sent;
        for (given, delay, rate) in electronic {
            if !given {
                continue;
            }
            tried = true;
            let on = plus(sent, i64::from(delay));
            if fails(rng, rate) {
                failed_on = failed_on.max(on);
            } else {
                all_failed = false;
                arrived(on);
            }
        }
        let posted = if to.post || !tried {
            Some(sent)
        } else if all_failed {
            Some(failed_on)
        } else {
            None
        };
        if let Some(posted) = posted
            && !fails(rng, self.post_failure_rate)
        {
            arrived(add_working_days(
                posted,
                self.post_delay_days,
                super::mixes::DEPARTMENT,
            ));
        }
        first
    }
}

/// One draw per send, whatever the rate, so a run's stream of draws does
/// not depend on the rates' values.
fn fails(rng: &mut impl Rng, rate: f64) -> bool {
    rng.random::<f64>() < rate
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a share between 0 and 1, such as 0.03".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    const EVERY_SET: [AnswerChannels; 7] = [
        AnswerChannels::EMAIL,
        AnswerChannels::SMS,
        AnswerChannels::POST,
        AnswerChannels::EMAIL_SMS,
        AnswerChannels::EMAIL_POST,
        AnswerChannels::SMS_POST,
        AnswerChannels::EMAIL_SMS_POST,
    ];

    fn with(f: impl FnOnce(&mut Delivery)) -> Delivery {
        let mut d = Delivery::INSTANT;
        f(&mut d);
        d
    }

    #[test]
    fn the_day_it_reaches_the_person() {
        // Friday 2026-01-09; the next working days are Mon 12, Tue 13, Wed 14.
        let friday = day(2026, 1, 9);
        let slow_post = with(|d| d.post_delay_days = 3);
        let all_electronic_fail = with(|d| {
            d.email_delay_days = 1;
            d.sms_delay_days = 4;
            d.email_failure_rate = 1.0;
            d.sms_failure_rate = 1.0;
            d.post_delay_days = 3;
        });
        let table: [(&str, Delivery, AnswerChannels, Option<NaiveDate>); 12] = [
            (
                "instant e-mail",
                Delivery::INSTANT,
                AnswerChannels::EMAIL,
                Some(friday),
            ),
            (
                "instant paper",
                Delivery::INSTANT,
                AnswerChannels::POST,
                Some(friday),
            ),
            (
                "post counts working days",
                slow_post,
                AnswerChannels::POST,
                Some(day(2026, 1, 14)),
            ),
            (
                "e-mail beats the letter",
                slow_post,
                AnswerChannels::EMAIL_POST,
                Some(friday),
            ),
            (
                "e-mail a day late, SMS on time",
                with(|d| d.email_delay_days = 1),
                AnswerChannels::EMAIL_SMS,
                Some(friday),
            ),
            (
                "the e-mail fails, the SMS arrives",
                with(|d| {
                    d.email_failure_rate = 1.0;
                    d.sms_delay_days = 2;
                }),
                AnswerChannels::EMAIL_SMS,
                Some(day(2026, 1, 11)),
            ),
            (
                // Paper follows once the SMS failure is known, on Tuesday 13.
                "every electronic channel fails: paper follows",
                all_electronic_fail,
                AnswerChannels::EMAIL_SMS,
                Some(day(2026, 1, 16)),
            ),
            (
                // The letter the person asked for left on the day itself.
                "paper asked for leaves at once",
                all_electronic_fail,
                AnswerChannels::EMAIL_SMS_POST,
                Some(day(2026, 1, 14)),
            ),
            (
                "the e-mail arrives: no letter, and a lost one would not matter",
                with(|d| d.post_failure_rate = 1.0),
                AnswerChannels::EMAIL,
                Some(friday),
            ),
            (
                "the only letter is lost",
                with(|d| d.post_failure_rate = 1.0),
                AnswerChannels::POST,
                None,
            ),
            (
                "the e-mail fails and the letter that follows is lost",
                with(|d| {
                    d.email_failure_rate = 1.0;
                    d.post_failure_rate = 1.0;
                }),
                AnswerChannels::EMAIL,
                None,
            ),
            (
                "an SMS needs no letter",
                with(|d| d.post_failure_rate = 1.0),
                AnswerChannels::SMS,
                Some(friday),
            ),
        ];
        let mut rng = StdRng::seed_from_u64(1);
        for (name, delivery, to, expected) in table {
            assert_eq!(delivery.reaches(to, friday, &mut rng), expected, "{name}");
        }
    }

    #[test]
    fn nothing_delayed_nothing_lost_is_the_day_sent() {
        let mut rng = StdRng::seed_from_u64(2);
        for to in EVERY_SET {
            for sent in [day(2026, 1, 9), day(2026, 1, 10), day(2026, 5, 1)] {
                assert_eq!(
                    Delivery::INSTANT.reaches(to, sent, &mut rng),
                    Some(sent),
                    "{to:?} {sent}"
                );
            }
        }
    }

    #[test]
    fn when_every_channel_fails_nothing_arrives() {
        let never = with(|d| {
            d.email_failure_rate = 1.0;
            d.sms_failure_rate = 1.0;
            d.post_failure_rate = 1.0;
        });
        let mut rng = StdRng::seed_from_u64(3);
        for to in EVERY_SET {
            assert_eq!(never.reaches(to, day(2026, 3, 2), &mut rng), None, "{to:?}");
        }
    }

    #[test]
    fn failure_rates_show_in_the_draws() {
        let rate = with(|d| d.post_failure_rate = 0.2);
        let mut rng = StdRng::seed_from_u64(4);
        let lost = (0..10_000)
            .filter(|_| {
                rate.reaches(AnswerChannels::POST, day(2026, 3, 2), &mut rng)
                    .is_none()
            })
            .count();
        assert!((1_800..2_200).contains(&lost), "{lost} of 10,000 lost");
    }

    #[test]
    fn rates_and_delays_are_checked() {
        for (text, ok) in [
            ("0", true),
            ("0.03", true),
            ("1", true),
            (" 0.5 ", true),
            ("1.5", false),
            ("-0.1", false),
            ("3%", false),
            ("NaN", false),
            ("", false),
        ] {
            assert_eq!(parse_rate(text).is_ok(), ok, "{text:?}");
        }
        assert_eq!(Delivery::default().problem(), None);
        assert_eq!(Delivery::INSTANT.problem(), None);
        let table: [(Delivery, &str); 3] = [
            (with(|d| d.post_delay_days = 61), "post_delay_days"),
            (with(|d| d.sms_failure_rate = 1.01), "sms_failure_rate"),
            (
                with(|d| d.email_failure_rate = f64::NAN),
                "email_failure_rate",
            ),
        ];
        for (delivery, field) in table {
            assert_eq!(delivery.problem().map(|(f, _)| f), Some(field));
        }
    }
}
