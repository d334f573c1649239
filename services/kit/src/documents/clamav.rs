//! ClamAV's daemon (`clamd`), over its socket: an upload is streamed to it
//! (`INSTREAM`) chunk by chunk while it is stored, and accepted only when
//! clamd answers that it found nothing.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens: `GUICHET_CLAMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Unix(PathBuf),
    Tcp(String),
}

impl ClamdAddress {
    /// `unix:/run/clamav/clamd.ctl`, a bare `/path`, `tcp://host:port` or
    /// `host:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        let host_port = text.strip_prefix("tcp://").unwrap_or(text);
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(host_port.to_string()))
            }
            _ => Err(format!(
                "{text:?} is not unix:/path/to/clamd.ctl, /path/to/clamd.ctl or host:port"
            )),
        }
    }
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(host_port) => write!(f, "{host_port}"),
        }
    }
}

/// What clamd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature's name, as clamd gives it (`Eicar-Test-Signature`).
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("the virus scanner at {0} cannot be reached: {1}")]
    Connect(String, #[source] std::io::Error),
    #[error("the virus scanner stopped answering: {0}")]
    Io(#[from] std::io::Error),
    #[error("the virus scanner did not answer in time")]
    Timeout,
    #[error("the virus scanner could not scan the file: {0}")]
    Answer(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write may wait while clamd scans what it has.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// clamd scans the end of a large archive only once it has it all.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// A clamd to scan with.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
}

impl Clamd {
    pub fn new(address: ClamdAddress) -> Self {
        Self { address }
    }

    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    async fn connect(&self) -> Result<Box<dyn Conn>, ScanError> {
        let failed = |e| ScanError::Connect(self.address.to_string(), e);
        let connecting = async {
            Ok::<Box<dyn Conn>, std::io::Error>(match &self.address {
                ClamdAddress::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                ClamdAddress::Tcp(host_port) => {
                    Box::new(tokio::net::TcpStream::connect(host_port.as_str()).await?)
                }
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(failed(std::io::Error::from(std::io::ErrorKind::TimedOut))),
        }
    }

    /// Whether clamd answers (for readiness).
    pub async fn ping(&self) -> Result<(), ScanError> {
        let mut conn = self.connect().await?;
        conn.write_all(b"zPING\0").await?;
        match answer(&mut conn).await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::Answer(other.to_string())),
        }
    }

    /// Starts a scan; the file is then fed to it.
    pub async fn start(&self) -> Result<ClamdScan, ScanError> {
        let mut conn = self.connect().await?;
        conn.write_all(b"zINSTREAM\0").await?;
        Ok(ClamdScan { conn })
    }
}

/// A scan in progress.
pub struct ClamdScan {
    conn: Box<dyn Conn>,
}

impl std::fmt::Debug for ClamdScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClamdScan")
    }
}

impl ClamdScan {
    /// Sends the next bytes of the file.
    pub async fn feed(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        for piece in bytes.chunks(CHUNK) {
            let length = (piece.len() as u32).to_be_bytes();
            let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
                self.conn.write_all(&length).await?;
                self.conn.write_all(piece).await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                // clamd closes the socket when the file passes its
                // StreamMaxLength: its answer says so.
                Ok(Err(e)) => {
                    return Err(match answer(&mut self.conn).await {
                        Ok(said) if !said.is_empty() => ScanError::Answer(said),
                        _ => ScanError::Io(e),
                    });
                }
                Err(_) => return Err(ScanError::Timeout),
            }
        }
        Ok(())
    }

    /// Ends the file and reads the verdict.
    pub async fn finish(mut self) -> Result<Verdict, ScanError> {
        self.conn.write_all(&0u32.to_be_bytes()).await?;
        let said = answer(&mut self.conn).await?;
        verdict(&said)
    }
}

/// One answer: text up to a NUL (the `z` commands) or the end.
async fn answer(conn: &mut Box<dyn Conn>) -> Result<String, ScanError> {
    let mut said = Vec::new();
    let reading = async {
        let mut byte = [0u8; 1];
        loop {
            match conn.read(&mut byte).await? {
                0 => break,
                _ if byte[0] == 0 => break,
                _ if said.len() < 1024 => said.push(byte[0]),
                _ => {}
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, reading).await {
        Ok(Ok(())) => Ok(String::from_utf8_lossy(&said).trim().to_string()),
        Ok(Err(e)) => Err(ScanError::Io(e)),
        Err(_) => Err(ScanError::Timeout),
    }
}

/// `stream: OK`, `stream: Eicar-Test-Signature FOUND`, or an error.
fn verdict(said: &str) -> Result<Verdict, ScanError> {
    let result = said.strip_prefix("stream:").map(str::trim);
    match result {
        Some("OK") => Ok(Verdict::Clean),
        Some(r) if r.ends_with(" FOUND") => Ok(Verdict::Infected(
            r.trim_end_matches(" FOUND").trim().to_string(),
        )),
        _ => Err(ScanError::Answer(said.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for (text, expected) in [
            (
                "unix:/run/clamav/clamd.ctl",
                Some(ClamdAddress::Unix("/run/clamav/clamd.ctl".into())),
            ),
            (
                "/tmp/clamd.sock",
                Some(ClamdAddress::Unix("/tmp/clamd.sock".into())),
            ),
            (
                "tcp://127.0.0.1:3310",
                Some(ClamdAddress::Tcp("127.0.0.1:3310".into())),
            ),
            ("clamav:3310", Some(ClamdAddress::Tcp("clamav:3310".into()))),
            ("clamav", None),
            ("clamav:port", None),
            (":3310", None),
        ] {
            assert_eq!(ClamdAddress::parse(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict("stream: OK").ok(), Some(Verdict::Clean));
        assert_eq!(
            verdict("stream: Eicar-Test-Signature FOUND").ok(),
            Some(Verdict::Infected("Eicar-Test-Signature".into()))
        );
        for bad in ["INSTREAM size limit exceeded. ERROR", "", "stream: x ERROR"] {
            assert!(verdict(bad).is_err(), "{bad}");
        }
    }
}
