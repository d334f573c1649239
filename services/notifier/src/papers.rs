//! The documents a person keeps (the filing receipt, each attestation, an
//! appointment's notice), rendered again on request from the event the
//! notice was made of: the same PDF as the one sent, with its signed 2D
//! code, in French or English. Nothing is stored twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use guichet_dossier::Language;
use guichet_kit::clock::SharedClock;
use guichet_kit::seal::KeySet;

use crate::event::Event;
use crate::store::{NoticeRow, Store};
use crate::{sender, templates};

/// A document a person may download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paper {
    /// The first notice that carried it.
    pub id: String,
    /// receipt, attestation_issued, appointment_booked, ...
    pub kind: String,
    pub title: String,
    pub file_name: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Papers {
    pub store: Store,
    pub keys: Arc<KeySet>,
    pub clock: SharedClock,
}

/// The document a notice row carries, in `language` (the person's own when
/// `None`).
fn document_of(
    row: &NoticeRow,
    language: Option<Language>,
) -> Option<(templates::Document, crate::event::Person)> {
    let event = Event::decode(&row.routing_key, &row.event).ok()?;
    let mut person = event.person();
    if let Some(language) = language {
        person.language = language;
    }
    let document = templates::render(row.kind, &event, &person)?.document?;
    Some((document, person))
}

impl Papers {
    /// The documents of a dossier, appointment or report, oldest first: one
    /// per notice, whatever the number of media it went by.
    pub async fn list(&self, subject_ref: &str) -> Result<Vec<Paper>, sqlx::Error> {
        let rows = self.store.of_subject(subject_ref, 500).await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut papers = Vec::new();
        for row in rows {
            if !seen.insert(row.notice_key.clone()) {
                continue;
            }
            if let Some((d, _)) = document_of(&row, None) {
                papers.push(Paper {
                    id: row.id.clone(),
                    kind: row.kind.to_string(),
                    title: d.title,
                    file_name: d.file_name,
                    issued_at: row.event_at,
                });
            }
        }
        Ok(papers)
    }

    /// The PDF of document `id` of `subject_ref`; `None` when there is no
    /// such document.
    pub async fn pdf(
        &self,
        subject_ref: &str,
        id: &str,
        language: Option<Language>,
    ) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
        let rows = self.store.of_subject(subject_ref, 500).await?;
        let Some(row) = rows.iter().find(|r| r.id == id) else {
            return Ok(None);
        };
        Ok(document_of(row, language).map(|(d, person)| {
            let pdf = sender::document_pdf(&self.keys, &person, subject_ref, &d, self.clock.now());
            (d.file_name, pdf)
        }))
    }
}
