//! The site's SMTP relay, with a few connections kept open between
//! messages.
//!
//! lettre's transport opens a connection per message: TCP, the greeting,
//! EHLO (and TLS, and EHLO again, and AUTH) before MAIL, then QUIT. Its
//! connection pool would keep them, but lettre 0.11.23 leaves Nagle's
//! algorithm on, and on a connection kept open the message's closing dot
//! then waits for the relay's delayed acknowledgement (40 ms on Linux,
//! BENCHMARKS.md "The notifier's mail"). So the connections are opened
//! here, with `TCP_NODELAY`, and lettre speaks SMTP over them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::email::MailError;

/// Connections kept open at most: as many as the sender sends at once.
const KEPT_AT_MOST: usize = crate::sender::SENDS_AT_ONCE;

/// A connection idle longer than this is closed rather than used: relays
/// close idle clients after their own delay (Postfix: 300 s), and a burst
/// of receipts reuses its connections well within it.
const IDLE_AT_MOST: Duration = Duration::from_secs(30);

/// Longest the TCP connect to one of the relay's addresses may take, and
/// the TLS handshake: an address whose network drops packets (an IPv6
/// route gone) leaves time for the next within the send's 60 s.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Longest the kept connections may take, all told, to answer NOOP before
/// a new one is opened: a firewall or NAT may have forgotten them silently,
/// and eight checked one after the other would eat most of a send's 60 s.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// How the connection is protected, from the URL.
enum Security {
    /// `smtp://host`: only for a relay on this machine or a private network
    /// (checked by `Mailer::new`).
    Plain,
    /// `smtp://host?tls=opportunistic`: STARTTLS when the relay offers it.
    Opportunistic(TlsParameters),
    /// `smtp://host?tls=required`: STARTTLS, or no message.
    StartTls(TlsParameters),
    /// `smtps://host`: TLS from the first byte.
    Wrapped(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    ),
}

struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// The relay named by `GUICHET_SMTP_URL`. Cheap to clone: the kept
/// connections are shared.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<Idle>>,
}

impl Relay {
    /// Whether mail goes over TLS (STARTTLS required, or `smtps://`);
    /// `tls=opportunistic` may end in clear, so it does not count.
    pub fn requires_tls(&self) -> bool {
        matches!(
            self.inner.security,
            Security::StartTls(_) | Security::Wrapped(..)
        )
    }

    /// The relay's host name or address.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The URL as lettre reads it: `smtp://` or `smtps://`, optional user
    /// and password, port, `?tls=required|opportunistic`, and a path that
    /// names this host in EHLO.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed
            .host_str()
            .ok_or("the relay's host is missing")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let parameters = || TlsParameters::new(host.clone()).map_err(|e| e.to_string());
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls(parameters()?), 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic(parameters()?), 587),
            // lettre takes `smtps://` with any `tls=`: TLS from the first byte.
            ("smtps", _) => (Security::Wrapped(tls_connector(), server_name(&host)?), 465),
            (scheme, tls) => {
                return Err(format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?}"
                ));
            }
        };
        let decoded = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| "the user or password is not UTF-8".to_string())
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(
                decoded(parsed.username())?,
                decoded(password)?,
            )),
            None => None,
        };
        let name = parsed.path().trim_matches('/');
        let hello = if name.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(name.to_string())
        };
        Ok(Relay {
            inner: Arc::new(Inner {
                host,
                port: parsed.port().unwrap_or(default_port),
                security,
                credentials,
                hello,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends one message, over a kept connection when one answers NOOP
    /// (as lettre's own pool checks them), else over a new one. A kept
    /// connection the relay ends with 421 ("closing", the message not
    /// taken) is replaced and the message sent once more; any other
    /// failure is the caller's to retry later, so a message the relay may
    /// have taken is never sent again at once.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<(), MailError> {
        if let Some(mut kept) = self.take_checked().await {
            match kept.send(envelope, email).await {
                Ok(_) => {
                    self.keep(kept);
                    return Ok(());
                }
                Err(e) if !is_closing(&e) => return Err(e.into()),
                Err(_) => tracing::debug!("the relay closed a kept connection (421)"),
            }
        }
        let mut fresh = self.connect().await?;
        fresh.send(envelope, email).await?;
        self.keep(fresh);
        Ok(())
    }

    /// The most recently used connection still fresh enough and answering
    /// within what is left of `CHECK_WITHIN`; those that fail are closed.
    async fn take_checked(&self) -> Option<AsyncSmtpConnection> {
        let deadline = tokio::time::Instant::now() + CHECK_WITHIN;
        while let Some(mut kept) = self.take_idle() {
            let answered = tokio::time::timeout_at(deadline, kept.test_connected()).await;
            match answered {
                Ok(true) => return Some(kept),
                Ok(false) => tracing::debug!("a kept SMTP connection is closed; trying another"),
                Err(_) => {
                    tracing::debug!("kept SMTP connections did not answer NOOP in time");
                    return None;
                }
            }
        }
        None
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        close_expired(&mut idle);
        idle.pop().map(|kept| kept.connection)
    }

    fn keep(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        close_expired(&mut idle);
        if idle.len() < KEPT_AT_MOST {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        } else {
            drop(idle);
            tokio::spawn(say_goodbye(connection));
        }
    }

    /// A new connection, ready for MAIL. A refusal while setting it up
    /// (a 554 greeting, a 530, a 535 for a changed password) is the
    /// relay's or its set-up's, never the message's: `Refused`, which is
    /// tried again later, not a permanent failure of every message.
    async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
        self.set_up().await.map_err(|e| match e {
            MailError::Smtp(e) => MailError::Refused(e),
            other => other,
        })
    }

    async fn set_up(&self) -> Result<AsyncSmtpConnection, MailError> {
        let inner = &*self.inner;
        let tcp = dial(&inner.host, inner.port).await?;
        let mut connection = match &inner.security {
            Security::Wrapped(connector, name) => {
                let tls =
                    tokio::time::timeout(CONNECT_WITHIN, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| unreachable_within(CONNECT_WITHIN))?
                        .map_err(MailError::Unreachable)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(Wrapped(tls)), &inner.hello)
                    .await?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &inner.hello).await?,
        };
        match &inner.security {
            Security::StartTls(parameters) => {
                connection
                    .starttls(parameters.clone(), &inner.hello)
                    .await?;
            }
            Security::Opportunistic(parameters) if connection.can_starttls() => {
                connection
                    .starttls(parameters.clone(), &inner.hello)
                    .await?;
            }
            _ => {}
        }
        if let Some(credentials) = &inner.credentials {
            connection.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(connection)
    }
}

/// A TCP connection to the relay with Nagle's algorithm off: each SMTP
/// command and the message's closing dot leave at once. The relay's
/// addresses are tried in turn, each within `CONNECT_WITHIN`.
async fn dial(host: &str, port: u16) -> Result<TcpStream, MailError> {
    let addresses = tokio::time::timeout(CONNECT_WITHIN, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unreachable_within(CONNECT_WITHIN))?
        .map_err(MailError::Unreachable)?;
    let mut last = None;
    for address in addresses {
        match tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true).map_err(MailError::Unreachable)?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = Some(MailError::Unreachable(e)),
            Err(_) => last = Some(unreachable_within(CONNECT_WITHIN)),
        }
    }
    Err(last.unwrap_or_else(|| {
        MailError::Unreachable(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ))
    }))
}

fn unreachable_within(bound: Duration) -> MailError {
    MailError::Unreachable(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {bound:?}"),
    ))
}

/// 421: the relay is closing the connection and did not take the message.
fn is_closing(e: &lettre::transport::smtp::Error) -> bool {
    e.status().is_some_and(|code| code.to_string() == "421")
}

/// Closes the kept connections idle for too long (the relay may be about
/// to close them itself) or broken.
fn close_expired(idle: &mut Vec<Idle>) {
    let (fresh, expired): (Vec<Idle>, Vec<Idle>) = idle
        .drain(..)
        .partition(|kept| kept.since.elapsed() < IDLE_AT_MOST && !kept.connection.has_broken());
    *idle = fresh;
    for kept in expired {
        tokio::spawn(say_goodbye(kept.connection));
    }
}

/// QUIT on a connection no longer wanted, within a short bound.
async fn say_goodbye(mut connection: AsyncSmtpConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), connection.quit()).await;
}

/// TLS as lettre sets it up for STARTTLS: rustls on ring, Mozilla's roots.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring offers the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a name TLS can check"))
}

/// The TLS stream, in the shape lettre speaks SMTP over.
#[derive(Debug)]
struct Wrapped(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for Wrapped {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Wrapped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wrapped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Mailer;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// What the relay does once it has taken a message, or how it
    /// refuses.
    #[derive(Clone, Copy, PartialEq)]
    enum Then {
        WaitForMore,
        Close,
        /// Refuses the next transaction with 421 and closes, as a relay
        /// does when it will take no more on this connection.
        Say421,
        /// Keeps the connection but never answers again (a firewall that
        /// forgot it).
        FallSilent,
        /// Offers AUTH and refuses every password with 535.
        RefuseLogin,
        /// Takes the second message, then hangs up before answering: the
        /// message is the relay's, and the client cannot know it.
        TakeSecondThenHangUp,
    }

    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        verbs: Mutex<Vec<String>>,
        messages: Mutex<Vec<String>>,
    }

    /// A relay speaking just enough SMTP, counting connections and keeping
    /// each message's body; `refuse` names a recipient it refuses with 550.
    async fn relay(then: Then, refuse: &'static str) -> (String, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(converse(socket, then, refuse, counted.clone()));
            }
        });
        (url, seen)
    }

    async fn converse(socket: TcpStream, then: Then, refuse: &str, seen: Arc<Seen>) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 relay.test ESMTP\r\n").await;
        let mut taken = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            seen.verbs.lock().unwrap().push(verb.clone());
            let answer: &[u8] = match verb.as_str() {
                _ if taken > 0 && then == Then::FallSilent => {
                    std::future::pending::<()>().await;
                    return;
                }
                "EHLO" if then == Then::RefuseLogin => {
                    b"250-relay.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
                }
                "AUTH" => b"535 5.7.8 authentication failed\r\n",
                "EHLO" => b"250-relay.test\r\n250 8BITMIME\r\n",
                "MAIL" if taken > 0 && then == Then::Say421 => {
                    let _ = write.write_all(b"421 4.7.0 enough for now\r\n").await;
                    return;
                }
                "RCPT" if line.contains(refuse) => b"550 5.1.1 no such mailbox\r\n",
                "DATA" => {
                    let _ = write.write_all(b"354 go on\r\n").await;
                    let mut body = String::new();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l == "." {
                            break;
                        }
                        body.push_str(&l);
                        body.push('\n');
                    }
                    seen.messages.lock().unwrap().push(body);
                    taken += 1;
                    if taken == 2 && then == Then::TakeSecondThenHangUp {
                        return;
                    }
                    let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                    if then == Then::Close {
                        return;
                    }
                    continue;
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"250 ok\r\n",
            };
            if write.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    fn message(to: &str, n: usize) -> Message {
        Message::builder()
            .from("ne-pas-repondre@guichet.localhost".parse().unwrap())
            .to(to.parse().unwrap())
            .subject(format!("message {n}"))
            .body(format!("message number {n}"))
            .unwrap()
    }

    fn mailer(url: &str) -> Mailer {
        Mailer::new(
            Some(url),
            false,
            std::env::temp_dir().join("guichet-relay-test"),
        )
        .unwrap()
    }

    fn bodies_numbered(seen: &Seen) -> Vec<usize> {
        let mut numbers: Vec<usize> = seen
            .messages
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let at = b.find("message number ").expect("the body arrived");
                b[at + 15..].trim().parse().unwrap()
            })
            .collect();
        numbers.sort();
        numbers
    }

    use lettre::Message;

    #[tokio::test]
    async fn messages_in_a_row_share_one_connection() {
        let (url, seen) = relay(Then::WaitForMore, "nobody").await;
        let mailer = mailer(&url);
        for n in 0..10 {
            mailer.send(message("amina@example.org", n)).await.unwrap();
        }
        assert_eq!(bodies_numbered(&seen), (0..10).collect::<Vec<_>>());
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    }

    /// Whether the relay hangs up after each message (the NOOP before the
    /// next finds it gone) or says 421 to the next one, every message
    /// arrives once, each over a new connection.
    #[tokio::test]
    async fn a_connection_the_relay_ends_is_replaced_and_nothing_goes_twice() {
        for then in [Then::Close, Then::Say421] {
            let (url, seen) = relay(then, "nobody").await;
            let mailer = mailer(&url);
            for n in 0..5 {
                // The relay's hang-up can reach us before or after the next
                // send begins; both must end the same.
                if n % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                mailer.send(message("amina@example.org", n)).await.unwrap();
            }
            assert_eq!(bodies_numbered(&seen), (0..5).collect::<Vec<_>>());
            assert_eq!(seen.connections.load(Ordering::SeqCst), 5);
        }
    }

    /// A kept connection that no longer answers costs `CHECK_WITHIN`, then
    /// the message goes over a new one, once.
    #[tokio::test]
    async fn a_kept_connection_gone_silent_is_replaced() {
        let (url, seen) = relay(Then::FallSilent, "nobody").await;
        let mailer = mailer(&url);
        mailer.send(message("amina@example.org", 0)).await.unwrap();
        let second = tokio::time::timeout(
            Duration::from_secs(30),
            mailer.send(message("amina@example.org", 1)),
        );
        second.await.expect("the check is bounded").unwrap();
        assert_eq!(bodies_numbered(&seen), vec![0, 1]);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    /// Two kept connections gone silent: the check gives up once
    /// `CHECK_WITHIN` is spent, after one NOOP, rather than waiting on
    /// each in turn; the message goes over a new connection.
    #[tokio::test]
    async fn kept_connections_gone_silent_cost_one_check_bound_in_all() {
        let (url, seen) = relay(Then::FallSilent, "nobody").await;
        let mailer = mailer(&url);
        // Two at once: two connections, both kept.
        let (a, b) = tokio::join!(
            mailer.send(message("amina@example.org", 0)),
            mailer.send(message("amina@example.org", 1))
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        let third = tokio::time::timeout(
            Duration::from_secs(30),
            mailer.send(message("amina@example.org", 2)),
        );
        third.await.expect("the check is bounded").unwrap();
        assert_eq!(bodies_numbered(&seen), vec![0, 1, 2]);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
        let noops = seen
            .verbs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.as_str() == "NOOP")
            .count();
        assert_eq!(noops, 1, "one kept connection checked, not both");
    }

    /// The relay took the message but its answer never came: the send
    /// fails, to be tried later, and is not sent again at once over a new
    /// connection (a second copy to the person).
    #[tokio::test]
    async fn a_message_whose_answer_is_lost_is_not_sent_again_at_once() {
        let (url, seen) = relay(Then::TakeSecondThenHangUp, "nobody").await;
        let mailer = mailer(&url);
        mailer.send(message("amina@example.org", 0)).await.unwrap();
        let e = mailer
            .send(message("amina@example.org", 1))
            .await
            .expect_err("no answer to the message");
        assert!(!e.is_permanent(), "{e:?}");
        assert_eq!(bodies_numbered(&seen), vec![0, 1]);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    }

    /// A 535 (a password changed at the relay) is the set-up's fault, not
    /// the message's: tried again later, never a permanent failure.
    #[tokio::test]
    async fn a_refused_login_fails_no_message_for_good() {
        let (url, seen) = relay(Then::RefuseLogin, "nobody").await;
        let url = url.replace("smtp://", "smtp://guichet:old-password@");
        let e = mailer(&url)
            .send(message("amina@example.org", 0))
            .await
            .expect_err("the relay refuses the password");
        assert!(matches!(e, MailError::Refused(_)), "{e:?}");
        assert!(!e.is_permanent());
        assert_eq!(e.reason(), "the relay refused the connection (535)");
        assert!(!seen.verbs.lock().unwrap().contains(&"MAIL".to_string()));
    }

    /// A refused recipient is a permanent failure at once, not tried over
    /// a new connection; the next message still goes.
    #[tokio::test]
    async fn a_refused_recipient_is_not_tried_again() {
        let (url, seen) = relay(Then::WaitForMore, "unknown@example.org").await;
        let mailer = mailer(&url);
        mailer.send(message("amina@example.org", 0)).await.unwrap();
        let refused = mailer
            .send(message("unknown@example.org", 1))
            .await
            .expect_err("the relay refuses this recipient");
        assert!(refused.is_permanent(), "{refused:?}");
        assert_eq!(refused.reason(), "refused by the relay (550)");
        mailer.send(message("amina@example.org", 2)).await.unwrap();
        assert_eq!(bodies_numbered(&seen), vec![0, 2]);
        // The refusal ends its connection (lettre sends QUIT after an
        // error), so the third message opened the second.
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_relay_connection_sends_each_write_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = dial("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap(), "Nagle's algorithm is off");
    }

    #[tokio::test]
    async fn a_relay_nobody_listens_on_is_a_failure_worth_trying_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = mailer(&url)
            .send(message("amina@example.org", 0))
            .await
            .expect_err("nobody listens");
        assert!(matches!(e, MailError::Unreachable(_)), "{e:?}");
        assert!(!e.is_permanent());
        assert_eq!(e.reason(), "the relay cannot be reached");
    }

    /// `tls=required` and a relay that does not offer STARTTLS: the
    /// message is not sent in clear, and the failure is worth trying again
    /// (the relay's set-up may be mended).
    #[tokio::test]
    async fn required_tls_sends_nothing_to_a_relay_without_starttls() {
        let (url, seen) = relay(Then::WaitForMore, "nobody").await;
        let e = mailer(&format!("{url}?tls=required"))
            .send(message("amina@example.org", 0))
            .await
            .expect_err("no STARTTLS, no message");
        assert!(!e.is_permanent(), "{e:?}");
        let verbs = seen.verbs.lock().unwrap().clone();
        assert_eq!(verbs, vec!["EHLO"], "nothing but EHLO in clear");
        assert!(seen.messages.lock().unwrap().is_empty());
    }

    /// `smtps://`: the first bytes on the wire are a TLS handshake, naming
    /// the relay's host; a relay that does not answer it gets nothing else.
    #[tokio::test]
    async fn smtps_speaks_tls_from_the_first_byte() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut hello = vec![0u8; 512];
            let n = tokio::io::AsyncReadExt::read(&mut socket, &mut hello)
                .await
                .unwrap();
            hello.truncate(n);
            hello
        });
        let e = mailer(&format!("smtps://localhost:{port}"))
            .send(message("amina@example.org", 0))
            .await
            .expect_err("the relay never finishes the handshake");
        assert!(!e.is_permanent(), "{e:?}");
        let hello = first.await.unwrap();
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        let named = hello.windows(9).any(|w| w == b"localhost");
        assert!(named, "the ClientHello names the relay (SNI)");
    }

    #[test]
    fn the_url_says_where_how_and_as_whom() {
        struct Read {
            url: &'static str,
            host: &'static str,
            port: u16,
            security: &'static str,
            credentials: Option<(&'static str, &'static str)>,
            hello: &'static str,
        }
        let read = |url, host, port, security| Read {
            url,
            host,
            port,
            security,
            credentials: None,
            hello: "",
        };
        let table = [
            read("smtp://127.0.0.1", "127.0.0.1", 25, "plain"),
            read(
                "smtp://relay.example.org:2525?tls=required",
                "relay.example.org",
                2525,
                "starttls",
            ),
            read(
                "smtp://relay.example.org?tls=required",
                "relay.example.org",
                587,
                "starttls",
            ),
            read(
                "smtp://relay.example.org?tls=opportunistic",
                "relay.example.org",
                587,
                "opportunistic",
            ),
            read(
                "smtps://relay.example.org?tls=opportunistic",
                "relay.example.org",
                465,
                "wrapped",
            ),
            Read {
                credentials: Some(("guichet@prefecture.example", "p@ss:word")),
                hello: "guichet.prefecture.example",
                ..read(
                    "smtps://guichet%40prefecture.example:p%40ss%3Aword@relay.example.org/guichet.prefecture.example",
                    "relay.example.org",
                    465,
                    "wrapped",
                )
            },
            read("smtp://[::1]:2525", "::1", 2525, "plain"),
        ];
        for row in table {
            let url = row.url;
            let relay = Relay::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            let inner = &relay.inner;
            assert_eq!(inner.host, row.host, "{url}");
            assert_eq!(inner.port, row.port, "{url}");
            let kind = match inner.security {
                Security::Plain => "plain",
                Security::Opportunistic(_) => "opportunistic",
                Security::StartTls(_) => "starttls",
                Security::Wrapped(..) => "wrapped",
            };
            assert_eq!(kind, row.security, "{url}");
            let expected = row
                .credentials
                .map(|(u, p)| Credentials::new(u.into(), p.into()));
            assert_eq!(inner.credentials, expected, "{url}");
            if !row.hello.is_empty() {
                assert_eq!(inner.hello, ClientId::Domain(row.hello.into()), "{url}");
            }
        }
        for bad in [
            "ftp://relay.example.org",
            "smtp://relay.example.org?tls=maybe",
            "smtp:relay",
        ] {
            assert!(Relay::from_url(bad).is_err(), "{bad}");
        }
    }
}
