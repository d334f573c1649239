//! Time is injected, so rules and tests can choose what "now" is.

use chrono::{DateTime, NaiveDate, Utc};
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Today's date in Paris: the calendar the law counts in.
    fn today(&self) -> NaiveDate {
        guichet_dossier::calendar::paris_date(self.now())
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
