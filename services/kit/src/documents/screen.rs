//! What an uploaded file is, decided from its bytes as they stream past,
//! never from its name or the type its sender declared: PDF, JPEG or PNG,
//! an image whose size would not blow up once decoded, a PDF with no
//! active content (scripts, launch actions, embedded files) and not too
//! many pages. Pure: no I/O, fed one chunk at a time, memory bounded
//! whatever the file's size.

use flate2::{Decompress, FlushDecompress, Status};

/// What an upload may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLimits {
    /// Pixels of an image (width × height): a decoded page costs about
    /// 4 bytes a pixel.
    pub max_pixels: u64,
    /// Pages of a PDF.
    pub max_pages: u32,
    /// Bytes a PDF's compressed streams may inflate to, in all, per byte
    /// of the file: past it the file is a compression bomb.
    pub max_inflate_ratio: u64,
}

impl Default for ScreenLimits {
    fn default() -> Self {
        Self {
            // An A4 page scanned at 600 dpi is 35 million pixels.
            max_pixels: 40_000_000,
            max_pages: 100,
            max_inflate_ratio: 100,
        }
    }
}

/// The types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Pdf,
    Jpeg,
    Png,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Pdf => "application/pdf",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
        }
    }
}

/// What a file was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screened {
    pub media_type: MediaType,
    /// Pages: 1 for an image.
    pub pages: u32,
}

/// Why a file is refused, in words its sender can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the file is empty")]
    Empty,
    #[error("the content is {found}, not a PDF, JPEG or PNG (whatever its name says)")]
    NotAccepted { found: &'static str },
    #[error("the image is {width} × {height} pixels; at most {limit} pixels are accepted")]
    ImageTooLarge { width: u32, height: u32, limit: u64 },
    #[error("the image cannot be read: {0}")]
    BadImage(&'static str),
    #[error("the PDF holds active content ({0}), which is not accepted")]
    ActiveContent(&'static str),
    #[error("the PDF is encrypted, so its content cannot be checked")]
    Encrypted,
    #[error("the PDF has {pages} pages or more; at most {limit} are accepted")]
    TooManyPages { pages: u32, limit: u32 },
    #[error("the PDF has no page")]
    NoPage,
    #[error("the PDF's compressed content inflates more than {ratio} times its size")]
    CompressionBomb { ratio: u64 },
}

impl Refusal {
    /// A short stable code for counting refusals.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty",
            Refusal::NotAccepted { .. } => "type",
            Refusal::ImageTooLarge { .. } => "image_too_large",
            Refusal::BadImage(_) => "bad_image",
            Refusal::ActiveContent(_) => "active_content",
            Refusal::Encrypted => "encrypted",
            Refusal::TooManyPages { .. } | Refusal::NoPage => "pages",
            Refusal::CompressionBomb { .. } => "compression_bomb",
        }
    }
}

/// Bytes looked at before the type is known.
const SNIFF: usize = 8;

/// Screens a file fed in chunks.
#[derive(Debug)]
pub struct Screen {
    limits: ScreenLimits,
    head: Vec<u8>,
    kind: Option<Kind>,
    size: u64,
}

#[derive(Debug)]
enum Kind {
    Pdf(Box<PdfScan>),
    Jpeg(JpegScan),
    Png(PngScan),
}

impl Screen {
    pub fn new(limits: ScreenLimits) -> Self {
        Self {
            limits,
            head: Vec::with_capacity(SNIFF),
            kind: None,
            size: 0,
        }
    }

    /// Looks at the next chunk; refuses as soon as the file cannot be
    /// accepted, so the rest need not be read.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Refusal> {
        self.size += chunk.len() as u64;
        if self.kind.is_none() {
            let wanted = SNIFF - self.head.len();
            let taken = wanted.min(chunk.len());
            self.head.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
            if self.head.len() < SNIFF {
                return Ok(());
            }
            let kind = sniff(&self.head)?;
            let head = std::mem::take(&mut self.head);
            self.kind = Some(kind);
            self.feed_kind(&head)?;
        }
        self.feed_kind(chunk)
    }

    fn feed_kind(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        let limits = self.limits;
        match self.kind.as_mut() {
            Some(Kind::Pdf(scan)) => scan.feed(chunk, &limits),
            Some(Kind::Jpeg(scan)) => scan.feed(chunk, &limits),
            Some(Kind::Png(scan)) => scan.feed(chunk, &limits),
            None => Ok(()),
        }
    }

    /// The verdict once the whole file was fed.
    pub fn finish(mut self) -> Result<Screened, Refusal> {
        if self.size == 0 {
            return Err(Refusal::Empty);
        }
        if self.kind.is_none() {
            // Shorter than the bytes sniffed: still named by what it starts with.
            self.kind = Some(sniff(&self.head)?);
        }
        let limits = self.limits;
        match self.kind {
            Some(Kind::Pdf(scan)) => scan.finish(self.size, &limits),
            Some(Kind::Jpeg(scan)) => scan.finish(),
            Some(Kind::Png(scan)) => scan.finish(),
            None => Err(Refusal::Empty),
        }
    }
}

/// The type from the first bytes.
fn sniff(head: &[u8]) -> Result<Kind, Refusal> {
    let found = if head.starts_with(b"%PDF-") {
        return Ok(Kind::Pdf(Box::default()));
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Kind::Jpeg(JpegScan::default()));
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Kind::Png(PngScan::default()));
    } else if head.starts_with(b"MZ") {
        "a Windows program"
    } else if head.starts_with(b"\x7fELF") {
        "a Linux program"
    } else if head.starts_with(&[0xCF, 0xFA, 0xED, 0xFE])
        || head.starts_with(&[0xCA, 0xFE, 0xBA, 0xBE])
    {
        "a macOS program"
    } else if head.starts_with(b"#!") {
        "a script"
    } else if head.starts_with(b"PK\x03\x04") {
        "a ZIP archive (or an office document)"
    } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        "a TIFF image"
    } else if head.starts_with(b"GIF8") {
        "a GIF image"
    } else if head.starts_with(b"RIFF") {
        "a RIFF file (WebP, audio or video)"
    } else if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        "an old office document"
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        "text"
    } else {
        "of an unknown type"
    };
    Err(Refusal::NotAccepted { found })
}

fn check_pixels(width: u32, height: u32, limits: &ScreenLimits) -> Result<(), Refusal> {
    if width == 0 || height == 0 {
        return Err(Refusal::BadImage("a side of zero pixels"));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Refusal::ImageTooLarge {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// A PNG: its size is in the header chunk, which must come first.
#[derive(Debug, Default)]
struct PngScan {
    head: Vec<u8>,
    sized: bool,
}

/// Signature (8), chunk length (4), "IHDR" (4), width (4), height (4).
const PNG_HEAD: usize = 24;

impl PngScan {
    fn feed(&mut self, chunk: &[u8], limits: &ScreenLimits) -> Result<(), Refusal> {
        if self.sized {
            return Ok(());
        }
        let taken = (PNG_HEAD - self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..taken]);
        if self.head.len() < PNG_HEAD {
            return Ok(());
        }
        if &self.head[12..16] != b"IHDR" {
            return Err(Refusal::BadImage(
                "the PNG does not start with its header chunk",
            ));
        }
        let width =
            u32::from_be_bytes([self.head[16], self.head[17], self.head[18], self.head[19]]);
        let height =
            u32::from_be_bytes([self.head[20], self.head[21], self.head[22], self.head[23]]);
        check_pixels(width, height, limits)?;
        self.sized = true;
        Ok(())
    }

    fn finish(self) -> Result<Screened, Refusal> {
        if !self.sized {
            return Err(Refusal::BadImage("the PNG ends before its header"));
        }
        Ok(Screened {
            media_type: MediaType::Png,
            pages: 1,
        })
    }
}

/// A JPEG: segments are walked to the frame header (SOF), which holds the
/// size; the segments before it are skipped without being kept.
#[derive(Debug, Default)]
struct JpegScan {
    /// Bytes of the current marker or header being gathered.
    pending: Vec<u8>,
    /// Bytes of a segment still to skip.
    skip: usize,
    /// SOI read (the first two bytes).
    started: bool,
    sized: bool,
}

impl JpegScan {
    fn feed(&mut self, mut chunk: &[u8], limits: &ScreenLimits) -> Result<(), Refusal> {
        while !self.sized && !chunk.is_empty() {
            if !self.started {
                let taken = (2 - self.pending.len()).min(chunk.len());
                self.pending.extend_from_slice(&chunk[..taken]);
                chunk = &chunk[taken..];
                if self.pending.len() == 2 {
                    self.pending.clear();
                    self.started = true;
                }
                continue;
            }
            if self.skip > 0 {
                let skipped = self.skip.min(chunk.len());
                self.skip -= skipped;
                chunk = &chunk[skipped..];
                continue;
            }
            // A marker (FF xx), its length (2), and for a frame header
            // precision (1), height (2), width (2).
            let taken = (9 - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
            if self.pending.len() < 4 {
                continue;
            }
            if self.pending[0] != 0xFF {
                return Err(Refusal::BadImage("the JPEG's segments are broken"));
            }
            let marker = self.pending[1];
            if marker == 0xFF {
                // Fill bytes before a marker.
                self.pending.remove(0);
                continue;
            }
            if marker == 0xD9 || marker == 0xDA {
                return Err(Refusal::BadImage("the JPEG has no frame header"));
            }
            let length = usize::from(u16::from_be_bytes([self.pending[2], self.pending[3]]));
            if length < 2 {
                return Err(Refusal::BadImage("the JPEG's segments are broken"));
            }
            let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if is_frame {
                if self.pending.len() < 9 {
                    continue;
                }
                let height = u32::from(u16::from_be_bytes([self.pending[5], self.pending[6]]));
                let width = u32::from(u16::from_be_bytes([self.pending[7], self.pending[8]]));
                check_pixels(width, height, limits)?;
                self.sized = true;
                return Ok(());
            }
            // Any other segment: skip what follows its length, some of
            // which may already be in `pending`.
            let gathered = self.pending.len() - 4;
            let rest = length - 2;
            if gathered > rest {
                let extra = self.pending.split_off(4 + rest);
                self.pending.clear();
                // The bytes gathered past this segment start the next one.
                self.pending.extend_from_slice(&extra);
            } else {
                self.skip = rest - gathered;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Screened, Refusal> {
        if !self.sized {
            return Err(Refusal::BadImage("the JPEG ends before its frame header"));
        }
        Ok(Screened {
            media_type: MediaType::Jpeg,
            pages: 1,
        })
    }
}

/// Names that make a PDF do something rather than show something.
const ACTIVE: [(&[u8], &str); 9] = [
    (b"JavaScript", "JavaScript"),
    (b"JS", "JavaScript"),
    (b"Launch", "a launch action"),
    (b"EmbeddedFile", "an embedded file"),
    (b"EmbeddedFiles", "embedded files"),
    (b"RichMedia", "rich media"),
    (b"SubmitForm", "a form submission"),
    (b"ImportData", "a data import"),
    (b"XFA", "an XFA form"),
];

/// The longest name kept: every name that matters is shorter; a longer one
/// is kept cut, which matches none of them.
const NAME_MAX: usize = 32;

/// Reads the names (`/Type`, `/JavaScript`, with `#xx` escapes undone) of
/// PDF syntax, and the keywords that start and end streams.
#[derive(Debug, Default)]
struct Lexer {
    state: LexState,
    token: Vec<u8>,
    /// The pending `#xx` escape's digits.
    escape: Vec<u8>,
    /// The last name was `/Type`: a `/Page` right after it is a page.
    after_type: bool,
    /// Depth of a literal string `( … )`, and a backslash just read.
    string_depth: u32,
    string_escape: bool,
    /// Inside a `%` comment.
    comment: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum LexState {
    #[default]
    Between,
    Name,
    Keyword,
}

/// What the lexer saw that the scan acts on.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Page,
    Active(&'static str),
    Encrypt,
    Stream,
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0')
}

impl Lexer {
    /// Reads `byte`; says what it completed, if anything.
    fn byte(&mut self, b: u8) -> Option<Seen> {
        if self.comment {
            if b == b'\r' || b == b'\n' {
                self.comment = false;
            }
            return None;
        }
        if self.string_depth > 0 {
            if self.string_escape {
                self.string_escape = false;
            } else if b == b'\\' {
                self.string_escape = true;
            } else if b == b'(' {
                self.string_depth += 1;
            } else if b == b')' {
                self.string_depth -= 1;
            }
            return None;
        }
        let mut seen = None;
        let ends_token = is_space(b) || is_delimiter(b);
        if ends_token && self.state != LexState::Between {
            seen = self.end_token();
        }
        if self.state == LexState::Name && b == b'#' {
            self.escape.push(b'#');
            return seen;
        }
        if !self.escape.is_empty() {
            self.escape.push(b);
            if self.escape.len() == 3 {
                let hex = std::str::from_utf8(&self.escape[1..]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => self.push_token(decoded),
                    // Not an escape after all: kept as written.
                    None => {
                        let raw = std::mem::take(&mut self.escape);
                        raw.into_iter().for_each(|r| self.push_token(r));
                    }
                }
                self.escape.clear();
            }
            return seen;
        }
        match b {
            b'/' => {
                self.state = LexState::Name;
                self.token.clear();
            }
            b'%' => self.comment = true,
            b'(' => self.string_depth = 1,
            _ if ends_token => {}
            _ => {
                if self.state == LexState::Between {
                    self.state = LexState::Keyword;
                    self.token.clear();
                }
                self.push_token(b);
            }
        }
        seen
    }

    fn push_token(&mut self, b: u8) {
        if self.token.len() < NAME_MAX {
            self.token.push(b);
        }
    }

    fn end_token(&mut self) -> Option<Seen> {
        let state = std::mem::take(&mut self.state);
        self.escape.clear();
        let token = self.token.as_slice();
        match state {
            LexState::Name => {
                let page = self.after_type && token == b"Page";
                self.after_type = token == b"Type";
                if page {
                    return Some(Seen::Page);
                }
                if token == b"Encrypt" {
                    return Some(Seen::Encrypt);
                }
                ACTIVE
                    .iter()
                    .find(|(name, _)| *name == token)
                    .map(|(_, what)| Seen::Active(what))
            }
            LexState::Keyword => {
                self.after_type = false;
                (token == b"stream").then_some(Seen::Stream)
            }
            LexState::Between => None,
        }
    }

    /// Ends the token in progress (at the end of the data).
    fn flush(&mut self) -> Option<Seen> {
        self.end_token()
    }
}

/// A PDF's scan: the file's own syntax, and the content of its compressed
/// streams (object streams hide dictionaries there).
#[derive(Debug, Default)]
struct PdfScan {
    outer: Lexer,
    stream: StreamState,
    inner: Lexer,
    inflater: Option<Decompress>,
    inflated: u64,
    /// Bytes of the file read so far.
    read: u64,
    pages: u32,
    /// The last bytes read in a stream, to find `endstream`.
    tail: Vec<u8>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum StreamState {
    #[default]
    Outside,
    /// After `stream`: its end of line.
    Start,
    /// Inside a stream that inflates.
    Inflating,
    /// Inside a stream that does not (an image), or has ended.
    Opaque,
}

const ENDSTREAM: &[u8] = b"endstream";

impl PdfScan {
    fn feed(&mut self, chunk: &[u8], limits: &ScreenLimits) -> Result<(), Refusal> {
        self.read += chunk.len() as u64;
        let mut i = 0;
        while i < chunk.len() {
            match self.stream {
                StreamState::Outside => {
                    let b = chunk[i];
                    let seen = self.outer.byte(b);
                    i += 1;
                    match seen {
                        // The keyword is followed by its end of line, which
                        // ended the token: the data starts after it.
                        Some(Seen::Stream) if b == b'\n' => {
                            self.start_stream(chunk.get(i).copied())
                        }
                        Some(Seen::Stream) if b == b'\r' => self.stream = StreamState::Start,
                        // The word elsewhere than before a stream's data.
                        Some(Seen::Stream) | None => {}
                        Some(seen) => self.act(seen, limits)?,
                    }
                }
                StreamState::Start => {
                    let b = chunk[i];
                    if b == b'\n' {
                        i += 1;
                    }
                    // A lone carriage return is taken as the end of line.
                    self.start_stream(chunk.get(i).copied());
                }
                StreamState::Inflating | StreamState::Opaque => {
                    let used = self.in_stream(&chunk[i..], limits)?;
                    i += used;
                }
            }
        }
        Ok(())
    }

    fn start_stream(&mut self, first: Option<u8>) {
        self.tail.clear();
        // zlib data starts with 0x78 (deflate, 32 KiB window) in practice;
        // the first byte may not have arrived yet: try, and fall back.
        if first.is_none_or(|b| b == 0x78) {
            self.inflater = Some(Decompress::new(true));
            self.inner = Lexer::default();
            self.stream = StreamState::Inflating;
        } else {
            self.stream = StreamState::Opaque;
        }
    }

    /// Reads stream bytes up to and including `endstream`; returns how many
    /// bytes of `data` it used.
    fn in_stream(&mut self, data: &[u8], limits: &ScreenLimits) -> Result<usize, Refusal> {
        // Where `endstream` ends in `data`, looking across the chunk edge.
        let mut end = None;
        for (at, &b) in data.iter().enumerate() {
            self.tail.push(b);
            if self.tail.len() > ENDSTREAM.len() {
                self.tail.remove(0);
            }
            if self.tail == ENDSTREAM {
                end = Some(at + 1);
                break;
            }
        }
        let body = match end {
            Some(e) => &data[..e.saturating_sub(ENDSTREAM.len())],
            None => data,
        };
        if self.stream == StreamState::Inflating {
            self.inflate(body, limits)?;
        }
        match end {
            Some(e) => {
                self.inflater = None;
                if let Some(seen) = self.inner.flush() {
                    self.act(seen, limits)?;
                }
                self.stream = StreamState::Outside;
                self.outer = Lexer {
                    after_type: false,
                    ..Lexer::default()
                };
                Ok(e)
            }
            None => Ok(data.len()),
        }
    }

    fn inflate(&mut self, mut input: &[u8], limits: &ScreenLimits) -> Result<(), Refusal> {
        let mut out = [0u8; 16 * 1024];
        while !input.is_empty() {
            let Some(inflater) = self.inflater.as_mut() else {
                return Ok(());
            };
            let before_in = inflater.total_in();
            let before_out = inflater.total_out();
            let status = inflater.decompress(input, &mut out, FlushDecompress::None);
            let used = (inflater.total_in() - before_in) as usize;
            let made = (inflater.total_out() - before_out) as usize;
            input = &input[used..];
            self.inflated += made as u64;
            for &b in &out[..made] {
                if let Some(seen) = self.inner.byte(b) {
                    self.act(seen, limits)?;
                }
            }
            match status {
                Ok(Status::Ok) if used > 0 || made > 0 => {}
                // Done, or data that is not zlib: the rest of the stream
                // is only looked through for its end.
                _ => {
                    self.stream = StreamState::Opaque;
                    self.inflater = None;
                }
            }
            // Checked against the bytes read so far, so a bomb is stopped
            // as it inflates, not after.
            let bound = limits
                .max_inflate_ratio
                .saturating_mul(self.read.max(64 * 1024));
            if self.inflated > bound {
                return Err(Refusal::CompressionBomb {
                    ratio: limits.max_inflate_ratio,
                });
            }
        }
        Ok(())
    }

    fn act(&mut self, seen: Seen, limits: &ScreenLimits) -> Result<(), Refusal> {
        match seen {
            Seen::Page => {
                self.pages += 1;
                if self.pages > limits.max_pages {
                    return Err(Refusal::TooManyPages {
                        pages: self.pages,
                        limit: limits.max_pages,
                    });
                }
                Ok(())
            }
            Seen::Active(what) => Err(Refusal::ActiveContent(what)),
            Seen::Encrypt => Err(Refusal::Encrypted),
            Seen::Stream => Ok(()),
        }
    }

    fn finish(mut self, _size: u64, limits: &ScreenLimits) -> Result<Screened, Refusal> {
        if let Some(seen) = self.outer.flush() {
            self.act(seen, limits)?;
        }
        if self.pages == 0 {
            return Err(Refusal::NoPage);
        }
        Ok(Screened {
            media_type: MediaType::Pdf,
            pages: self.pages,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Fed whole, and fed a byte at a time: the verdict must not depend on
    /// where the chunks end.
    fn screen(bytes: &[u8]) -> Result<Screened, Refusal> {
        let limits = ScreenLimits {
            max_pages: 5,
            ..ScreenLimits::default()
        };
        let mut whole = Screen::new(limits);
        let whole = whole.feed(bytes).and_then(|()| whole.finish());
        for size in [1, 7, 4096] {
            let mut chunked = Screen::new(limits);
            let outcome = bytes
                .chunks(size)
                .try_for_each(|c| chunked.feed(c))
                .and_then(|()| chunked.finish());
            assert_eq!(outcome, whole, "chunks of {size}");
        }
        whole
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&width.to_be_bytes());
        png.extend_from_slice(&height.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        png
    }

    fn jpeg(width: u16, height: u16, app_bytes: usize) -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8];
        // An APP1 segment (EXIF) before the frame header.
        jpeg.extend_from_slice(&[0xFF, 0xE1]);
        jpeg.extend_from_slice(&((app_bytes + 2) as u16).to_be_bytes());
        jpeg.extend(std::iter::repeat_n(0xAB, app_bytes));
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        jpeg.extend_from_slice(&height.to_be_bytes());
        jpeg.extend_from_slice(&width.to_be_bytes());
        jpeg.extend_from_slice(&[3; 12]);
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        jpeg
    }

    fn pdf(objects: &[&str]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
        for (n, body) in objects.iter().enumerate() {
            pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", n + 1).as_bytes());
        }
        pdf.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
        pdf
    }

    const CATALOG: &str = "<< /Type /Catalog /Pages 2 0 R >>";
    const PAGES: &str = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>";
    const PAGE: &str = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>";

    fn deflated(text: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(text).expect("deflate");
        z.finish().expect("deflate")
    }

    /// A PDF whose objects sit compressed in an object stream.
    fn pdf_with_object_stream(hidden: &str) -> Vec<u8> {
        let inner = format!("3 0 4 60 {PAGE} {hidden}");
        let packed = deflated(inner.as_bytes());
        let mut pdf = b"%PDF-1.7\n1 0 obj\n".to_vec();
        pdf.extend_from_slice(CATALOG.as_bytes());
        pdf.extend_from_slice(b"\nendobj\n2 0 obj\n");
        pdf.extend_from_slice(PAGES.as_bytes());
        pdf.extend_from_slice(
            format!(
                "\nendobj\n5 0 obj\n<< /Type /ObjStm /N 2 /First 8 /Filter /FlateDecode /Length {} >>\nstream\r\n",
                packed.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&packed);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
        pdf
    }

    #[test]
    fn images_are_sized_from_their_header() {
        let ok = |media_type| {
            Ok(Screened {
                media_type,
                pages: 1,
            })
        };
        assert_eq!(screen(&png(2480, 3508)), ok(MediaType::Png));
        assert_eq!(
            screen(&png(30_000, 30_000)),
            Err(Refusal::ImageTooLarge {
                width: 30_000,
                height: 30_000,
                limit: 40_000_000
            })
        );
        assert_eq!(
            screen(&png(0, 10)),
            Err(Refusal::BadImage("a side of zero pixels"))
        );
        assert!(matches!(
            screen(&png(10, 10)[..20]),
            Err(Refusal::BadImage(_))
        ));
        assert_eq!(screen(&jpeg(2480, 3508, 5000)), ok(MediaType::Jpeg));
        assert_eq!(screen(&jpeg(640, 480, 0)), ok(MediaType::Jpeg));
        assert!(matches!(
            screen(&jpeg(60_000, 60_000, 300)),
            Err(Refusal::ImageTooLarge { .. })
        ));
        let mut no_frame = jpeg(10, 10, 10);
        no_frame.truncate(16);
        assert!(matches!(screen(&no_frame), Err(Refusal::BadImage(_))));
    }

    #[test]
    fn the_type_is_read_from_the_content() {
        let not = |found| Err(Refusal::NotAccepted { found });
        for (bytes, expected) in [
            (
                b"MZ\x90\0\x03\0\0\0\x04\0".to_vec(),
                not("a Windows program"),
            ),
            (
                b"\x7fELF\x02\x01\x01\0\0\0".to_vec(),
                not("a Linux program"),
            ),
            (b"#!/bin/sh\nrm -rf /\n".to_vec(), not("a script")),
            (
                b"PK\x03\x04\x14\0\0\0".to_vec(),
                not("a ZIP archive (or an office document)"),
            ),
            (b"II*\0\x08\0\0\0".to_vec(), not("a TIFF image")),
            (b"GIF89a\x01\0".to_vec(), not("a GIF image")),
            (b"hello, world\n".to_vec(), not("text")),
            (b"PDF".to_vec(), not("text")),
            (vec![0, 1, 2, 3, 4, 5, 6, 7, 8], not("of an unknown type")),
            (vec![], Err(Refusal::Empty)),
        ] {
            assert_eq!(screen(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn plain_pdfs_pass_and_their_pages_are_counted() {
        assert_eq!(
            screen(&pdf(&[CATALOG, PAGES, PAGE])),
            Ok(Screened {
                media_type: MediaType::Pdf,
                pages: 1
            })
        );
        // The letters Guichet prints itself (compressed content streams).
        let letter = crate::pdf::letter_pdf(&crate::pdf::LetterText {
            addressee: vec!["Mme Test".into()],
            place_and_date: "Lille, le 28 novembre 2026".into(),
            subject: "Objet".into(),
            paragraphs: vec!["Texte (avec /JS entre parenthèses).".into()],
            reference: "WEB-59-2026-000001".into(),
        });
        assert_eq!(screen(&letter).map(|s| s.pages), Ok(1));
        // Pages inside an object stream count too.
        assert_eq!(
            screen(&pdf_with_object_stream("<< /Length 0 >>")).map(|s| s.pages),
            Ok(1)
        );
        assert_eq!(screen(&pdf(&[CATALOG, PAGES])), Err(Refusal::NoPage));
        let many: Vec<&str> = std::iter::repeat_n(PAGE, 6).collect();
        assert_eq!(
            screen(&pdf(&many)),
            Err(Refusal::TooManyPages { pages: 6, limit: 5 })
        );
    }

    #[test]
    fn active_content_is_refused_however_it_is_written() {
        let active = |what| Err(Refusal::ActiveContent(what));
        for (objects, expected) in [
            (
                vec![
                    "<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>",
                    PAGES,
                    PAGE,
                    "<< /S /JavaScript /JS (app.alert\\(1\\)) >>",
                ],
                active("JavaScript"),
            ),
            (
                vec![CATALOG, PAGES, PAGE, "<< /S /J#61vaScript /J#53 (x) >>"],
                active("JavaScript"),
            ),
            (
                vec![CATALOG, PAGES, PAGE, "<< /S /Launch /F (cmd.exe) >>"],
                active("a launch action"),
            ),
            (
                vec![
                    CATALOG,
                    PAGES,
                    PAGE,
                    "<< /Names << /EmbeddedFiles 5 0 R >> >>",
                ],
                active("embedded files"),
            ),
            (
                vec![CATALOG, PAGES, PAGE, "<< /Encrypt 6 0 R >>"],
                Err(Refusal::Encrypted),
            ),
        ] {
            assert_eq!(screen(&pdf(&objects)), expected, "{objects:?}");
        }
        assert_eq!(
            screen(&pdf_with_object_stream("<< /S /JavaScript /JS (x) >>")),
            active("JavaScript")
        );
        // A name inside a string is text, not syntax.
        assert_eq!(
            screen(&pdf(&[
                CATALOG,
                PAGES,
                PAGE,
                "<< /Title (see /JavaScript) >>"
            ]))
            .map(|s| s.pages),
            Ok(1)
        );
    }

    #[test]
    fn a_compression_bomb_is_stopped_while_it_inflates() {
        let zeros = vec![0u8; 50 * 1024 * 1024];
        let packed = deflated(&zeros);
        let mut bomb = b"%PDF-1.7\n1 0 obj\n<< /Filter /FlateDecode >>\nstream\n".to_vec();
        bomb.extend_from_slice(&packed);
        bomb.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        assert_eq!(screen(&bomb), Err(Refusal::CompressionBomb { ratio: 100 }));
    }
}
