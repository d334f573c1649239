//! `docs/access.md` is the table, rendered: stale, it fails here.
//! `UPDATE_ACCESS_DOC=1 cargo test -p guichet-access` writes it anew.

use std::path::PathBuf;

#[test]
fn docs_access_md_is_the_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/access.md");
    let rendered = guichet_access::doc::render();
    if std::env::var_os("UPDATE_ACCESS_DOC").is_some() {
        std::fs::write(&path, &rendered).expect("docs/access.md written");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/access.md is not the table: run UPDATE_ACCESS_DOC=1 cargo test -p guichet-access --test doc"
    );
}
