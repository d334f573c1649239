//! The postal service's settings: form signatures, page reading, postmarks, the e-mail copy of letters.

/// This service's own section of the configuration (`GUICHET_*`
/// variables or flags), beside the kit's common one.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Mailroom")]
pub struct MailroomSettings {
    /// Key that signs the QR codes of printed forms (any text, 32 bytes or
    /// more). Unset: a random key is made once and kept in the data folder.
    #[arg(long, env = "GUICHET_FORM_SIGNING_KEY", hide_env_values = true)]
    pub form_signing_key: Option<String>,
    /// Pages the postal service reads (QR decoding, OCR) at once.
    #[arg(long, env = "GUICHET_POSTAL_READERS", default_value_t = 2)]
    pub postal_readers: usize,
    /// Batches the postal service reads at once, each station's in turn:
    /// a large batch takes one reader and the other stations' batches go on
    /// through the others.
    #[arg(long, env = "GUICHET_POSTAL_BATCHES_AT_ONCE", default_value_t = 2)]
    pub postal_batches_at_once: usize,
    /// Days before its reception date a postmark is still taken on one
    /// mailroom operator's word; an older one (or one after the reception
    /// date) needs a second operator's confirmation with a reason.
    #[arg(long, env = "GUICHET_POSTMARK_MAX_AGE_DAYS", default_value_t = 60)]
    pub postmark_max_age_days: u32,
}

/// By hand: the signing key is never shown, the SMTP password neither.
impl std::fmt::Debug for MailroomSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailroomSettings")
            .field(
                "form_signing_key",
                &self.form_signing_key.as_ref().map(|_| "***"),
            )
            .field("postal_readers", &self.postal_readers)
            .field("postal_batches_at_once", &self.postal_batches_at_once)
            .field("postmark_max_age_days", &self.postmark_max_age_days)
            .finish()
    }
}

impl MailroomSettings {
    /// The section from the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }
}
