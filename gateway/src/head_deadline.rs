//! Two clocks for an HTTP/1.1 connection, where hyper has one. A request's
//! head, once its first byte has come, must be whole within a few seconds, so
//! a slow sender cannot hold a connection. A connection idle between two
//! requests may wait much longer, so a proxy or a client that keeps
//! connections open (nginx 60 s, most HTTP clients 90 s) does not send a
//! request on a connection the gateway is closing at that very moment: such
//! a request, a filing say, fails without an answer.
//!
//! hyper's `header_read_timeout` starts as soon as a connection waits for a
//! request, so it bounds both at once. It is set to the idle time, and this
//! wrapper bounds the head: it starts its clock at a head's first byte and
//! stops it at the blank line that ends the head. It knows a new head is
//! coming once the answer to the last one has been written.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is in its request/answer turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Answered; waiting for the next request (hyper's idle clock runs).
    BetweenRequests,
    /// A head is coming; `matched` bytes of "\r\n\r\n" seen last.
    Head { matched: u8 },
    /// The head is whole: the body, the handler, the answer.
    Rest,
}

/// An HTTP/1.1 connection whose request heads must each be whole within
/// `head_within` of their first byte.
pub struct HeadDeadline<S> {
    inner: S,
    head_within: Duration,
    turn: Turn,
    deadline: Pin<Box<Sleep>>,
}

impl<S> HeadDeadline<S> {
    /// A fresh connection: its first head's clock runs from now, since the
    /// client has connected in order to send it.
    pub fn new(inner: S, head_within: Duration) -> Self {
        Self {
            inner,
            head_within,
            turn: Turn::Head { matched: 0 },
            deadline: Box::pin(tokio::time::sleep(head_within)),
        }
    }

    /// Follows the bytes read: a head starting, a head ending.
    fn saw(&mut self, bytes: &[u8]) {
        const END: &[u8; 4] = b"\r\n\r\n";
        for &b in bytes {
            match self.turn {
                Turn::BetweenRequests => {
                    self.deadline
                        .as_mut()
                        .reset(Instant::now() + self.head_within);
                    self.turn = Turn::Head {
                        matched: u8::from(b == END[0]),
                    };
                }
                Turn::Head { matched } => {
                    let matched = if b == END[matched as usize] {
                        matched + 1
                    } else {
                        u8::from(b == END[0])
                    };
                    self.turn = if matched as usize == END.len() {
                        Turn::Rest
                    } else {
                        Turn::Head { matched }
                    };
                }
                // The body, or the next request sent before this answer:
                // neither is timed here.
                Turn::Rest => return,
            }
        }
    }
}

impl<S> HeadDeadline<S> {
    /// An answer going out (`data` its first bytes): the request it answers
    /// has had its head, and the next bytes read begin a new one. Not so for
    /// an interim answer (`100 Continue`, which a client sending a large
    /// body with `Expect` waits for): the body comes after it.
    fn answering(&mut self, data: &[u8], written: &Poll<io::Result<usize>>) {
        let interim = data.starts_with(b"HTTP/1.1 1") || data.starts_with(b"HTTP/1.0 1");
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) && self.turn == Turn::Rest && !interim {
            self.turn = Turn::BetweenRequests;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // Bodies pass untouched: only a head's bytes are looked at.
                if this.turn != Turn::Rest {
                    this.saw(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if matches!(this.turn, Turn::Head { .. })
                    && this.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head did not come whole in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        this.answering(data, &written);
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        this.answering(first, &written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Short, so the tests take little time; nothing below depends on how
    /// long a step really took, only on the order of events.
    const WITHIN: Duration = Duration::from_millis(300);

    async fn read_some(server: &mut HeadDeadline<tokio::io::DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 256];
        server.read(&mut buf).await
    }

    #[tokio::test]
    async fn a_head_that_does_not_end_in_time_is_an_error_and_an_idle_wait_is_not() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = HeadDeadline::new(server, WITHIN);

        // The first head comes whole: no error, however late the body.
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        assert!(read_some(&mut server).await.unwrap() > 0);
        let body = tokio::spawn(async move {
            tokio::time::sleep(WITHIN * 3).await;
            client.write_all(b"{}").await.unwrap();
            client
        });
        assert_eq!(read_some(&mut server).await.unwrap(), 2);
        let mut client = body.await.unwrap();

        // Answered, then idle far longer than a head may take: no error
        // (hyper's idle clock is the one that closes such a connection).
        server
            .write_all(b"HTTP/1.1 201 Created\r\n\r\n")
            .await
            .unwrap();
        let next = tokio::spawn(async move {
            tokio::time::sleep(WITHIN * 5).await;
            // The next head starts, and stops half way.
            client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
            client
        });
        assert!(read_some(&mut server).await.unwrap() > 0);
        let err = tokio::time::timeout(Duration::from_secs(30), read_some(&mut server))
            .await
            .expect("the unfinished head ends the connection")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(next.await.unwrap());
    }

    #[tokio::test]
    async fn a_body_sent_after_100_continue_is_not_taken_for_a_head() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = HeadDeadline::new(server, WITHIN);
        client
            .write_all(
                b"POST / HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            )
            .await
            .unwrap();
        assert!(read_some(&mut server).await.unwrap() > 0);
        server
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        // The body comes slowly, and holds no blank line: still no error.
        let body = tokio::spawn(async move {
            for byte in [b"a", b"b", b"c", b"d"] {
                tokio::time::sleep(WITHIN).await;
                client.write_all(byte).await.unwrap();
            }
            client
        });
        let mut got = 0;
        while got < 4 {
            got += read_some(&mut server).await.expect("the body is not timed");
        }
        let _client = body.await.unwrap();
        server
            .write_all(b"HTTP/1.1 201 Created\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(server.turn, Turn::BetweenRequests);
    }

    #[tokio::test]
    async fn a_head_split_anywhere_ends_at_its_blank_line() {
        let head = b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-A: \r\n\r\n";
        for split in 1..head.len() {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut server = HeadDeadline::new(server, Duration::from_secs(30));
            client.write_all(&head[..split]).await.unwrap();
            let mut got = read_some(&mut server).await.unwrap();
            assert_ne!(server.turn, Turn::Rest, "split at {split}: not whole yet");
            client.write_all(&head[split..]).await.unwrap();
            while got < head.len() {
                got += read_some(&mut server).await.unwrap();
            }
            assert_eq!(server.turn, Turn::Rest, "split at {split}");
        }
    }

    #[tokio::test]
    async fn a_blank_line_only_after_a_false_start_still_ends_the_head() {
        let (_client, server) = tokio::io::duplex(8);
        let mut server = HeadDeadline::new(server, WITHIN);
        // "\r\n\r" then "x": starts again; "\r\r\n\r\n" ends it.
        server.saw(b"GET / HTTP/1.1\r\n\rx");
        assert!(matches!(server.turn, Turn::Head { .. }));
        server.saw(b"\r\r\n\r\n");
        assert_eq!(server.turn, Turn::Rest);
    }
}
