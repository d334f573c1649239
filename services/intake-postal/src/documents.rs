//! The document store: page images and letters, addressed by their sha256,
//! in a folder. A write is on disk (file and folder entry flushed) before it
//! returns, because an upload is acknowledged only once its pages are safe;
//! the same content is kept once.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct Documents {
    root: PathBuf,
}

impl Documents {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(&sha256[..2]).join(sha256))
    }

    /// Stores `content` durably; returns its sha256.
    pub async fn put(&self, content: Vec<u8>) -> std::io::Result<String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put_blocking(&content))
            .await
            .map_err(std::io::Error::other)?
    }

    fn put_blocking(&self, content: &[u8]) -> std::io::Result<String> {
        let sha = hex::encode(Sha256::digest(content));
        let path = self
            .path_of(&sha)
            .ok_or_else(|| std::io::Error::other("bad digest"))?;
        if path.exists() {
            return Ok(sha);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir)?;
        // Write aside, flush, then rename: a crash never leaves a torn file
        // under a page's name.
        let tmp = dir.join(format!(".{sha}.{}", uuid::Uuid::new_v4()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(sha)
    }

    pub async fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path_of(sha256) else {
            return Ok(None);
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_is_kept_once_under_its_digest() {
        let dir = std::env::temp_dir().join(format!("guichet-docs-{}", uuid::Uuid::new_v4()));
        let docs = Documents::open(&dir).expect("open");
        let a = docs.put(b"page".to_vec()).await.expect("put");
        let b = docs.put(b"page".to_vec()).await.expect("put again");
        assert_eq!(a, b);
        assert_eq!(docs.get(&a).await.expect("get"), Some(b"page".to_vec()));
        assert_eq!(docs.get("../etc/passwd").await.expect("get"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
