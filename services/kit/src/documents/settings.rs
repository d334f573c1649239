//! Which document store a service opens: `GUICHET_DOCUMENT_STORE` and the
//! S3 settings beside it, part of the kit's `Config`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, RetryConfig};

use super::DocumentStore;
use super::clamav::{Clamd, ClamdAddress};
use super::screen::ScreenLimits;
use super::upload::{UploadRules, VirusScanner};

#[derive(Clone, clap::Args)]
pub struct DocumentSettings {
    /// Where documents (scans, letters, uploads) are kept:
    /// `s3://bucket/prefix` for S3 (or a server speaking its API). Unset:
    /// the `documents` folder of GUICHET_DATA_DIR.
    #[arg(long, env = "GUICHET_DOCUMENT_STORE", value_parser = S3Location::parse)]
    pub document_store: Option<S3Location>,

    /// The S3 server's URL, for a store other than AWS's (MinIO, Garage, a
    /// provider's). Unset: AWS, in GUICHET_S3_REGION.
    #[arg(long, env = "GUICHET_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The bucket's region. Unset: us-east-1.
    #[arg(long, env = "GUICHET_S3_REGION")]
    pub s3_region: Option<String>,

    /// The access key the service signs its requests with. Unset (with the
    /// secret): the instance's or pod's role.
    #[arg(long, env = "GUICHET_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// The secret of GUICHET_S3_ACCESS_KEY_ID.
    #[arg(long, env = "GUICHET_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Accept an `http://` endpoint (no TLS): a test server on this machine.
    #[arg(long, env = "GUICHET_S3_ALLOW_HTTP", default_value_t = false)]
    pub s3_allow_http: bool,

    /// ClamAV's daemon, which scans every upload: `unix:/path/clamd.ctl`
    /// or `host:port`. `off` keeps uploads unscanned (a demonstration,
    /// never in service). Unset: Debian's socket when clamd runs there,
    /// else uploads are refused.
    #[arg(long, env = "GUICHET_CLAMD")]
    pub clamd: Option<String>,

    /// The largest file uploaded, in MiB.
    #[arg(long, env = "GUICHET_UPLOAD_MAX_FILE_MIB", default_value_t = 20)]
    pub upload_max_file_mib: u64,

    /// The most a dossier's uploads may add up to, in MiB.
    #[arg(long, env = "GUICHET_UPLOAD_MAX_DOSSIER_MIB", default_value_t = 100)]
    pub upload_max_dossier_mib: u64,

    /// The most files in one upload request.
    #[arg(long, env = "GUICHET_UPLOAD_MAX_FILES", default_value_t = 10)]
    pub upload_max_files: usize,

    /// The most pages in an uploaded PDF.
    #[arg(long, env = "GUICHET_UPLOAD_MAX_PAGES", default_value_t = 100)]
    pub upload_max_pages: u32,
}

/// The same values as the flags' defaults.
impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            document_store: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            clamd: None,
            upload_max_file_mib: 20,
            upload_max_dossier_mib: 100,
            upload_max_files: 10,
            upload_max_pages: 100,
        }
    }
}

/// Where Debian's clamd listens by default.
const DEBIAN_CLAMD: [&str; 2] = ["/run/clamav/clamd.ctl", "/var/run/clamav/clamd.ctl"];

impl DocumentSettings {
    /// Who scans uploads, from GUICHET_CLAMD.
    pub fn virus_scanner(&self) -> Result<VirusScanner, OpenError> {
        match self.clamd.as_deref().map(str::trim) {
            Some("off") => Ok(VirusScanner::Off),
            Some(text) if !text.is_empty() => ClamdAddress::parse(text)
                .map(|a| VirusScanner::Clamd(Clamd::new(a)))
                .map_err(|problem| setting("GUICHET_CLAMD", problem)),
            _ => Ok(DEBIAN_CLAMD
                .iter()
                .map(FsPath::new)
                .find(|p| p.exists())
                .map(|p| VirusScanner::Clamd(Clamd::new(ClamdAddress::Unix(p.to_path_buf()))))
                .unwrap_or(VirusScanner::Missing)),
        }
    }

    /// What one uploaded file may be.
    pub fn upload_rules(&self) -> UploadRules {
        UploadRules {
            max_file_bytes: self.upload_max_file_mib.saturating_mul(1024 * 1024),
            screen: ScreenLimits {
                max_pages: self.upload_max_pages,
                ..ScreenLimits::default()
            },
        }
    }

    /// The most a dossier's uploads may add up to, in bytes.
    pub fn upload_max_dossier_bytes(&self) -> u64 {
        self.upload_max_dossier_mib.saturating_mul(1024 * 1024)
    }
}

/// Written out by hand so that the S3 credentials never reach a log line.
impl std::fmt::Debug for DocumentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "(set)");
        f.debug_struct("DocumentSettings")
            .field("document_store", &self.document_store)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &set(&self.s3_access_key_id))
            .field("s3_secret_access_key", &set(&self.s3_secret_access_key))
            .field("s3_allow_http", &self.s3_allow_http)
            .field("clamd", &self.clamd)
            .field("upload_max_file_mib", &self.upload_max_file_mib)
            .field("upload_max_dossier_mib", &self.upload_max_dossier_mib)
            .field("upload_max_files", &self.upload_max_files)
            .field("upload_max_pages", &self.upload_max_pages)
            .finish()
    }
}

/// A bucket and the prefix the documents go under in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// `s3://bucket` or `s3://bucket/prefix/…`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wanted = "expected s3://bucket/prefix (unset: the data folder)";
        let Some(rest) = text.trim().strip_prefix("s3://") else {
            return Err(format!("GUICHET_DOCUMENT_STORE: {wanted}"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, in short.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(format!(
                "GUICHET_DOCUMENT_STORE: {bucket:?} is not a bucket name (3 to 63 lower-case \
                 letters, digits, dots and hyphens); {wanted}"
            ));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

/// Why the document store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}: the documents folder cannot be made")]
    Folder(PathBuf, #[source] std::io::Error),
    #[error("{variable}: {problem}")]
    Setting {
        variable: &'static str,
        problem: String,
    },
    #[error("the document store")]
    Store(#[from] object_store::Error),
}

fn setting(variable: &'static str, problem: impl Into<String>) -> OpenError {
    OpenError::Setting {
        variable,
        problem: problem.into(),
    }
}

pub(super) fn open(
    settings: &DocumentSettings,
    data_dir: &FsPath,
) -> Result<DocumentStore, OpenError> {
    match &settings.document_store {
        Some(location) => s3(location, settings),
        None => {
            // S3 settings without an S3 store are a mistake that would
            // otherwise keep documents on this machine without a word.
            let stray = [
                ("GUICHET_S3_ENDPOINT", settings.s3_endpoint.is_some()),
                (
                    "GUICHET_S3_ACCESS_KEY_ID",
                    settings.s3_access_key_id.is_some(),
                ),
                (
                    "GUICHET_S3_SECRET_ACCESS_KEY",
                    settings.s3_secret_access_key.is_some(),
                ),
            ];
            if let Some((variable, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(setting(
                    variable,
                    "set, but GUICHET_DOCUMENT_STORE names no s3:// store",
                ));
            }
            DocumentStore::local(&data_dir.join("documents"))
        }
    }
}

fn s3(location: &S3Location, settings: &DocumentSettings) -> Result<DocumentStore, OpenError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&location.bucket)
        .with_allow_http(settings.s3_allow_http)
        // Fail over a few seconds, not the minutes of the default: a page
        // upload waits on it, and a store that is down answers 503.
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = settings.s3_endpoint.as_deref() {
        let endpoint = endpoint.trim();
        if endpoint.starts_with("http://") && !settings.s3_allow_http {
            return Err(setting(
                "GUICHET_S3_ENDPOINT",
                "http:// sends documents and signatures in clear: use https://, or set \
                 GUICHET_S3_ALLOW_HTTP for a test server on this machine",
            ));
        }
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(setting("GUICHET_S3_ENDPOINT", "expected an https:// URL"));
        }
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = settings.s3_region.as_deref() {
        builder = builder.with_region(region.trim());
    }
    match (&settings.s3_access_key_id, &settings.s3_secret_access_key) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id.trim())
                .with_secret_access_key(secret.trim());
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(setting(
                "GUICHET_S3_SECRET_ACCESS_KEY",
                "must be set with GUICHET_S3_ACCESS_KEY_ID",
            ));
        }
        (None, Some(_)) => {
            return Err(setting(
                "GUICHET_S3_ACCESS_KEY_ID",
                "must be set with GUICHET_S3_SECRET_ACCESS_KEY",
            ));
        }
    }
    let bucket = builder.build()?;
    let objects: Arc<dyn ObjectStore> = if location.prefix.is_empty() {
        Arc::new(bucket)
    } else {
        Arc::new(PrefixStore::new(bucket, location.prefix.as_str()))
    };
    Ok(DocumentStore::new(objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_settings() -> DocumentSettings {
        DocumentSettings {
            document_store: Some(S3Location::parse("s3://guichet-docs/prod").expect("a location")),
            s3_endpoint: Some("https://s3.example.org".into()),
            s3_region: Some("eu-west-3".into()),
            s3_access_key_id: Some("AKIDEXAMPLE".into()),
            s3_secret_access_key: Some("wJalrXUtnFEMI-secret".into()),
            s3_allow_http: false,
            ..DocumentSettings::default()
        }
    }

    #[test]
    fn locations_are_bucket_and_prefix() {
        for (text, bucket, prefix) in [
            ("s3://docs", "docs", ""),
            ("s3://docs/", "docs", ""),
            ("s3://docs/guichet/prod/", "docs", "guichet/prod"),
            (" s3://my.bucket-1/p ", "my.bucket-1", "p"),
        ] {
            assert_eq!(
                S3Location::parse(text),
                Ok(S3Location {
                    bucket: bucket.into(),
                    prefix: prefix.into()
                }),
                "{text}"
            );
        }
        for text in [
            "",
            "docs",
            "file:///tmp",
            "s3://",
            "s3://Docs",
            "s3://a",
            "s3://a_b/x",
        ] {
            let problem = S3Location::parse(text).expect_err(text);
            assert!(problem.starts_with("GUICHET_DOCUMENT_STORE: "), "{problem}");
        }
    }

    #[test]
    fn wrong_settings_are_refused_naming_the_variable() {
        let data_dir = std::env::temp_dir().join(format!("guichet-docs-{}", uuid::Uuid::new_v4()));
        let refused = |settings: DocumentSettings| match open(&settings, &data_dir) {
            Err(OpenError::Setting { variable, .. }) => variable,
            other => panic!("{other:?}"),
        };
        let mut plain = s3_settings();
        plain.s3_endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(refused(plain), "GUICHET_S3_ENDPOINT");
        let mut half = s3_settings();
        half.s3_secret_access_key = None;
        assert_eq!(refused(half), "GUICHET_S3_SECRET_ACCESS_KEY");
        let mut half = s3_settings();
        half.s3_access_key_id = None;
        assert_eq!(refused(half), "GUICHET_S3_ACCESS_KEY_ID");
        let mut stray = s3_settings();
        stray.document_store = None;
        assert_eq!(refused(stray), "GUICHET_S3_ENDPOINT");
        assert!(!data_dir.exists(), "nothing made for a refused setting");

        let mut test_server = s3_settings();
        test_server.s3_endpoint = Some("http://127.0.0.1:9000".into());
        test_server.s3_allow_http = true;
        open(&test_server, &data_dir).expect("http:// allowed for a test server");
        open(&s3_settings(), &data_dir).expect("S3");
        open(&DocumentSettings::default(), &data_dir).expect("the local folder");
        assert!(data_dir.join("documents").is_dir());
        let _ = std::fs::remove_dir_all(data_dir);
    }

    #[test]
    fn credentials_are_never_shown() {
        let debug = format!("{:?}", s3_settings());
        assert!(
            !debug.contains("AKIDEXAMPLE") && !debug.contains("wJalrXUtnFEMI"),
            "{debug}"
        );
        assert!(
            debug.contains("guichet-docs") && debug.contains("(set)"),
            "{debug}"
        );
    }
}
