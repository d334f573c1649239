//! Print-ready PDF: application forms with their signed QR code, separator
//! sheets, and letters to postal filers. A4, the PDF base font (nothing to
//! embed), text in WinAnsi so French accents print.

use std::collections::BTreeMap;

use guichet_dossier::postal::FORM_FIELDS;
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use qrcode::{Color, EcLevel, QrCode};

const A4: (f32, f32) = (595.0, 842.0);
const FONT: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");
/// The form's code is 70 mm wide: about a millimetre per module even with
/// several pre-filled fields, which a 200 dpi scan of a skewed, speckled page
/// still reads.
const FORM_CODE_SIZE: f32 = 200.0;
const SEPARATOR_CODE_SIZE: f32 = 260.0;

#[derive(Debug, thiserror::Error)]
#[error("the code cannot hold this much text ({0} bytes): pre-fill fewer or shorter fields")]
pub struct TooLong(usize);

/// One page's drawing, in points from the bottom left.
struct Page {
    content: Content,
}

impl Page {
    fn new() -> Self {
        Self {
            content: Content::new(),
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let c = &mut self.content;
        c.begin_text();
        c.set_font(if bold { BOLD } else { FONT }, size);
        c.next_line(x, y);
        c.show(Str(&win_ansi(text)));
        c.end_text();
    }

    fn line(&mut self, x1: f32, y: f32, x2: f32) {
        let c = &mut self.content;
        c.set_line_width(0.5);
        c.move_to(x1, y);
        c.line_to(x2, y);
        c.stroke();
    }

    /// A QR code with its top-left corner at (x, top), `size` points wide
    /// including the quiet zone of four modules the standard asks for.
    fn qr(&mut self, code: &QrCode, x: f32, top: f32, size: f32) {
        let n = code.width();
        let module = size / (n + 8) as f32;
        let colors = code.to_colors();
        let c = &mut self.content;
        c.set_fill_gray(0.0);
        for row in 0..n {
            for col in 0..n {
                if colors[row * n + col] == Color::Dark {
                    let px = x + (col + 4) as f32 * module;
                    let py = top - (row + 5) as f32 * module;
                    c.rect(px, py, module, module);
                }
            }
        }
        c.fill_nonzero();
    }
}

/// Assembles pages into one PDF.
fn document(pages: Vec<Page>) -> Vec<u8> {
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

fn qr(text: &str, level: EcLevel) -> Result<QrCode, TooLong> {
    QrCode::with_error_correction_level(text.as_bytes(), level).map_err(|_| TooLong(text.len()))
}

/// An application form: the code at the top right, then each field's label
/// with its printed value (pre-filled) or a line to write on.
pub fn form_pdf(
    code_text: &str,
    form_id: &str,
    printed: &BTreeMap<String, String>,
) -> Result<Vec<u8>, TooLong> {
    Ok(document(vec![form_page(
        code_text, form_id, printed, None,
    )?]))
}

/// The form's page; `note`, when given, is printed under its id (what the
/// form was sent for).
fn form_page(
    code_text: &str,
    form_id: &str,
    printed: &BTreeMap<String, String>,
    note: Option<&str>,
) -> Result<Page, TooLong> {
    let code = qr(code_text, EcLevel::M)?;
    let mut page = Page::new();
    let top = A4.1 - 40.0;
    page.qr(&code, A4.0 - 40.0 - FORM_CODE_SIZE, top, FORM_CODE_SIZE);
    page.text(50.0, top - 20.0, 16.0, true, "Demande de titre de séjour");
    page.text(50.0, top - 40.0, 11.0, false, "Dépôt par voie postale");
    page.text(
        50.0,
        top - 58.0,
        9.0,
        false,
        &format!("Formulaire {form_id}"),
    );
    if let Some(note) = note {
        page.text(50.0, top - 72.0, 9.0, false, note);
    }
    page.text(
        50.0,
        top - 90.0,
        9.0,
        false,
        "Écrivez en capitales. Ne pliez pas le code en haut à droite.",
    );
    let mut y = top - FORM_CODE_SIZE - 30.0;
    for field in FORM_FIELDS {
        let label = format!("{} :", field.label);
        match printed.get(field.key).filter(|v| !v.is_empty()) {
            Some(value) => page.text(50.0, y, 12.0, false, &format!("{label} {value}")),
            None => {
                page.text(50.0, y, 12.0, false, &label);
                page.line(200.0, y - 2.0, A4.0 - 50.0);
            }
        }
        y -= 28.0;
    }
    page.text(
        50.0,
        60.0,
        9.0,
        false,
        "Joignez une copie de chaque pièce. La date du cachet de la poste vaut date de dépôt.",
    );
    Ok(page)
}

/// A paper filing kit for a blocked-user report: the covering letter (its
/// `reference` is the report's id), then the form pre-filled with what the
/// report knows, both naming the report.
pub fn kit_pdf(
    cover: &LetterText,
    code_text: &str,
    form_id: &str,
    printed: &BTreeMap<String, String>,
) -> Result<Vec<u8>, TooLong> {
    let reference = format!("Signalement {}", cover.reference);
    let form = form_page(code_text, form_id, printed, Some(&reference))?;
    Ok(document(vec![letter_page(cover, &reference), form]))
}

/// `count` separator sheets, one page each.
pub fn separators_pdf(code_text: &str, count: u32) -> Result<Vec<u8>, TooLong> {
    let code = qr(code_text, EcLevel::Q)?;
    let pages = (0..count.max(1))
        .map(|_| {
            let mut page = Page::new();
            let x = (A4.0 - SEPARATOR_CODE_SIZE) / 2.0;
            page.qr(&code, x, A4.1 - 200.0, SEPARATOR_CODE_SIZE);
            page.text(170.0, 300.0, 28.0, true, "SÉPARATEUR");
            page.text(
                120.0,
                260.0,
                11.0,
                false,
                "Placez cette feuille avant chaque enveloppe de la pile.",
            );
            page
        })
        .collect();
    Ok(document(pages))
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

/// The letter's page; `reference_line` names what it is about.
fn letter_page(letter: &LetterText, reference_line: &str) -> Page {
    let mut page = Page::new();
    page.text(
        50.0,
        790.0,
        12.0,
        true,
        "Préfecture - Service des étrangers",
    );
    page.text(
        50.0,
        774.0,
        9.0,
        false,
        "Réponse à une demande déposée par courrier",
    );
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

fn wrap(text: &str, width: usize) -> Vec<String> {
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
fn win_ansi(text: &str) -> Vec<u8> {
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

    #[test]
    fn documents_are_pdf() {
        let pdf = form_pdf("GCH1|F|x|1||00", "x", &BTreeMap::new()).expect("fits");
        assert!(pdf.starts_with(b"%PDF-"));
        let cover = LetterText {
            addressee: vec!["Ahmad HAIDARI".into()],
            place_and_date: "Le 01/12/2026".into(),
            subject: "kit".into(),
            paragraphs: vec!["Bonjour".into()],
            reference: "0190-report".into(),
        };
        let kit = kit_pdf(&cover, "GCH1|F|x|1||00", "x", &BTreeMap::new()).expect("fits");
        assert!(kit.starts_with(b"%PDF-"));
        assert!(kit.windows(23).any(|w| w == b"Signalement 0190-report"));
        assert!(
            separators_pdf("GCH1|S", 3)
                .expect("fits")
                .starts_with(b"%PDF-")
        );
    }
}
