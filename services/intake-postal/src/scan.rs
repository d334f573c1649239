//! What a scanning station sends, turned into page images; and what is read
//! off a page image: its QR code, and its text by OCR.
//!
//! PDF pages are rasterised with poppler's `pdftoppm`, text is read with
//! Tesseract (French); both are command-line tools the project's scripts
//! install (`.ci/run`, README). Every page is kept as a greyscale PNG.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use guichet_dossier::postal::OcrLine;
use image::{GrayImage, ImageFormat, Luma};

/// The resolution PDF pages are rasterised at: what mailroom scanners
/// produce, enough for the codes and for OCR.
pub const PDF_DPI: u32 = 200;
/// A page's long side is brought down to at most this many pixels before
/// looking for its code: a crooked 300 dpi page is halved, a 200 dpi one
/// kept whole (its canvas grows with the angle).
const DECODE_MAX_SIDE: u32 = 3600;
/// The most pixels a scanned page may have: an A4 page at 600 dpi has 35
/// million. Checked from the file's header, before anything is decoded: a
/// page decodes to a byte a pixel (grey) and more.
pub const MAX_PAGE_PIXELS: u64 = 40_000_000;
/// The most pages one batch may hold: a stack a station scans in one go,
/// read in a few minutes, so that no batch holds a reader for long.
pub const MAX_BATCH_PAGES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("file {index} ({media_type}): {problem}")]
    Unreadable {
        index: usize,
        media_type: String,
        problem: String,
    },
    #[error("file {index}: {media_type} is not accepted (application/pdf, image/tiff, image/png)")]
    MediaType { index: usize, media_type: String },
    #[error("{tool} is not installed on this postal service ({install})")]
    ToolMissing {
        tool: &'static str,
        install: &'static str,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why the pages of an image file cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("not a readable TIFF: {0}")]
    Tiff(#[from] tiff::TiffError),
    #[error("TIFF pages in {0:?} are not accepted: scan in 8-bit grey or colour")]
    Colour(tiff::ColorType),
    #[error("TIFF samples are not 8-bit")]
    Samples,
    #[error("{0}")]
    Png(#[from] image::ImageError),
    #[error(
        "page {page} is {width} × {height} pixels; at most {MAX_PAGE_PIXELS} pixels a page are accepted"
    )]
    TooLarge {
        page: usize,
        width: u32,
        height: u32,
    },
    #[error(
        "more pages than the {room} this batch still has room for (at most {MAX_BATCH_PAGES} a batch): split the stack"
    )]
    TooMany { room: usize },
}

fn check_page(page: usize, width: u32, height: u32) -> Result<(), PageError> {
    if u64::from(width) * u64::from(height) > MAX_PAGE_PIXELS {
        return Err(PageError::TooLarge {
            page,
            width,
            height,
        });
    }
    Ok(())
}

/// The page images (greyscale PNG) of one uploaded file.
/// `room`: how many pages the batch may still take; a file with more is
/// refused before its pages are decoded.
pub async fn pages_of(
    index: usize,
    media_type: &str,
    content: Vec<u8>,
    room: usize,
) -> Result<Vec<Vec<u8>>, ScanError> {
    let unreadable = |problem: String| ScanError::Unreadable {
        index,
        media_type: media_type.to_string(),
        problem,
    };
    match media_type {
        "application/pdf" => {
            // One page past the room is enough to know there are too many.
            let pages = pdf_pages_upto(&content, PDF_DPI, room.saturating_add(1))
                .await
                .map_err(|e| match e {
                    PdfError::Missing => ScanError::ToolMissing {
                        tool: "pdftoppm",
                        install: "apt-get install poppler-utils; or send PNG or TIFF pages",
                    },
                    PdfError::Failed(m) => unreadable(m),
                    // A PDF that takes this long is built to exhaust, or broken.
                    PdfError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        unreadable(format!("not a readable PDF (pdftoppm {e})"))
                    }
                    PdfError::Io(e) => ScanError::Io(e),
                })?;
            if pages.len() > room {
                return Err(unreadable(PageError::TooMany { room }.to_string()));
            }
            Ok(pages)
        }
        // A PNG page is kept as the station sent it, once its header reads
        // and says a size that can be decoded.
        "image/png" => {
            let (width, height) =
                image::ImageReader::with_format(Cursor::new(&content), ImageFormat::Png)
                    .into_dimensions()
                    .map_err(|e| unreadable(format!("not a readable PNG: {e}")))?;
            check_page(1, width, height).map_err(|e| unreadable(e.to_string()))?;
            if room == 0 {
                return Err(unreadable(PageError::TooMany { room }.to_string()));
            }
            Ok(vec![content])
        }
        "image/tiff" => tokio::task::spawn_blocking(move || tiff_png_pages(&content, room))
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .map_err(|e| unreadable(e.to_string())),
        other => Err(ScanError::MediaType {
            index,
            media_type: other.to_string(),
        }),
    }
}

/// Every page of a (possibly multi-page) TIFF as a greyscale PNG. The
/// pages' sizes and number are read from the file's directories first, and
/// nothing is decoded if one is too large or they are too many; then pages
/// are decoded one at a time, each encoded before the next is read.
fn tiff_png_pages(content: &[u8], room: usize) -> Result<Vec<Vec<u8>>, PageError> {
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(content))?;
    let mut count = 0;
    loop {
        count += 1;
        if count > room {
            return Err(PageError::TooMany { room });
        }
        let (width, height) = decoder.dimensions()?;
        check_page(count, width, height)?;
        if !decoder.more_images() {
            break;
        }
        decoder.next_image()?;
    }
    let mut pngs = Vec::with_capacity(count);
    tiff_pages(content, |page| {
        pngs.push(encode_png(&page)?);
        Ok(())
    })?;
    Ok(pngs)
}

/// Calls `each` with every page of a (possibly multi-page) TIFF in
/// greyscale, one page in memory at a time.
fn tiff_pages(
    content: &[u8],
    mut each: impl FnMut(GrayImage) -> Result<(), PageError>,
) -> Result<(), PageError> {
    use tiff::ColorType;
    use tiff::decoder::{Decoder, DecodingResult};
    let mut decoder = Decoder::new(Cursor::new(content))?;
    loop {
        let (w, h) = decoder.dimensions()?;
        let colour = decoder.colortype()?;
        let channels = match colour {
            ColorType::Gray(8) => 1,
            ColorType::GrayA(8) => 2,
            ColorType::RGB(8) => 3,
            ColorType::RGBA(8) => 4,
            other => return Err(PageError::Colour(other)),
        };
        let DecodingResult::U8(data) = decoder.read_image()? else {
            return Err(PageError::Samples);
        };
        let mut page = GrayImage::new(w, h);
        for (i, px) in page.pixels_mut().enumerate() {
            let s = &data
                .get(i * channels..i * channels + channels.min(3))
                .unwrap_or(&[255]);
            let grey = if s.len() >= 3 {
                (u32::from(s[0]) * 299 + u32::from(s[1]) * 587 + u32::from(s[2]) * 114) / 1000
            } else {
                u32::from(s[0])
            };
            *px = Luma([grey as u8]);
        }
        drop(data);
        each(page)?;
        if !decoder.more_images() {
            break;
        }
        decoder.next_image()?;
    }
    Ok(())
}

pub fn encode_png(img: &GrayImage) -> Result<Vec<u8>, PageError> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("pdftoppm is not installed")]
    Missing,
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Longest `pdftoppm` may take on one upload (a batch of many pages): below
/// the gateway's 300 s for uploads, so the station hears why.
const PDFTOPPM_WITHIN: std::time::Duration = std::time::Duration::from_secs(240);
/// Longest `tesseract` may take on one page (a few seconds as a rule).
const TESSERACT_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// `command`'s output, the child killed when it runs past `within` (or the
/// caller gives up): a tool stuck on one page must not stop its reader, or
/// live on after the request that started it.
async fn output_within(
    command: &mut tokio::process::Command,
    within: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    let running = command.stdin(Stdio::null()).kill_on_drop(true).output();
    tokio::time::timeout(within, running)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not finish within {within:?}"),
            ))
        })
}

/// A PDF's pages as greyscale PNG images at `dpi`.
pub async fn pdf_pages(pdf: &[u8], dpi: u32) -> Result<Vec<Vec<u8>>, PdfError> {
    pdf_pages_upto(pdf, dpi, usize::MAX).await
}

/// The same, up to page `last` at most.
pub async fn pdf_pages_upto(pdf: &[u8], dpi: u32, last: usize) -> Result<Vec<Vec<u8>>, PdfError> {
    let dir = ScratchDir::new()?;
    let input = dir.path().join("in.pdf");
    tokio::fs::write(&input, pdf).await?;
    let mut command = tokio::process::Command::new("pdftoppm");
    if last < usize::MAX {
        command.arg("-l").arg(last.to_string());
    }
    command
        .arg("-r")
        .arg(dpi.to_string())
        .args(["-gray", "-png"])
        .arg(&input)
        .arg(dir.path().join("page"));
    let output = output_within(&mut command, PDFTOPPM_WITHIN)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PdfError::Missing,
            _ => PdfError::Io(e),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(PdfError::Failed(format!(
            "not a readable PDF ({})",
            stderr.lines().next().unwrap_or("pdftoppm failed").trim()
        )));
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    // pdftoppm pads page numbers to the same width, so names sort in order.
    names.sort();
    let mut pages = Vec::with_capacity(names.len());
    for name in names {
        pages.push(tokio::fs::read(name).await?);
    }
    if pages.is_empty() {
        return Err(PdfError::Failed("the PDF has no pages".into()));
    }
    Ok(pages)
}

/// The text of the QR code on a page image, if one can be read. Tries the
/// page as it is, then once more after a median filter, which removes the
/// speckle of a dusty scanner glass; a page without a code costs two tries.
pub fn find_code(png: &[u8]) -> Option<String> {
    let page = image::load_from_memory_with_format(png, ImageFormat::Png)
        .ok()?
        .into_luma8();
    let page = shrink(&page, DECODE_MAX_SIDE);
    decode_qr(&page).or_else(|| decode_qr(&median3(&page)))
}

fn decode_qr(img: &GrayImage) -> Option<String> {
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        img.width() as usize,
        img.height() as usize,
        |x, y| img.get_pixel(x as u32, y as u32).0[0],
    );
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// Scales down by a whole factor (averaging each block) until the long side
/// fits `max_side`; averaging also smooths the scanner's noise.
pub fn shrink(img: &GrayImage, max_side: u32) -> GrayImage {
    let long = img.width().max(img.height());
    let factor = long.div_ceil(max_side).max(1);
    if factor == 1 {
        return img.clone();
    }
    let (w, h) = (img.width() / factor, img.height() / factor);
    GrayImage::from_fn(w, h, |x, y| {
        let mut sum = 0u32;
        for dy in 0..factor {
            for dx in 0..factor {
                sum += u32::from(img.get_pixel(x * factor + dx, y * factor + dy).0[0]);
            }
        }
        Luma([(sum / (factor * factor)) as u8])
    })
}

fn median3(img: &GrayImage) -> GrayImage {
    let (w, h) = img.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let mut v = [0u8; 9];
        let mut n = 0;
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let xx = (i64::from(x) + dx).clamp(0, i64::from(w) - 1) as u32;
                let yy = (i64::from(y) + dy).clamp(0, i64::from(h) - 1) as u32;
                v[n] = img.get_pixel(xx, yy).0[0];
                n += 1;
            }
        }
        v.sort_unstable();
        Luma([v[4]])
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error(
        "tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-fra): \
         the page is kept for keying without its text"
    )]
    Missing,
    #[error("tesseract failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The page's text, line by line with Tesseract's confidence, read as French.
pub async fn ocr(png: &[u8]) -> Result<Vec<OcrLine>, OcrError> {
    let dir = ScratchDir::new()?;
    let input = dir.path().join("page.png");
    tokio::fs::write(&input, png).await?;
    let mut command = tokio::process::Command::new("tesseract");
    command
        .arg(&input)
        .args(["stdout", "-l", "fra", "--psm", "3", "tsv"])
        // One thread per page: the service reads several pages at once.
        .env("OMP_THREAD_LIMIT", "1");
    let output = output_within(&mut command, TESSERACT_WITHIN)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OcrError::Missing,
            _ => OcrError::Io(e),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(OcrError::Failed(stderr.trim().to_string()));
    }
    Ok(lines_of_tsv(&String::from_utf8_lossy(&output.stdout)))
}

/// Tesseract's TSV (one row per word) grouped into lines, each with the mean
/// confidence of its words, from 0 to 1.
pub fn lines_of_tsv(tsv: &str) -> Vec<OcrLine> {
    // Words are numbered by page, block, paragraph and line.
    type LineKey = (u32, u32, u32, u32);
    let mut lines: Vec<(LineKey, Vec<(String, f64)>)> = Vec::new();
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let [level, page, block, par, line, _, _, _, _, _, conf, text] = cols[..] else {
            continue;
        };
        let (Ok(5), Ok(conf)) = (level.parse::<u32>(), conf.parse::<f64>()) else {
            continue;
        };
        if text.trim().is_empty() || conf < 0.0 {
            continue;
        }
        let n = |s: &str| s.parse::<u32>().unwrap_or(0);
        let key = (n(page), n(block), n(par), n(line));
        match lines.last_mut() {
            Some((k, words)) if *k == key => words.push((text.to_string(), conf)),
            _ => lines.push((key, vec![(text.to_string(), conf)])),
        }
    }
    lines
        .into_iter()
        .map(|(_, words)| OcrLine {
            text: words
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            confidence: words.iter().map(|(_, c)| c).sum::<f64>() / words.len() as f64 / 100.0,
        })
        .collect()
}

/// A folder for one external tool run, removed afterwards.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("guichet-scan-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool that runs past its bound ends with `TimedOut`, and is killed:
    /// the file it would write after a second never appears.
    #[tokio::test]
    async fn a_tool_past_its_bound_is_stopped_and_killed() {
        let dir = ScratchDir::new().unwrap();
        let late = dir.path().join("late");
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("sleep 1; touch '{}'", late.display()));
        let ran = output_within(&mut command, std::time::Duration::from_millis(200)).await;
        let e = ran.expect_err("stopped at its bound");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(!late.exists(), "the tool was killed, not left running");
    }

    #[test]
    fn tsv_rows_become_lines_with_their_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
            4\t1\t1\t1\t1\t0\t0\t0\t9\t9\t-1\t\n\
            5\t1\t1\t1\t1\t1\t0\t0\t9\t9\t90\tNom\n\
            5\t1\t1\t1\t1\t2\t0\t0\t9\t9\t80\t:\n\
            5\t1\t1\t1\t1\t3\t0\t0\t9\t9\t70\tBENALI\n\
            5\t1\t1\t1\t2\t1\t0\t0\t9\t9\t50\tVille\n\
            5\t1\t1\t1\t2\t2\t0\t0\t9\t9\t-1\t \n";
        let lines = lines_of_tsv(tsv);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "Nom : BENALI");
        assert!((lines[0].confidence - 0.8).abs() < 1e-9);
        assert_eq!(lines[1].text, "Ville");
    }

    #[test]
    fn shrinking_averages_blocks() {
        let img = GrayImage::from_fn(4, 2, |x, _| Luma([if x % 2 == 0 { 0 } else { 200 }]));
        let small = shrink(&img, 2);
        assert_eq!(small.dimensions(), (2, 1));
        assert_eq!(small.get_pixel(0, 0).0[0], 100);
    }
}
