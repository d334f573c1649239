//! The document store: page scans, letters and uploads, addressed by their
//! sha256, in one `object_store`: a folder under the data folder by default
//! (`GUICHET_DATA_DIR/documents`), S3 in production (`GUICHET_DOCUMENT_STORE`).
//! Content is kept once, under `sha256/ab/abcdef…`; rows and messages carry
//! the digest, never the bytes.

pub mod clamav;
pub mod screen;
mod settings;
mod stream;
mod upload;

pub use settings::{DocumentSettings, OpenError, S3Location};
pub use stream::{Inspector, Staged, Stored};
pub use upload::{Accepted, CheckedUpload, UploadError, UploadRules, VirusScanner};

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use sha2::{Digest, Sha256};

use crate::Config;
use crate::error::{ErrorKind, ServiceError};

/// Why a document could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0} is not a sha256 (64 hexadecimal characters)")]
    BadDigest(String),
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the document's content")]
    Content(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the document store")]
    Store(#[from] object_store::Error),
    #[error("flushing {0} to disk")]
    Flush(PathBuf, #[source] std::io::Error),
}

impl DocumentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DocumentError::BadDigest(_) | DocumentError::TooLarge { .. } => ErrorKind::InvalidInput,
            // The sender's stream broke: its request, not the store.
            DocumentError::Content(_) => ErrorKind::InvalidInput,
            DocumentError::Store(_) | DocumentError::Flush(..) => ErrorKind::Unavailable,
        }
    }
}

/// The store's own failures are logged whole and answered without its
/// internals (bucket, URL); the caller's are told to the caller.
impl From<DocumentError> for ServiceError {
    fn from(e: DocumentError) -> Self {
        let chain = crate::error::error_chain(&e);
        match e.kind() {
            ErrorKind::Unavailable => {
                tracing::warn!(error = %chain, "document store unavailable");
                ServiceError::unavailable("the document store is unavailable; try again shortly")
            }
            kind => ServiceError::new(kind, chain),
        }
    }
}

/// Documents by content, in a local folder or an S3 bucket.
#[derive(Clone)]
pub struct DocumentStore {
    objects: Arc<dyn ObjectStore>,
    /// The folder of a local store: a write there is flushed to disk before
    /// it returns (`LocalFileSystem` renames into place but never syncs), as
    /// an upload is acknowledged only once its pages are safe. S3 answers a
    /// write once it is durable.
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for DocumentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DocumentStore({})", self.objects)
    }
}

impl DocumentStore {
    /// The store the configuration names: S3 when `GUICHET_DOCUMENT_STORE`
    /// is set, else the `documents` folder of the data folder.
    pub fn open(config: &Config) -> Result<Self, OpenError> {
        Self::open_with(&config.documents, &config.data_dir)
    }

    /// `open`, from the document settings and the data folder alone.
    pub fn open_with(settings: &DocumentSettings, data_dir: &FsPath) -> Result<Self, OpenError> {
        settings::open(settings, data_dir)
    }

    /// A store in a folder of this machine, made if missing.
    pub fn local(root: &FsPath) -> Result<Self, OpenError> {
        std::fs::create_dir_all(root).map_err(|e| OpenError::Folder(root.to_path_buf(), e))?;
        let objects = LocalFileSystem::new_with_prefix(root)?;
        Ok(Self {
            objects: Arc::new(objects),
            local_root: Some(root.to_path_buf()),
        })
    }

    /// A store over any object store (S3 as `open` builds it, or another).
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            local_root: None,
        }
    }

    /// The object store underneath, for what this type does not do
    /// (listing, in tests and maintenance).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Stores `content`, once whatever the number of callers; returns its
    /// sha256.
    pub async fn put(&self, content: impl Into<Bytes>) -> Result<String, DocumentError> {
        let content: Bytes = content.into();
        let sha256 = hex::encode(Sha256::digest(&content));
        let key = key_of(&sha256)?;
        let payload = PutPayload::from(content);
        // A conditional put (`If-None-Match: *` on S3, a hard link that must
        // not exist on disk) rather than head-then-put: new content, the
        // usual case, costs one round trip, and of two writers of the same
        // content only one writes. The other is told it exists, which for a
        // key that is the content's digest means done, once a head confirms
        // it (S3 answers 409 to a write that races one still in progress,
        // which may yet fail).
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .objects
                .put_opts(&key, payload.clone(), PutMode::Create.into())
                .await
            {
                Ok(_) => break,
                Err(object_store::Error::AlreadyExists { .. })
                    if self.objects.head(&key).await.is_ok() =>
                {
                    break;
                }
                Err(object_store::Error::AlreadyExists { .. }) if tries < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.flush(&key).await?;
        Ok(sha256)
    }

    /// The document with this sha256; `None` when none is stored.
    pub async fn get(&self, sha256: &str) -> Result<Option<Bytes>, DocumentError> {
        let key = key_of(sha256)?;
        let found = match self.objects.get(&key).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(found.bytes().await?))
    }

    /// The size in bytes of the document with this sha256; `None` when none
    /// is stored.
    pub async fn head(&self, sha256: &str) -> Result<Option<u64>, DocumentError> {
        let key = key_of(sha256)?;
        match self.objects.head(&key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// On disk, syncs the file under `key` and the folders down to it (one
    /// of them may be new); elsewhere nothing to do.
    async fn flush(&self, key: &Path) -> Result<(), DocumentError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = key
            .parts()
            .fold(root.clone(), |path, part| path.join(part.as_ref()));
        tokio::task::spawn_blocking(move || {
            let sync = |path: &FsPath| {
                std::fs::File::open(path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| DocumentError::Flush(path.to_path_buf(), e))
            };
            sync(&file)?;
            for folder in file.ancestors().skip(1) {
                sync(folder)?;
                if folder == root {
                    break;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| DocumentError::Flush(PathBuf::from(key.as_ref()), std::io::Error::other(e)))?
    }
}

/// Where the document with this sha256 lives. Anything but 64 hexadecimal
/// characters is refused here, so no caller's text ever becomes a key.
fn key_of(sha256: &str) -> Result<Path, DocumentError> {
    if !guichet_dossier::filing::is_sha256(sha256) {
        return Err(DocumentError::BadDigest(shown(sha256)));
    }
    let sha256 = sha256.to_ascii_lowercase();
    Ok(Path::from(format!("sha256/{}/{sha256}", &sha256[..2])))
}

/// A caller's text in an error: quoted, escaped, cut if long.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_64_hexadecimal_characters() {
        let sha = "ab".repeat(32);
        assert_eq!(
            key_of(&sha).expect("a digest").as_ref(),
            format!("sha256/ab/{sha}")
        );
        assert_eq!(
            key_of(&sha.to_uppercase()).expect("upper case").as_ref(),
            format!("sha256/ab/{sha}")
        );
        for bad in [
            "",
            "../etc/passwd",
            &"a".repeat(63),
            &"a".repeat(65),
            &format!("{}g", "a".repeat(63)),
            &format!("{}/..", "a".repeat(60)),
        ] {
            match key_of(bad) {
                Err(DocumentError::BadDigest(shown)) => {
                    assert!(shown.contains(&bad[..bad.len().min(40)]), "{shown}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let long = "x".repeat(10_000);
        let message = key_of(&long).expect_err("too long").to_string();
        assert!(message.len() < 200, "{message}");
    }
}
