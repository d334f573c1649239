//! The call-centre service's settings: the deadline of blocked-user reports.

/// This service's own section of the configuration (`GUICHET_*`
/// variables or flags), beside the kit's common one.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Call centre")]
pub struct CallCentreSettings {
    /// Working days a prefecture has to offer an alternative (a desk
    /// appointment or a paper kit) to a blocked-user report.
    #[arg(long, env = "GUICHET_REPORT_DEADLINE_DAYS", default_value_t = 5)]
    pub report_deadline_days: u32,
}

impl CallCentreSettings {
    /// The section from the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }
}
