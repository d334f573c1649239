//! E-mail: over SMTP with TLS to the site's relay, or `.eml` files in the
//! data folder when no relay is set (the embedded default).

use std::path::PathBuf;

use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use crate::relay::Relay;

#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error(
        "GUICHET_SMTP_URL: {0}. Use smtps://host[:port] (TLS) or smtp://host[:port]?tls=required (STARTTLS)"
    )]
    Url(String),
    #[error(
        "GUICHET_SMTP_URL {0:?} sends mail without TLS to a host that is not this machine; use smtps:// or ?tls=required, or set GUICHET_SMTP_ALLOW_PLAINTEXT=true for a relay on a private network"
    )]
    Plaintext(String),
    #[error("cannot create the mail folder {0}")]
    Folder(PathBuf, #[source] std::io::Error),
    #[error("GUICHET_MAIL_FROM {0:?} is not a mailbox")]
    From(String, #[source] lettre::address::AddressError),
}

/// Why one e-mail was not sent, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("not an e-mail address")]
    Address(#[source] lettre::address::AddressError),
    #[error("the message cannot be built")]
    Build(#[from] lettre::error::Error),
    #[error("the attachment's media type")]
    MediaType(#[from] lettre::message::header::ContentTypeErr),
    #[error("the SMTP relay: {0}")]
    Smtp(#[from] SmtpError),
    #[error("the mail folder: {0}")]
    File(#[from] lettre::transport::file::Error),
    #[error("the SMTP relay did not finish taking the message within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("the SMTP relay cannot be reached")]
    Unreachable(#[source] std::io::Error),
    #[error("the SMTP relay refused the connection")]
    Refused(#[source] SmtpError),
}

/// Longest a whole SMTP conversation may take: connect, greeting, TLS,
/// EHLO and the message. lettre 0.11.23 bounds none of its commands, so
/// a relay that takes the connection and then falls silent would hold the
/// sender's pass, and every message behind it, for ever.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl MailError {
    /// A bad address or a relay's permanent refusal (5xx: unknown mailbox,
    /// domain that takes no mail) will not change by trying again.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Address(_) | MailError::Build(_) | MailError::MediaType(_) => true,
            MailError::Smtp(e) => e.is_permanent(),
            MailError::File(_)
            | MailError::TimedOut(_)
            | MailError::Unreachable(_)
            | MailError::Refused(_) => false,
        }
    }
}

impl MailError {
    /// Why, as kept on the message and logged: the category and the
    /// relay's code, never the relay's text, which may quote the address.
    pub fn reason(&self) -> String {
        match self {
            MailError::Address(_) => "not an e-mail address".into(),
            MailError::Build(_) | MailError::MediaType(_) => "the message cannot be built".into(),
            MailError::Smtp(e) => {
                let code = relay_code(e);
                if e.is_permanent() {
                    format!("refused by the relay{code}")
                } else if e.is_timeout() {
                    "the relay did not answer in time".into()
                } else {
                    format!("the relay cannot take it now{code}")
                }
            }
            MailError::File(_) => "the mail folder cannot be written".into(),
            MailError::TimedOut(_) => "the relay did not answer in time".into(),
            MailError::Unreachable(_) => "the relay cannot be reached".into(),
            MailError::Refused(e) => {
                let code = relay_code(e);
                format!("the relay refused the connection{code}")
            }
        }
    }
}

/// The relay's reply code, as " (550)", or nothing when it gave none.
fn relay_code(e: &SmtpError) -> String {
    e.status().map(|c| format!(" ({c})")).unwrap_or_default()
}

/// Where e-mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp(Relay),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    /// `url` is read as lettre reads its connection URLs (`relay::Relay`).
    /// TLS is required unless the relay is on this machine or
    /// `allow_plaintext` says the network is private.
    pub fn new(
        url: Option<&str>,
        allow_plaintext: bool,
        folder: PathBuf,
    ) -> Result<Self, MailSetupError> {
        let Some(url) = url else {
            std::fs::create_dir_all(&folder)
                .map_err(|e| MailSetupError::Folder(folder.clone(), e))?;
            return Ok(Mailer::Folder(AsyncFileTransport::new(folder)));
        };
        let relay = Relay::from_url(url).map_err(MailSetupError::Url)?;
        if !relay.requires_tls() && !allow_plaintext && !on_this_machine(relay.host()) {
            return Err(MailSetupError::Plaintext(redact(url)));
        }
        Ok(Mailer::Smtp(relay))
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        self.send_within(message, SEND_TIMEOUT).await
    }

    async fn send_within(
        &self,
        message: Message,
        within: std::time::Duration,
    ) -> Result<(), MailError> {
        match self {
            Mailer::Smtp(relay) => {
                let formatted = message.formatted();
                let sent = relay.send(message.envelope(), &formatted);
                tokio::time::timeout(within, sent)
                    .await
                    .map_err(|_| MailError::TimedOut(within))??;
            }
            Mailer::Folder(t) => {
                t.send(message).await?;
            }
        }
        Ok(())
    }
}

fn on_this_machine(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// The URL without its password, for an error message.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// A document attached to an e-mail.
pub struct Attached {
    pub file_name: String,
    pub pdf: Vec<u8>,
}

/// One e-mail: plain text and HTML alternatives, and the PDF if any.
pub fn message(
    from: &Mailbox,
    to: &str,
    subject: &str,
    text: String,
    html: String,
    attached: Option<Attached>,
) -> Result<Message, MailError> {
    let to: Mailbox = to.parse().map_err(MailError::Address)?;
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(text))
        .singlepart(SinglePart::html(html));
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject);
    let message = match attached {
        Some(a) => builder.multipart(MultiPart::mixed().multipart(body).singlepart(
            Attachment::new(a.file_name).body(a.pdf, ContentType::parse("application/pdf")?),
        ))?,
        None => builder.multipart(body)?,
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay that takes the connection and never says a word: the send
    /// ends with `TimedOut`, a failure worth trying again later.
    #[tokio::test]
    async fn a_relay_that_falls_silent_costs_a_bounded_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let folder = std::env::temp_dir().join("guichet-notifier-silent-relay");
        let mailer = Mailer::new(Some(&url), false, folder).unwrap();
        let message = Message::builder()
            .from("ne-pas-repondre@guichet.localhost".parse().unwrap())
            .to("personne@example.org".parse().unwrap())
            .subject("test")
            .body(String::from("test"))
            .unwrap();
        let within = std::time::Duration::from_millis(300);
        // The outer bound is on a hang, far above `within`.
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            mailer.send_within(message, within),
        )
        .await
        .expect("the send ends by itself");
        let Err(e) = sent else {
            panic!("a silent relay took the message")
        };
        assert!(matches!(e, MailError::TimedOut(_)), "{e:?}");
        assert!(!e.is_permanent());
        assert_eq!(e.reason(), "the relay did not answer in time");
        silent.abort();
    }

    #[test]
    fn mail_goes_over_tls_unless_the_relay_is_here_or_plaintext_is_allowed() {
        let folder = std::env::temp_dir().join("guichet-notifier-mail-test");
        let table = [
            ("smtps://relay.example.org", false, true),
            ("smtp://relay.example.org?tls=required", false, true),
            ("smtp://relay.example.org", false, false),
            ("smtp://user:secret@relay.example.org:25", false, false),
            // "tls=required" elsewhere than as the `tls` parameter is not TLS.
            ("smtp://relay.example.org?x=tls=required", false, false),
            ("smtp://user:tls=required@relay.example.org", false, false),
            ("smtp://relay.example.org", true, true),
            ("smtp://127.0.0.1:2525", false, true),
            ("smtp://localhost", false, true),
            ("smtp://[::1]:2525", false, true),
            ("ftp://relay.example.org", true, false),
        ];
        for (url, allow, ok) in table {
            let made = Mailer::new(Some(url), allow, folder.clone());
            assert_eq!(made.is_ok(), ok, "{url}");
            if let Err(e) = made {
                assert!(!e.to_string().contains("secret"), "{e}");
            }
        }
    }

    #[test]
    fn a_message_has_text_html_and_its_document() {
        let from: Mailbox = "Préfecture <ne-pas-repondre@guichet.localhost>"
            .parse()
            .unwrap();
        let m = message(
            &from,
            "amina@example.org",
            "Demande enregistrée",
            "texte".into(),
            "<p>texte</p>".into(),
            Some(Attached {
                file_name: "recepisse.pdf".into(),
                pdf: b"%PDF-1.7".to_vec(),
            }),
        )
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/html"), "{raw}");
        assert!(raw.contains("application/pdf"), "{raw}");
        assert!(raw.contains("recepisse.pdf"), "{raw}");
        assert!(matches!(
            message(
                &from,
                "not an address",
                "s",
                String::new(),
                String::new(),
                None
            ),
            Err(MailError::Address(_))
        ));
    }
}
