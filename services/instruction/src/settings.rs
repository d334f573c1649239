//! The instruction service's settings: attestations, alerts, equity.

/// This service's own section of the configuration (`GUICHET_*`
/// variables or flags), beside the kit's common one.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Instruction")]
pub struct InstructionSettings {
    /// Issue or renew an attestation (API) when a complete renewal's proof of
    /// stay ends within this many days.
    #[arg(long, env = "GUICHET_ATTESTATION_HORIZON_DAYS", default_value_t = 15)]
    pub attestation_horizon_days: i64,
    /// Days before a title expires at which its holder is warned.
    #[arg(
        long,
        env = "GUICHET_ALERT_OFFSETS_DAYS",
        value_delimiter = ',',
        default_value = "120,60,30"
    )]
    pub alert_offsets_days: Vec<i64>,
    /// Relative margin past which a channel doing worse than the best one is
    /// flagged on the equity report (0.2 = 20 %).
    #[arg(long, env = "GUICHET_EQUITY_MARGIN", default_value_t = 0.2)]
    pub equity_margin: f64,
    /// Figures resting on fewer dossiers are not compared for equity.
    #[arg(long, env = "GUICHET_EQUITY_MIN_SAMPLE", default_value_t = 5)]
    pub equity_min_sample: u32,
    /// The open data's statistical secrecy: a cell standing on fewer
    /// dossiers is withheld (and any that would give it away).
    #[arg(long, env = "GUICHET_OPEN_DATA_MIN_COUNT", default_value_t = 11)]
    pub open_data_min_count: u32,
    /// Minutes after its holder's last act at which a held case goes back
    /// to the queue, so a case is never stuck with an absent agent.
    #[arg(long, env = "GUICHET_HOLD_IDLE_MINUTES", default_value_t = 240)]
    pub hold_idle_minutes: u32,
    /// Batches of dossiers recorded at once: the next batch is written
    /// while the previous one waits on its commit. The bench's bare
    /// pipeline reads the same setting.
    #[arg(long, env = "GUICHET_DOSSIER_BATCHES_AT_ONCE", default_value_t = 2)]
    pub dossier_batches_at_once: usize,
}

impl InstructionSettings {
    /// The section from the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_read_from_its_flag_or_defaults_to_15_days() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: InstructionSettings,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(args)
                .map(|c| c.settings.attestation_horizon_days)
                .ok()
        };
        assert_eq!(parse(&["guichet"]), Some(15));
        assert_eq!(
            parse(&["guichet", "--attestation-horizon-days", "60"]),
            Some(60)
        );
        assert_eq!(
            parse(&["guichet", "--attestation-horizon-days", "soon"]),
            None
        );
    }
}
