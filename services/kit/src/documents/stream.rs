//! A document too large to hold in memory (a web upload), stored as it
//! arrives: hashed while it is written to a key of its own by a multipart
//! upload, then moved under its digest once the digest is known.

use std::pin::pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{DocumentError, DocumentStore, key_of};

/// Bytes per uploaded part: S3's smallest part (but the last).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts on their way at once. With the part being filled, this bounds what
/// a streamed document holds in memory (about 15 MiB), whatever its size.
const PARTS_IN_FLIGHT: usize = 2;
/// Where documents are written while their digest is not yet known.
const UPLOADS: &str = "uploads";

/// A document stored from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    /// Whether this content was new to the store (not there before).
    pub new: bool,
}

/// Looks at each chunk of a streamed document as it is stored, and may stop
/// it: the content screening and the virus scan of an upload.
pub trait Inspector {
    type Error: From<DocumentError>;
    fn chunk(&mut self, bytes: &Bytes) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// No inspection: what the caller streams is stored as it is.
struct AsIs;

impl Inspector for AsIs {
    type Error = DocumentError;
    async fn chunk(&mut self, _: &Bytes) -> Result<(), DocumentError> {
        Ok(())
    }
}

/// A document written but not yet under its digest: committed once every
/// check passed, discarded otherwise, so nothing refused stays stored.
#[derive(Debug)]
#[must_use = "a staged document is committed or discarded"]
pub struct Staged {
    key: Path,
    pub sha256: String,
    pub size: u64,
}

impl DocumentStore {
    /// Stores what `content` yields, refusing it past `max_bytes`. Nothing
    /// stays in the store when it fails: not the parts sent, nor the
    /// temporary object. S3 copies one object of 5 GiB at most, which bounds
    /// `max_bytes` there.
    pub async fn put_stream<S, E>(
        &self,
        content: S,
        max_bytes: u64,
    ) -> Result<Stored, DocumentError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let staged = self.stage_stream(content, max_bytes, &mut AsIs).await?;
        self.commit(staged).await
    }

    /// Writes what `content` yields to a key of its own, showing each chunk
    /// to `inspector` first; nothing stays when it fails.
    pub async fn stage_stream<S, E, I>(
        &self,
        content: S,
        max_bytes: u64,
        inspector: &mut I,
    ) -> Result<Staged, I::Error>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        I: Inspector,
    {
        let upload_key = Path::from(format!("{UPLOADS}/{}", uuid::Uuid::new_v4()));
        let upload = self
            .objects
            .put_multipart(&upload_key)
            .await
            .map_err(DocumentError::from)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut content = pin!(content);
        while let Some(chunk) = content.next().await {
            let failed = match chunk {
                Err(e) => Some(I::Error::from(DocumentError::Content(e.into()))),
                Ok(bytes) if size.saturating_add(bytes.len() as u64) > max_bytes => {
                    Some(DocumentError::TooLarge { limit: max_bytes }.into())
                }
                Ok(bytes) => match inspector.chunk(&bytes).await {
                    Err(e) => Some(e),
                    Ok(()) => {
                        hasher.update(&bytes);
                        size += bytes.len() as u64;
                        writer.put(bytes);
                        // Back pressure: the stream is read no faster than
                        // parts are sent.
                        writer
                            .wait_for_capacity(PARTS_IN_FLIGHT)
                            .await
                            .err()
                            .map(|e| DocumentError::from(e).into())
                    }
                },
            };
            if let Some(e) = failed {
                // Aborting drops the parts already sent: no object was made.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "a failed upload's parts could not be dropped");
                }
                return Err(e);
            }
        }
        // `finish` aborts when the completion fails but not when a part
        // does: wait for the parts first, to abort them on failure.
        if let Err(e) = writer.wait_for_capacity(0).await {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "a failed upload's parts could not be dropped");
            }
            return Err(DocumentError::from(e).into());
        }
        writer.finish().await.map_err(DocumentError::from)?;
        Ok(Staged {
            key: upload_key,
            sha256: hex::encode(hasher.finalize()),
            size,
        })
    }

    /// Moves a staged document under its digest.
    pub async fn commit(&self, staged: Staged) -> Result<Stored, DocumentError> {
        let placed = self.place(&staged.key, &staged.sha256).await;
        if placed.is_err() {
            let _ = self.objects.delete(&staged.key).await;
        }
        let new = placed?;
        Ok(Stored {
            sha256: staged.sha256,
            size: staged.size,
            new,
        })
    }

    /// Takes back a document just stored as new content, when what it was
    /// stored for was refused (a batch the postal service turned down), so
    /// that nothing refused stays. Content that was there before is left.
    pub async fn withdraw(&self, stored: &Stored) {
        if !stored.new {
            return;
        }
        let deleted = match key_of(&stored.sha256) {
            Ok(key) => self.objects.delete(&key).await.map_err(DocumentError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            tracing::warn!(error = %e, sha256 = %stored.sha256, "a refused document could not be deleted");
        }
    }

    /// Drops a staged document that was refused.
    pub async fn discard(&self, staged: Staged) {
        if let Err(e) = self.objects.delete(&staged.key).await {
            tracing::warn!(error = %e, key = %staged.key, "a refused upload could not be deleted");
        }
    }

    /// Moves the object written under `upload_key` under its digest, or
    /// drops it when that content is stored already; says whether it moved.
    async fn place(&self, upload_key: &Path, sha256: &str) -> Result<bool, DocumentError> {
        let key = key_of(sha256)?;
        let new = match self.objects.head(&key).await {
            Ok(_) => {
                self.objects.delete(upload_key).await?;
                false
            }
            // A rename on disk; a copy then a delete on S3. Two writers of
            // the same content may both get here: the second replaces the
            // same bytes with the same bytes.
            Err(object_store::Error::NotFound { .. }) => {
                self.objects.rename(upload_key, &key).await?;
                true
            }
            Err(e) => return Err(e.into()),
        };
        self.flush(&key).await?;
        Ok(new)
    }
}
