//! The document store's contract, one suite run on both stores: the local
//! folder (the embedded default) and a real S3 server, moto's, from PyPI
//! (`pip install 'moto[server]'`, as `.ci/run` does). Each S3 case starts
//! its own server on a port of its own, makes its bucket, and stops it
//! after; without moto the case fails and says what to install.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{TryStreamExt, stream};
use guichet_kit::documents::{DocumentError, DocumentSettings, DocumentStore, S3Location};
use sha2::{Digest, Sha256};

/// Runs one async case on both stores, as two tests.
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name(&super::Backend::local()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(&super::Backend::s3().await).await;
            }
        }
    };
}

/// A store, and what it stands on.
struct Backend {
    store: DocumentStore,
    place: Place,
}

enum Place {
    Folder(PathBuf),
    S3(Moto),
}

impl Backend {
    fn local() -> Self {
        let dir = std::env::temp_dir().join(format!("guichet-docs-{}", uuid::Uuid::new_v4()));
        // Opened from the configuration, as a service opens it.
        let store = DocumentStore::open_with(&DocumentSettings::default(), &dir).unwrap();
        Backend {
            store,
            place: Place::Folder(dir.join("documents")),
        }
    }

    async fn s3() -> Self {
        let moto = Moto::start().await;
        let settings = DocumentSettings {
            document_store: Some(
                S3Location::parse(&format!("s3://{BUCKET}/guichet/docs")).unwrap(),
            ),
            s3_endpoint: Some(moto.endpoint()),
            s3_region: Some("eu-west-3".into()),
            s3_access_key_id: Some("testing".into()),
            s3_secret_access_key: Some("testing".into()),
            s3_allow_http: true,
            ..DocumentSettings::default()
        };
        let store = DocumentStore::open_with(&settings, &std::env::temp_dir()).unwrap();
        Backend {
            store,
            place: Place::S3(moto),
        }
    }

    /// Every object the store lists.
    async fn listed(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .objects()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// What a listing does not show but a failed or racing write could
    /// leave: files on disk beside the listed ones (the folder store hides
    /// its staging files), multipart uploads neither completed nor aborted
    /// (S3).
    async fn leftovers(&self) -> Vec<String> {
        match &self.place {
            Place::Folder(dir) => {
                let listed = self.listed().await;
                files_under(dir)
                    .into_iter()
                    .map(|file| file.strip_prefix(dir).unwrap().display().to_string())
                    .filter(|file| !listed.contains(file))
                    .collect()
            }
            Place::S3(moto) => moto.open_uploads().await,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Place::Folder(dir) = &self.place {
            let _ = std::fs::remove_dir_all(dir.parent().unwrap());
        }
    }
}

fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` bytes that do not repeat in any way a store could shortcut.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `bytes` as a stream of chunks of `chunk` bytes, as a request body comes.
fn chunks(
    bytes: Vec<u8>,
    chunk: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let bytes = Bytes::from(bytes);
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(chunk)
        .map(|at| Ok(bytes.slice(at..(at + chunk).min(bytes.len()))))
        .collect();
    stream::iter(pieces)
}

// ---- the cases ---------------------------------------------------------------

on_both_stores!(what_is_put_is_got_back_under_its_digest);
async fn what_is_put_is_got_back_under_its_digest(b: &Backend) {
    let page = content(70_000, 1);
    let sha = b.store.put(page.clone()).await.unwrap();
    assert_eq!(sha, sha256(&page));
    assert_eq!(b.store.get(&sha).await.unwrap(), Some(Bytes::from(page)));
    assert_eq!(b.store.head(&sha).await.unwrap(), Some(70_000));
    // Digests are case-blind.
    assert_eq!(
        b.store.head(&sha.to_uppercase()).await.unwrap(),
        Some(70_000)
    );
    assert_eq!(
        b.listed().await,
        vec![format!("sha256/{}/{sha}", &sha[..2])]
    );
    let empty = b.store.put(Vec::new()).await.unwrap();
    assert_eq!(empty, sha256(b""));
    assert_eq!(b.store.get(&empty).await.unwrap(), Some(Bytes::new()));
}

on_both_stores!(the_same_content_is_stored_once);
async fn the_same_content_is_stored_once(b: &Backend) {
    let letter = content(5_000, 2);
    let first = b.store.put(letter.clone()).await.unwrap();
    let again = b.store.put(letter.clone()).await.unwrap();
    let streamed = b
        .store
        .put_stream(chunks(letter.clone(), 1_000), 10_000)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(streamed.sha256, first);
    assert_eq!(streamed.size, 5_000);
    assert_eq!(b.listed().await.len(), 1, "{:?}", b.listed().await);
    assert_eq!(
        b.store.get(&first).await.unwrap(),
        Some(Bytes::from(letter))
    );
    assert_eq!(b.leftovers().await, Vec::<String>::new());
}

on_both_stores!(an_unknown_digest_is_none);
async fn an_unknown_digest_is_none(b: &Backend) {
    let unknown = sha256(b"never stored");
    assert_eq!(b.store.get(&unknown).await.unwrap(), None);
    assert_eq!(b.store.head(&unknown).await.unwrap(), None);
}

on_both_stores!(a_bad_digest_is_refused_naming_it);
async fn a_bad_digest_is_refused_naming_it(b: &Backend) {
    b.store.put(b"a page".to_vec()).await.unwrap();
    let stored = b.listed().await;
    for bad in [
        "../etc/passwd",
        "",
        "abc",
        &"a".repeat(63),
        &"a".repeat(65),
        &format!("{}zz", "a".repeat(62)),
        &format!("sha256/{}", "a".repeat(57)),
    ] {
        for result in [
            b.store.get(bad).await.map(|_| ()),
            b.store.head(bad).await.map(|_| ()),
        ] {
            match result {
                Err(e @ DocumentError::BadDigest(_)) => {
                    assert!(e.to_string().contains(&format!("{bad:?}")), "{e}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
    assert_eq!(b.listed().await, stored);
}

on_both_stores!(a_streamed_document_is_hashed_as_it_is_written);
async fn a_streamed_document_is_hashed_as_it_is_written(b: &Backend) {
    // Four parts and a bit, in chunks that straddle the part boundaries.
    let scan = content(20 * 1024 * 1024 + 12_345, 3);
    let expected = sha256(&scan);
    let stored = b
        .store
        .put_stream(chunks(scan.clone(), 64 * 1024 + 7), 64 * 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(stored.sha256, expected);
    assert_eq!(stored.size, scan.len() as u64);
    assert_eq!(
        b.store.head(&expected).await.unwrap(),
        Some(scan.len() as u64)
    );
    assert_eq!(
        b.store.get(&expected).await.unwrap(),
        Some(Bytes::from(scan))
    );
    // Only the document: the temporary object is gone.
    assert_eq!(
        b.listed().await,
        vec![format!("sha256/{}/{expected}", &expected[..2])]
    );
    let empty = b
        .store
        .put_stream(stream::empty::<Result<Bytes, std::io::Error>>(), 10)
        .await
        .unwrap();
    assert_eq!(
        (empty.sha256.as_str(), empty.size),
        (sha256(b"").as_str(), 0)
    );
    assert_eq!(b.leftovers().await, Vec::<String>::new());
}

on_both_stores!(a_streamed_document_over_its_limit_leaves_nothing);
async fn a_streamed_document_over_its_limit_leaves_nothing(b: &Backend) {
    let limit = 12 * 1024 * 1024;
    // Two parts sent before the limit is passed.
    let scan = content(limit as usize + 1, 4);
    match b
        .store
        .put_stream(chunks(scan.clone(), 1024 * 1024), limit)
        .await
    {
        Err(DocumentError::TooLarge { limit: l }) => assert_eq!(l, limit),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.listed().await, Vec::<String>::new());
    assert_eq!(b.leftovers().await, Vec::<String>::new());
    assert_eq!(b.store.head(&sha256(&scan)).await.unwrap(), None);

    // A sender whose body breaks half-way leaves nothing either.
    let broken = stream::iter(vec![
        Ok(Bytes::from(content(6 * 1024 * 1024, 5))),
        Err(std::io::Error::other("connection reset")),
    ]);
    match b.store.put_stream(broken, limit).await {
        Err(DocumentError::Content(e)) => assert!(e.to_string().contains("reset"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.listed().await, Vec::<String>::new());
    assert_eq!(b.leftovers().await, Vec::<String>::new());
}

on_both_stores!(concurrent_puts_of_the_same_content_both_succeed);
async fn concurrent_puts_of_the_same_content_both_succeed(b: &Backend) {
    let page = Bytes::from(content(300_000, 6));
    let expected = sha256(&page);
    // Rounds of writers on tasks of their own, so that they run at once on
    // the runtime's threads.
    for _ in 0..5 {
        let puts: Vec<_> = (0..4)
            .map(|_| {
                let (store, page) = (b.store.clone(), page.clone());
                tokio::spawn(async move { store.put(page).await })
            })
            .collect();
        for put in puts {
            assert_eq!(put.await.unwrap().unwrap(), expected);
        }
    }
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let (store, page) = (b.store.clone(), page.to_vec());
            tokio::spawn(async move { store.put_stream(chunks(page, 50_000), 1024 * 1024).await })
        })
        .collect();
    for stored in streams {
        assert_eq!(stored.await.unwrap().unwrap().sha256, expected);
    }
    assert_eq!(b.listed().await.len(), 1, "{:?}", b.listed().await);
    assert_eq!(b.store.get(&expected).await.unwrap(), Some(page));
    assert_eq!(b.leftovers().await, Vec::<String>::new());
}

// ---- moto's S3 server ----------------------------------------------------------

const BUCKET: &str = "guichet-documents";

/// moto's server on a port of its own, as a separate process, stopped when
/// dropped. It binds port 0 and says which port it got, so two servers
/// never race for one.
struct Moto {
    port: u16,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Moto {
    async fn start() -> Self {
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "python3 runs (moto's S3 server: `pip install 'moto[server]'`, as .ci/run does)",
            );
        // Werkzeug prints ` * Running on http://127.0.0.1:PORT` on stderr,
        // then a line per request: read it all, or the server would block
        // on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .split_once("Running on http://127.0.0.1:")
                    .and_then(|(_, rest)| {
                        // The digits alone: the URL may be followed by a
                        // colour's escape code.
                        let digits = rest
                            .find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(rest.len());
                        rest[..digits].parse::<u16>().ok()
                    });
                if let Some(port) = port
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
                let mut log = kept.lock().unwrap();
                if log.len() < 64 * 1024 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let port = match tokio::time::timeout(Duration::from_secs(60), port_rx).await {
            Ok(Ok(port)) => port,
            outcome => {
                let status = child.try_wait().unwrap();
                let _ = child.kill();
                panic!(
                    "moto's S3 server did not start ({}): is it installed \
                     (pip install 'moto[server]')?\n{}",
                    match (outcome, status) {
                        (_, Some(status)) => format!("it exited, {status}"),
                        (Err(_), None) => "no port within a minute".to_string(),
                        (Ok(_), None) => "it closed its output".to_string(),
                    },
                    log.lock().unwrap()
                );
            }
        };
        let moto = Moto { port, child, log };
        let made = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", moto.endpoint()))
            .send()
            .await
            .unwrap();
        assert!(
            made.status().is_success(),
            "create the bucket: {}\n{}",
            made.status(),
            moto.log.lock().unwrap()
        );
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Multipart uploads begun in the bucket and neither completed nor
    /// aborted (S3's ListMultipartUploads).
    async fn open_uploads(&self) -> Vec<String> {
        let listing = reqwest::Client::new()
            .get(format!("{}/{BUCKET}?uploads", self.endpoint()))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .map(|rest| rest.split("</Key>").next().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
