//! The notifier's settings: where e-mail and SMS go, and how often a failed
//! send is tried again.

#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Notifier")]
pub struct NotifierSettings {
    /// The SMTP relay, as lettre's URL: smtps://[user:password@]host[:port]
    /// (TLS) or smtp://host[:port]?tls=required (STARTTLS). Plain smtp:// is
    /// refused unless the relay is on this machine or
    /// GUICHET_SMTP_ALLOW_PLAINTEXT is set. Unset: each e-mail is written as
    /// an .eml file under <data>/mail.
    #[arg(long, env = "GUICHET_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Accept a relay without TLS on another host (a relay on a private
    /// network, the compose file's test inbox).
    #[arg(long, env = "GUICHET_SMTP_ALLOW_PLAINTEXT", default_value_t = false)]
    pub smtp_allow_plaintext: bool,
    /// The sender of every e-mail.
    #[arg(
        long,
        env = "GUICHET_MAIL_FROM",
        default_value = "Préfecture - Guichet <ne-pas-repondre@guichet.localhost>"
    )]
    pub mail_from: String,
    /// Base URL of the SMS provider's Twilio-style REST API. Unset: each SMS
    /// is written as a text file under <data>/sms.
    #[arg(long, env = "GUICHET_SMS_URL")]
    pub sms_url: Option<String>,
    /// The account at the SMS provider.
    #[arg(long, env = "GUICHET_SMS_ACCOUNT", default_value = "")]
    pub sms_account: String,
    /// The SMS provider's API token.
    #[arg(
        long,
        env = "GUICHET_SMS_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub sms_token: String,
    /// The sender name or number SMS show.
    #[arg(long, env = "GUICHET_SMS_SENDER", default_value = "PREFECTURE")]
    pub sms_sender: String,
    /// Seconds before a failed send is tried again; doubling at each failure,
    /// at most an hour apart. A message still failing 48 hours after its
    /// first try has failed for good (paper follows).
    #[arg(long, env = "GUICHET_NOTIFY_RETRY_SECONDS", default_value_t = 30)]
    pub notify_retry_seconds: u32,
}

/// By hand: the SMTP password and the SMS token never print.
impl std::fmt::Debug for NotifierSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierSettings")
            .field(
                "smtp_url",
                &self
                    .smtp_url
                    .as_deref()
                    .map(guichet_kit::config::redact_url),
            )
            .field("smtp_allow_plaintext", &self.smtp_allow_plaintext)
            .field("mail_from", &self.mail_from)
            .field("sms_url", &self.sms_url)
            .field("sms_account", &self.sms_account)
            .field("sms_token", &"***")
            .field("sms_sender", &self.sms_sender)
            .field("notify_retry_seconds", &self.notify_retry_seconds)
            .finish()
    }
}

impl NotifierSettings {
    /// The section from the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }
}
