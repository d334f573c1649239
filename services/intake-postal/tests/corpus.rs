//! The generated corpus: forms rendered to page images at 200 and 300 dpi,
//! fed crooked (any rotation up to a half turn), skewed up to 3 degrees,
//! with noise and specks; at least 99 % of their codes must be read.

use std::collections::BTreeMap;

use guichet_dossier::postal::{FORM_VERSION, FormCode, PageCode, form_code_text, read_code};
use guichet_intake_postal::corpus::{corpus_distortions, distort};
use guichet_intake_postal::{render, scan};

const KEY: &[u8] = b"corpus signing key, test only....";

fn form(i: usize, prefilled: bool) -> (FormCode, String) {
    let mut fields = BTreeMap::new();
    fields.insert("procedure".to_string(), "renewal".to_string());
    if prefilled {
        for (k, v) in [
            ("family_name", format!("Benali-{i}")),
            ("given_names", "Samira Nour".to_string()),
            ("birth_date", "1991-03-02".to_string()),
            ("nationality", "DZA".to_string()),
            ("foreigner_number", "7503123456".to_string()),
            ("postal_code", "59000".to_string()),
        ] {
            fields.insert(k.to_string(), v);
        }
    }
    let code = FormCode {
        form_id: format!("F{i:08}"),
        version: FORM_VERSION,
        fields,
    };
    let text = form_code_text(&code, KEY);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_99_percent_of_the_corpus_codes_are_read() {
    let per_dpi = 60;
    let mut read = 0;
    let mut total = 0;
    let mut misses = Vec::new();
    for (n, dpi) in [200u32, 300].into_iter().enumerate() {
        // Two forms per resolution: a blank one and a pre-filled one (a
        // denser code).
        for prefilled in [false, true] {
            let (code, text) = form(n, prefilled);
            let pdf = render::form_pdf(&text, &code.form_id, &code.fields).expect("fits");
            let pages = scan::pdf_pages(&pdf, dpi)
                .await
                .expect("pdftoppm renders the form");
            let page = image::load_from_memory(&pages[0])
                .expect("png")
                .into_luma8();
            let distortions = corpus_distortions(per_dpi / 2, u64::from(dpi) + prefilled as u64);
            let results = futures_util::future::join_all(distortions.into_iter().map(|d| {
                let page = page.clone();
                tokio::task::spawn_blocking(move || {
                    let scanned = distort(&page, d);
                    let png = scan::encode_png(&scanned).expect("png");
                    (d, scan::find_code(&png))
                })
            }))
            .await;
            for r in results {
                let (d, found) = r.expect("joined");
                total += 1;
                match found.map(|t| read_code(&t, KEY)) {
                    Some(Ok(PageCode::Form(got))) if got == code => read += 1,
                    other => {
                        misses.push(format!("{dpi} dpi prefilled={prefilled} {d:?}: {other:?}"))
                    }
                }
            }
        }
    }
    let rate = f64::from(read) / f64::from(total) * 100.0;
    println!("corpus: {read}/{total} codes read ({rate:.1} %)");
    for m in &misses {
        println!("  missed: {m}");
    }
    assert_eq!(total, 120);
    assert!(rate >= 99.0, "decode rate {rate:.1} % < 99 %: {misses:#?}");
}
