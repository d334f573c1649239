//! Print-ready PDF, A4, with the PDF base fonts (nothing to embed) and text
//! in WinAnsi so French accents print: pages to draw on, and the letter every
//! service sends (the mailroom's print list, the notifier's attachments).

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

pub const A4: (f32, f32) = (595.0, 842.0);
const FONT: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// One page's drawing, in points from the bottom left.
pub struct Page {
    pub content: Content,
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

impl Page {
    pub fn new() -> Self {
        Self {
            content: Content::new(),
        }
    }

    pub fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let c = &mut self.content;
        c.begin_text();
        c.set_font(if bold { BOLD } else { FONT }, size);
        c.next_line(x, y);
        c.show(Str(&win_ansi(text)));
        c.end_text();
    }

    pub fn line(&mut self, x1: f32, y: f32, x2: f32) {
        let c = &mut self.content;
        c.set_line_width(0.5);
        c.move_to(x1, y);
        c.line_to(x2, y);
        c.stroke();
    }
}

/// Assembles pages into one PDF.
pub fn document(pages: Vec<Page>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let bold = Ref::new(4);
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(10 + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    for (name, id) in [(b"Helvetica".as_slice(), font), (b"Helvetica-Bold", bold)] {
        pdf.type1_font(id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (page, id) in pages.into_iter().zip(&page_ids) {
        let content_id = Ref::new(id.get() + 1);
        let mut p = pdf.page(*id);
        p.media_box(Rect::new(0.0, 0.0, A4.0, A4.1));
        p.parent(tree);
        p.contents(content_id);
        let mut resources = p.resources();
        let mut fonts = resources.fonts();
        fonts.pair(FONT, font);
        fonts.pair(BOLD, bold);
        drop(fonts);
        drop(resources);
        drop(p);
        pdf.stream(content_id, &page.content.finish());
    }
    pdf.finish()
}

/// A letter: the addressee's block, the date, the subject, the body.
pub struct LetterText {
    pub addressee: Vec<String>,
    pub place_and_date: String,
    pub subject: String,
    pub paragraphs: Vec<String>,
    pub reference: String,
}

pub fn letter_pdf(letter: &LetterText) -> Vec<u8> {
    document(vec![letter_page(
        letter,
        &format!("Dossier {}", letter.reference),
    )])
}

/// The signed 2D code's width on a document: 0.75 to 0.85 mm a module for
/// the codes of receipts and attestations (versions 11 to 15), about five
/// pixels at 150 dpi. At 150 points (four pixels a module) one 150 dpi
/// rendering in twelve did not decode; at 180, none of 100 (random codes of
/// those versions, rendered by `pdftoppm`, read as `guichet verify` reads).
const SEAL_SIZE: f32 = 180.0;

/// A letter that carries its signed 2D code (`guichet_kit::seal`) at the
/// bottom right, below the text, with what it is for beneath. Without a code that fits a QR
/// code, the letter alone.
pub fn sealed_letter_pdf(letter: &LetterText, seal: Option<&str>) -> Vec<u8> {
    let mut page = letter_page(letter, &format!("Dossier {}", letter.reference));
    if let Some(code) = seal.and_then(|s| qr_code(s, fast_qr::ECL::M)) {
        let (x, top) = (A4.0 - 50.0 - SEAL_SIZE, 60.0 + SEAL_SIZE);
        draw_qr(&mut page, &code, x, top, SEAL_SIZE);
        page.text(x + 12.0, 52.0, 6.5, false, "Code signé / signed code:");
        page.text(x + 12.0, 44.0, 6.5, false, "guichet verify");
    }
    document(vec![page])
}

/// The QR code of `text` at error-correction level `ecl`; `None` when the
/// text is too long for the largest code.
pub fn qr_code(text: &str, ecl: fast_qr::ECL) -> Option<fast_qr::QRCode> {
    fast_qr::QRBuilder::new(text.as_bytes())
        .ecl(ecl)
        .build()
        .ok()
}

/// A QR code with its top-left corner at (x, top), `size` points wide
/// including the quiet zone of four modules the standard asks for. Each
/// row's run of dark modules is one rectangle: a fraction of the operands
/// (and of the numbers to format) of one per module.
pub fn draw_qr(page: &mut Page, code: &fast_qr::QRCode, x: f32, top: f32, size: f32) {
    let n = code.size;
    let module = size / (n + 8) as f32;
    let c = &mut page.content;
    c.set_fill_gray(0.0);
    for row in 0..n {
        let modules = &code[row];
        let py = top - (row + 5) as f32 * module;
        let mut col = 0;
        while col < n {
            if !modules[col].value() {
                col += 1;
                continue;
            }
            let start = col;
            while col < n && modules[col].value() {
                col += 1;
            }
            let px = x + (start + 4) as f32 * module;
            c.rect(px, py, module * (col - start) as f32, module);
        }
    }
    c.fill_nonzero();
}

/// The letter's page; `reference_line` names what it is about.
pub fn letter_page(letter: &LetterText, reference_line: &str) -> Page {
    let mut page = Page::new();
    page.text(
        50.0,
        790.0,
        12.0,
        true,
        "Préfecture - Service des étrangers",
    );
    page.text(50.0, 774.0, 9.0, false, "Demandes de titre de séjour");
    let mut y = 700.0;
    for line in &letter.addressee {
        page.text(330.0, y, 11.0, false, line);
        y -= 15.0;
    }
    page.text(330.0, 600.0, 10.0, false, &letter.place_and_date);
    page.text(
        50.0,
        560.0,
        11.0,
        true,
        &format!("Objet : {}", letter.subject),
    );
    page.text(50.0, 544.0, 10.0, false, reference_line);
    let mut y = 510.0;
    for paragraph in &letter.paragraphs {
        for line in wrap(paragraph, 95) {
            page.text(50.0, y, 10.5, false, &line);
            y -= 14.0;
        }
        y -= 8.0;
    }
    page
}

pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// WinAnsiEncoding: Latin-1 for the accented letters French uses, and the
/// few typographic characters it adds; anything else prints as '?'.
pub fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '€' => 0x80,
            '’' => 0x92,
            '«' => 0xAB,
            '»' => 0xBB,
            '–' => 0x96,
            '—' => 0x97,
            'œ' => 0x9C,
            'Œ' => 0x8C,
            c if (c as u32) < 0x80 || (0xA0..=0xFF).contains(&(c as u32)) => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_encoded_for_the_base_font() {
        assert_eq!(win_ansi("é’€x"), vec![0xE9, 0x92, 0x80, b'x']);
        assert_eq!(win_ansi("ł"), vec![b'?']);
    }

    #[test]
    fn long_paragraphs_wrap_on_words() {
        assert_eq!(
            wrap("un deux trois quatre", 9),
            ["un deux", "trois", "quatre"]
        );
    }
}
