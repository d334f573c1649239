//! `guichet verify FILE`: is this receipt or attestation genuine? Offline,
//! with only the published public keys: the signed 2D code is read from the
//! PDF's pages (rendered by `pdftoppm`) or from a scan or photo (PNG,
//! JPEG), its signature checked, then the printed text (`pdftotext`, or
//! Tesseract's reading of the image) compared with what the code says, so
//! a paper whose visible text was edited is caught and the field named.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use guichet_kit::seal::{KeySet, Reading, Sealed, not_printed};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The document: a PDF, or a scan or photo of the paper (PNG, JPEG).
    pub file: PathBuf,
    /// The published keys: a JWKS file, or its URL. Default: the gateway's
    /// /.well-known/jwks.json at GUICHET_PUBLIC_URL (or this machine's).
    #[arg(long)]
    pub keys: Option<String>,
    /// The answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The code checks and the paper prints what it says.
    Genuine {
        kind: String,
        kid: String,
        fields: Vec<(String, String)>,
    },
    /// The code checks, but the printed text differs from it on these
    /// fields (the signed value of each is given).
    Altered {
        kind: String,
        kid: String,
        fields: Vec<(String, String)>,
    },
    /// The code does not check (altered, forged, or an unknown key).
    Refused { reason: String },
    /// No Guichet code could be read on the document.
    NoCode,
}

impl Verdict {
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Genuine { .. } => 0,
            Verdict::Altered { .. } | Verdict::Refused { .. } => 1,
            Verdict::NoCode => 2,
        }
    }
}

/// Checks the code texts read on a document against its printed text.
pub fn judge(keys: &KeySet, codes: &[String], printed: &str, reading: Reading) -> Verdict {
    let ours: Vec<&String> = codes
        .iter()
        .filter(|c| c.starts_with(guichet_kit::seal::FORMAT))
        .collect();
    let Some(code) = ours.first() else {
        return Verdict::NoCode;
    };
    let sealed: Sealed = match keys.open(code) {
        Ok(s) => s,
        Err(e) => {
            return Verdict::Refused {
                reason: e.to_string(),
            };
        }
    };
    let missing: Vec<(String, String)> = not_printed(&sealed, printed, reading)
        .into_iter()
        .map(|name| {
            (
                name.to_string(),
                sealed.field(name).unwrap_or_default().to_string(),
            )
        })
        .collect();
    if missing.is_empty() {
        Verdict::Genuine {
            kind: sealed.kind,
            kid: sealed.kid,
            fields: sealed.fields,
        }
    } else {
        Verdict::Altered {
            kind: sealed.kind,
            kid: sealed.kid,
            fields: missing,
        }
    }
}

pub async fn run(args: VerifyArgs, public_url: Option<&str>) -> anyhow::Result<u8> {
    let keys = read_keys(args.keys.as_deref(), public_url).await?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (codes, printed, reading) = if bytes.starts_with(b"%PDF-") {
        let (codes, printed) = read_pdf(&args.file)?;
        (codes, printed, Reading::Exact)
    } else {
        let (codes, printed) = read_image(&args.file, &bytes)?;
        (codes, printed, Reading::Ocr)
    };
    let verdict = judge(&keys, &codes, &printed, reading);
    if args.json {
        crate::print(&serde_json::to_string_pretty(&verdict)?)?;
    } else {
        crate::print(&verdict_text(&verdict))?;
    }
    Ok(verdict.exit_code())
}

/// The verdict as a person reads it: a headline, then one line per field.
fn verdict_text(v: &Verdict) -> String {
    let (headline, lines): (String, Vec<String>) = match v {
        Verdict::Genuine { kind, kid, fields } => (
            format!(
                "GENUINE: a {kind} signed by Guichet (key {kid}), and the paper prints what it signed:"
            ),
            fields
                .iter()
                .map(|(name, value)| format!("  {name}: {value}"))
                .collect(),
        ),
        Verdict::Altered { kind, kid, fields } => (
            format!(
                "ALTERED: the {kind}'s code is genuine (key {kid}) but the printed text does not say what it signed:"
            ),
            fields
                .iter()
                .map(|(name, value)| format!("  {name}: signed as \"{value}\", not printed so"))
                .collect(),
        ),
        Verdict::Refused { reason } => (format!("REFUSED: {reason}"), Vec::new()),
        Verdict::NoCode => (
            "NO CODE: no Guichet signed code could be read on this document".to_string(),
            Vec::new(),
        ),
    };
    std::iter::once(headline)
        .chain(lines)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn read_keys(given: Option<&str>, public_url: Option<&str>) -> anyhow::Result<KeySet> {
    let source = match given {
        Some(s) => s.to_string(),
        None => format!(
            "{}/.well-known/jwks.json",
            public_url
                .unwrap_or("http://127.0.0.1:8080")
                .trim_end_matches('/')
        ),
    };
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        reqwest::get(&source)
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot fetch the published keys at {source}"))?
            .text()
            .await?
    } else {
        std::fs::read_to_string(&source)
            .with_context(|| format!("cannot read the published keys at {source}"))?
    };
    Ok(KeySet::from_jwks(&text)?)
}

/// Every page rendered at 200 dpi (300 when no code is found there) and
/// read for codes; the text by pdftotext.
fn read_pdf(file: &Path) -> anyhow::Result<(Vec<String>, String)> {
    // rqrr misses some codes at one resolution that it reads at another
    // (a module's edge falling between pixels): a paper whose code is not
    // found at 200 dpi is read once more at 300 before "no code" is said.
    let mut codes = codes_at(file, 200)?;
    if codes.is_empty() {
        codes = codes_at(file, 300)?;
    }
    let text = Command::new("pdftotext")
        .arg(file)
        .arg("-")
        .output()
        .context("pdftotext (poppler-utils) is needed to read a PDF")?;
    Ok((codes, String::from_utf8_lossy(&text.stdout).into_owned()))
}

/// The codes read on the pages of the PDF `file` drawn at `dpi`.
fn codes_at(file: &Path, dpi: u32) -> anyhow::Result<Vec<String>> {
    let dir = std::env::temp_dir().join(format!("guichet-verify-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let prefix = dir.join("page");
    let rendered = Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-png"])
        .arg(file)
        .arg(&prefix)
        .status()
        .context("pdftoppm (poppler-utils) is needed to read a PDF")?;
    let mut codes = Vec::new();
    if rendered.success() {
        let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        pages.sort();
        for page in pages {
            let png = std::fs::read(&page)?;
            codes.extend(guichet_intake_postal::scan::find_code(&png));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !rendered.success() {
        bail!("{} is not a PDF pdftoppm can read", file.display());
    }
    Ok(codes)
}

/// A scan or photo: its code, and its text read by Tesseract.
fn read_image(file: &Path, bytes: &[u8]) -> anyhow::Result<(Vec<String>, String)> {
    let image = image::load_from_memory(bytes).with_context(|| {
        format!(
            "{} is neither a PDF nor a PNG or JPEG image",
            file.display()
        )
    })?;
    let mut png = Vec::new();
    image
        .to_luma8()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let codes = guichet_intake_postal::scan::find_code(&png)
        .into_iter()
        .collect();
    let text = Command::new("tesseract")
        .arg(file)
        .args(["-", "-l", "fra"])
        .output()
        .context("tesseract (tesseract-ocr, tesseract-ocr-fra) is needed to read an image")?;
    Ok((codes, String::from_utf8_lossy(&text.stdout).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_reads_as_a_headline_then_one_line_per_field() {
        let fields = vec![
            ("reference".to_string(), "W26-AAAA-BBBB-C".to_string()),
            ("holder".to_string(), "Samira BENALI".to_string()),
        ];
        for (verdict, text) in [
            (
                Verdict::Genuine {
                    kind: "attestation".into(),
                    kid: "k1".into(),
                    fields: fields.clone(),
                },
                "GENUINE: a attestation signed by Guichet (key k1), and the paper prints what it signed:\n  reference: W26-AAAA-BBBB-C\n  holder: Samira BENALI",
            ),
            (
                Verdict::Altered {
                    kind: "receipt".into(),
                    kid: "k2".into(),
                    fields: fields[..1].to_vec(),
                },
                "ALTERED: the receipt's code is genuine (key k2) but the printed text does not say what it signed:\n  reference: signed as \"W26-AAAA-BBBB-C\", not printed so",
            ),
            (
                Verdict::Refused {
                    reason: "unknown key".into(),
                },
                "REFUSED: unknown key",
            ),
            (
                Verdict::NoCode,
                "NO CODE: no Guichet signed code could be read on this document",
            ),
        ] {
            assert_eq!(verdict_text(&verdict), text);
        }
    }

    #[test]
    fn a_verdict_for_each_kind_of_paper() {
        let path = std::env::temp_dir()
            .join(format!("guichet-verify-test-{:x}", rand::random::<u64>()))
            .join("keys.json");
        let keys = KeySet::load_or_create(&path, chrono::Utc::now()).expect("keys");
        let fields = vec![
            ("holder".to_string(), "Samira BENALI".to_string()),
            ("valid_until".to_string(), "28/02/2027".to_string()),
        ];
        let code = keys.seal("attestation", fields.clone()).expect("sealed");
        let public = KeySet::from_jwks(&keys.jwks().to_string()).expect("published");
        let printed = "Samira BENALI ... jusqu'au 28/02/2027";
        assert!(matches!(
            judge(
                &public,
                std::slice::from_ref(&code),
                printed,
                Reading::Exact
            ),
            Verdict::Genuine { .. }
        ));
        assert_eq!(
            judge(
                &public,
                std::slice::from_ref(&code),
                "Samira BENALI jusqu'au 28/02/2028",
                Reading::Exact
            ),
            Verdict::Altered {
                kind: "attestation".into(),
                kid: public.open(&code).expect("checks").kid,
                fields: vec![("valid_until".into(), "28/02/2027".into())],
            }
        );
        let forged = code.replace("28/02/2027", "28/02/2028");
        assert!(matches!(
            judge(
                &public,
                &[forged],
                "Samira BENALI jusqu'au 28/02/2028",
                Reading::Exact
            ),
            Verdict::Refused { .. }
        ));
        assert_eq!(
            judge(&public, &["FORM|x".into()], printed, Reading::Exact),
            Verdict::NoCode
        );
        let _ = std::fs::remove_dir_all(path.parent().expect("a folder"));
    }
}
