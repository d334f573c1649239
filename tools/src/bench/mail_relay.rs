//! The mesh's SMTP relay: takes every e-mail the notifier sends, counts it
//! and keeps nothing. In production the notifier hands its mail to the
//! site's relay over SMTP; the bench does the same, so the notifier's cost
//! per filing is its production path (a connection from its pool, a
//! conversation per message), not the embedded default's one `.eml` file
//! per message, whose cost is the file system's (a new inode each time).
//! The protocol is `mailin`'s; this is only its loop over a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use guichet_kit::shutdown::Shutdown;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A running relay on a loopback port.
pub struct MailRelay {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
}

impl MailRelay {
    /// Listens on a free loopback port until `stop`, answering each
    /// command `latency` late (a relay across a network).
    pub async fn start(stop: Shutdown, latency: Duration) -> anyhow::Result<MailRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("starting the bench's mail relay")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!(error = %e, "the bench's mail relay cannot accept");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stop.cancelled() => break,
                };
                let counted = counted.clone();
                tokio::spawn(async move {
                    if let Err(e) = converse(stream, peer, counted, latency).await {
                        tracing::debug!(error = %e, "a mail conversation ended early");
                    }
                });
            }
        });
        Ok(MailRelay { addr, received })
    }

    /// The URL the notifier is given (`GUICHET_SMTP_URL`): plain SMTP,
    /// allowed because the relay is on this machine.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// E-mails taken so far (each one's end of data answered 250).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Counts the messages whose data ended; accepts every sender and recipient.
struct Counting(Arc<AtomicU64>);

impl mailin::Handler for Counting {
    fn data_end(&mut self) -> mailin::Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        mailin::response::OK
    }
}

async fn converse(
    stream: TcpStream,
    peer: SocketAddr,
    received: Arc<AtomicU64>,
    latency: Duration,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut session =
        mailin::SessionBuilder::new("bench-relay").build(peer.ip(), Counting(received));
    // The greeting comes a round trip after the connection, as across a network.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let answer = session.process(&line);
        if answer.action != mailin::Action::NoReply && !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match answer.action {
            mailin::Action::NoReply => {}
            mailin::Action::Reply | mailin::Action::UpgradeTls => {
                write.write_all(&answer.buffer()?).await?;
            }
            mailin::Action::Close => {
                write.write_all(&answer.buffer()?).await?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Sends `lines` and reads until `answers` replies have ended (a
    /// reply's last line has a space after its code).
    async fn say(stream: &mut TcpStream, lines: &str, answers: usize) -> String {
        stream.write_all(lines.as_bytes()).await.unwrap();
        let mut heard = String::new();
        let mut buf = [0u8; 1024];
        let ended = |heard: &str| {
            heard
                .split("\r\n")
                .filter(|l| l.as_bytes().get(3) == Some(&b' '))
                .count()
        };
        while ended(&heard) < answers {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the relay hung up after {heard:?}");
            heard.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        heard
    }

    #[tokio::test]
    async fn the_relay_counts_each_message_whose_data_ended() {
        let stop = Shutdown::new();
        let relay = MailRelay::start(stop.clone(), Duration::ZERO)
            .await
            .unwrap();
        let message = "MAIL FROM:<ne-pas-repondre@guichet.localhost>\r\nRCPT TO:<amina@example.org>\r\nDATA\r\n";
        let body = "Subject: t\r\n\r\n..a line that starts with a dot\r\n.\r\n";

        // Two messages on one connection, as a pool would send them.
        let mut first = TcpStream::connect(relay.addr).await.unwrap();
        assert!(say(&mut first, "", 1).await.starts_with("220"));
        say(&mut first, "EHLO bench\r\n", 1).await;
        for _ in 0..2 {
            let heard = say(&mut first, message, 3).await;
            assert!(heard.contains("354"), "{heard}");
            assert!(say(&mut first, body, 1).await.starts_with("250"));
        }
        // A third whose data never ends is not counted.
        let mut second = TcpStream::connect(relay.addr).await.unwrap();
        say(&mut second, "", 1).await;
        say(&mut second, "HELO bench\r\n", 1).await;
        say(&mut second, message, 3).await;
        second.write_all(b"Subject: t\r\n\r\nhalf").await.unwrap();
        drop(second);
        assert!(say(&mut first, "QUIT\r\n", 1).await.starts_with("221"));
        assert_eq!(relay.received(), 2);
        assert!(relay.url().starts_with("smtp://127.0.0.1:"));
        stop.cancel();
    }
}
