//! Print-ready PDF: application forms with their signed QR code, separator
//! sheets and paper kits, drawn on the kit's pages (`guichet_kit::pdf`).

use std::collections::BTreeMap;

use fast_qr::ECL;
use guichet_dossier::postal::FORM_FIELDS;
use guichet_kit::pdf::{A4, Page, document, draw_qr, letter_page, qr_code};
pub use guichet_kit::pdf::{LetterText, letter_pdf};

/// The form's code is 70 mm wide: about a millimetre per module even with
/// several pre-filled fields, which a 200 dpi scan of a skewed, speckled page
/// still reads.
const FORM_CODE_SIZE: f32 = 200.0;
const SEPARATOR_CODE_SIZE: f32 = 260.0;

#[derive(Debug, thiserror::Error)]
#[error("the code cannot hold this much text ({0} bytes): pre-fill fewer or shorter fields")]
pub struct TooLong(usize);

fn qr(text: &str, level: ECL) -> Result<fast_qr::QRCode, TooLong> {
    qr_code(text, level).ok_or(TooLong(text.len()))
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
    let code = qr(code_text, ECL::M)?;
    let mut page = Page::new();
    let top = A4.1 - 40.0;
    draw_qr(
        &mut page,
        &code,
        A4.0 - 40.0 - FORM_CODE_SIZE,
        top,
        FORM_CODE_SIZE,
    );
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
    let code = qr(code_text, ECL::Q)?;
    let pages = (0..count.max(1))
        .map(|_| {
            let mut page = Page::new();
            let x = (A4.0 - SEPARATOR_CODE_SIZE) / 2.0;
            draw_qr(&mut page, &code, x, A4.1 - 200.0, SEPARATOR_CODE_SIZE);
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

#[cfg(test)]
mod tests {
    use super::*;

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
