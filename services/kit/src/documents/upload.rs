//! An upload accepted into the store: streamed, its type decided by its
//! content, screened, scanned by ClamAV, and kept only when all of that
//! passed. A refused upload leaves nothing behind.

use bytes::Bytes;
use futures_util::Stream;

use super::clamav::{Clamd, ClamdScan, ScanError, Verdict};
use super::screen::{MediaType, Refusal, Screen, ScreenLimits};
use super::stream::Inspector;
use super::{DocumentError, DocumentStore};

/// What one uploaded file may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRules {
    pub max_file_bytes: u64,
    pub screen: ScreenLimits,
}

/// Who scans uploads for viruses.
#[derive(Debug, Clone)]
pub enum VirusScanner {
    Clamd(Clamd),
    /// `GUICHET_CLAMD=off`: uploads are kept unscanned (a demonstration on
    /// a laptop; never in service).
    Off,
    /// None set and none found: uploads are refused.
    Missing,
}

/// An upload kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sha256: String,
    pub size: u64,
    pub media_type: MediaType,
    pub pages: u32,
    /// Whether a virus scanner looked at it.
    pub scanned: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the file is larger than the {limit} bytes accepted")]
    TooLarge { limit: u64 },
    #[error("the virus scanner found {0} in the file")]
    Infected(String),
    #[error("{0}")]
    Scanner(#[from] ScanError),
    #[error("no virus scanner is set (GUICHET_CLAMD), so uploads are refused")]
    NoScanner,
    #[error("the upload was cut short: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Store(DocumentError),
}

impl From<DocumentError> for UploadError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::TooLarge { limit } => UploadError::TooLarge { limit },
            DocumentError::Content(e) => UploadError::Interrupted(e.to_string()),
            other => UploadError::Store(other),
        }
    }
}

impl UploadError {
    /// Whether the file itself is at fault (the sender can do something),
    /// rather than this system.
    pub fn is_the_files(&self) -> bool {
        matches!(
            self,
            UploadError::Refused(_)
                | UploadError::TooLarge { .. }
                | UploadError::Infected(_)
                | UploadError::Interrupted(_)
        )
    }

    /// A short stable code for counting refusals.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::Refused(r) => r.code(),
            UploadError::TooLarge { .. } => "too_large",
            UploadError::Infected(_) => "virus",
            UploadError::Scanner(_) | UploadError::NoScanner => "scanner",
            UploadError::Interrupted(_) => "interrupted",
            UploadError::Store(_) => "store",
        }
    }
}

/// The checks each chunk goes through on its way to the store.
struct Checks {
    screen: Screen,
    scan: Option<ClamdScan>,
}

impl Inspector for Checks {
    type Error = UploadError;

    async fn chunk(&mut self, bytes: &Bytes) -> Result<(), UploadError> {
        self.screen.feed(bytes)?;
        if let Some(scan) = self.scan.as_mut() {
            scan.feed(bytes).await?;
        }
        Ok(())
    }
}

/// An upload that passed every check, written but not yet kept: committed
/// with the others of its request, or discarded with them.
#[derive(Debug)]
#[must_use = "a checked upload is committed or discarded"]
pub struct CheckedUpload {
    staged: super::Staged,
    pub media_type: MediaType,
    pub pages: u32,
    pub scanned: bool,
}

impl CheckedUpload {
    pub fn sha256(&self) -> &str {
        &self.staged.sha256
    }

    pub fn size(&self) -> u64 {
        self.staged.size
    }
}

impl DocumentStore {
    /// Stores an uploaded file if it passes every check; nothing is kept
    /// otherwise.
    pub async fn accept_upload<S, E>(
        &self,
        content: S,
        rules: &UploadRules,
        scanner: &VirusScanner,
    ) -> Result<Accepted, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let checked = self.check_upload(content, rules, scanner).await?;
        self.commit_upload(checked).await
    }

    /// Writes an uploaded file aside while it is screened and scanned as it
    /// streams, so memory stays bounded whatever its size; refused, it
    /// leaves nothing behind.
    pub async fn check_upload<S, E>(
        &self,
        content: S,
        rules: &UploadRules,
        scanner: &VirusScanner,
    ) -> Result<CheckedUpload, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let scan = match scanner {
            VirusScanner::Clamd(clamd) => Some(clamd.start().await?),
            VirusScanner::Off => None,
            VirusScanner::Missing => return Err(UploadError::NoScanner),
        };
        let scanned = scan.is_some();
        let mut checks = Checks {
            screen: Screen::new(rules.screen),
            scan,
        };
        let staged = self
            .stage_stream(content, rules.max_file_bytes, &mut checks)
            .await?;
        let verdict = async {
            let screened = checks.screen.finish()?;
            if let Some(scan) = checks.scan
                && let Verdict::Infected(signature) = scan.finish().await?
            {
                return Err(UploadError::Infected(signature));
            }
            Ok(screened)
        }
        .await;
        match verdict {
            Ok(screened) => Ok(CheckedUpload {
                staged,
                media_type: screened.media_type,
                pages: screened.pages,
                scanned,
            }),
            Err(e) => {
                self.discard(staged).await;
                Err(e)
            }
        }
    }

    /// Keeps a checked upload under its digest.
    pub async fn commit_upload(&self, checked: CheckedUpload) -> Result<Accepted, UploadError> {
        let stored = self.commit(checked.staged).await?;
        Ok(Accepted {
            sha256: stored.sha256,
            size: stored.size,
            media_type: checked.media_type,
            pages: checked.pages,
            scanned: checked.scanned,
        })
    }

    /// Drops a checked upload (another of its request was refused).
    pub async fn discard_upload(&self, checked: CheckedUpload) {
        self.discard(checked.staged).await
    }
}
