//! Reads stored batches into envelopes, in the background: never inside an
//! upload, so a station is answered as soon as its pages are safe.
//!
//! Per batch: find each page's code; split the stack at separator sheets;
//! OCR the pages that need it (no code, a blank form filled by hand, a code
//! not to be trusted); give each envelope its fields with their confidence.
//! Everything found is written in one transaction.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use guichet_dossier::postal::{
    CodeProblem, ExtractedField, FormCode, OcrLine, PageCode, PageRole, fields_from_ocr,
    merge_fields, postmarks_by_envelope, read_code, split_at_separators,
};
use guichet_kit::Metrics;
use guichet_kit::clock::SharedClock;
use guichet_kit::documents::{DocumentError, DocumentStore};
use guichet_kit::shutdown::Shutdown;
use tokio::sync::Notify;

use crate::figures::{PageLabels, PostalFigures};
use crate::scan;
use crate::store::{NewEnvelope, PageReading, PageRow, Store, StoreError, StoredField};

/// How long a reader holds a batch before another may take it over.
const LEASE_MINUTES: i64 = 15;
const IDLE_POLL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Reader {
    pub store: Store,
    pub documents: DocumentStore,
    pub signing_key: Arc<Vec<u8>>,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// Pages read at once.
    pub parallel: usize,
    pub wake: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("page {0} of the batch is missing from the document store")]
    MissingPage(String),
    #[error("reading the document store")]
    Documents(#[from] DocumentError),
    #[error("reading a page")]
    Io(#[from] std::io::Error),
}

/// What a page's code said.
#[derive(Debug, Clone)]
enum Finding {
    Separator,
    Form(FormCode),
    Problem(CodeProblem),
    NoCode,
}

impl Finding {
    fn label(&self) -> &'static str {
        match self {
            Finding::Separator => "separator",
            Finding::Form(_) => "form",
            Finding::Problem(CodeProblem::Forged) => "forged",
            Finding::Problem(CodeProblem::NotOurs) => "not_ours",
            Finding::Problem(_) => "damaged",
            Finding::NoCode => "none",
        }
    }

    /// The page carries one of our form codes, trusted or not.
    fn is_form(&self) -> bool {
        matches!(self, Finding::Form(_) | Finding::Problem(_))
    }

    fn needs_ocr(&self) -> bool {
        match self {
            Finding::Separator => false,
            // The code carries who filed: the printed page adds nothing.
            Finding::Form(code) => !code.fields.contains_key("family_name"),
            _ => true,
        }
    }
}

impl Reader {
    pub async fn run(self, shutdown: Shutdown) {
        while !shutdown.is_cancelled() {
            match self.read_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        error = %guichet_kit::error::error_chain(&e),
                        "reading a batch failed; it will be read again"
                    )
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Reads the oldest batch waiting; `false` if there was none.
    pub async fn read_next(&self) -> Result<bool, ReadError> {
        let lease = chrono::Duration::minutes(LEASE_MINUTES);
        let Some(batch) = self.store.claim_batch(self.clock.now(), lease).await? else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        let pages = self.store.pages_of_batch(&batch.id).await?;
        // Each page once from the store: its code, then its text if it needs
        // OCR; pages read side by side.
        let (findings, texts): (Vec<Finding>, Vec<Option<Vec<OcrLine>>>) =
            stream::iter(pages.iter().cloned())
                .map(|page| self.read_page(page))
                .buffered(self.parallel.max(1))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .unzip();
        let figures = PostalFigures::of(&self.metrics);
        for f in &findings {
            figures
                .pages_read
                .get_or_create(&PageLabels { code: f.label() })
                .inc();
        }
        let postmarks = &batch.postmark_dates;
        let separators: Vec<bool> = findings
            .iter()
            .map(|f| matches!(f, Finding::Separator))
            .collect();
        let groups = split_at_separators(&separators);
        let (postmarks, postmarks_problem) = postmarks_by_envelope(postmarks, groups.len());

        let mut envelopes = Vec::with_capacity(groups.len());
        let mut envelope_of_page: Vec<Option<String>> = vec![None; pages.len()];
        for (i, group) in groups.iter().enumerate() {
            let id = uuid::Uuid::now_v7().to_string();
            for &p in group {
                envelope_of_page[p] = Some(id.clone());
            }
            // A separator belongs to the envelope it opens.
            if let Some(first) = group.first() {
                let mut s = *first;
                while s > 0 && separators[s - 1] {
                    s -= 1;
                    envelope_of_page[s] = Some(id.clone());
                }
            }
            let form_page = group.iter().copied().find(|&p| findings[p].is_form());
            let (form_id, code, problem) = match form_page.map(|p| &findings[p]) {
                Some(Finding::Form(code)) => (Some(code.form_id.clone()), Some(code), None),
                Some(Finding::Problem(p)) => (None, None, Some(p.to_string())),
                _ => (None, None, Some(guichet_dossier::postal::NO_FORM.into())),
            };
            let problem = match (problem, &postmarks_problem) {
                (Some(p), Some(m)) => Some(format!("{p}; {m}")),
                (p, m) => p.or_else(|| m.clone()),
            };
            // OCR'd fields: the form page first, then the rest in order.
            let mut order: Vec<usize> = form_page.into_iter().collect();
            order.extend(group.iter().copied().filter(|&p| Some(p) != form_page));
            let lines: Vec<OcrLine> = order
                .iter()
                .filter_map(|&p| texts[p].clone())
                .flatten()
                .collect();
            let fields: Vec<ExtractedField> = merge_fields(code, fields_from_ocr(&lines));
            envelopes.push(NewEnvelope {
                id,
                seq: i as i32 + 1,
                page_count: group.len() as i32,
                postmark_date: postmarks[i].clone(),
                form_id,
                code_problem: problem,
                fields: fields.into_iter().map(StoredField::from).collect(),
            });
        }
        let readings: Vec<PageReading> = pages
            .iter()
            .enumerate()
            .map(|(i, page)| PageReading {
                seq: page.seq,
                role: match &findings[i] {
                    Finding::Separator => PageRole::Separator,
                    f if f.is_form() => PageRole::Form,
                    _ => PageRole::Enclosure,
                },
                code: match &findings[i] {
                    Finding::Problem(p) => p.to_string(),
                    f => f.label().to_string(),
                },
                envelope_id: envelope_of_page[i].clone(),
                ocr_text: texts[i].as_ref().map(|lines| {
                    lines
                        .iter()
                        .map(|l| l.text.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                }),
            })
            .collect();
        self.store
            .record_reading(&batch.id, &readings, &envelopes, self.clock.now())
            .await?;
        tracing::info!(
            batch = %batch.id,
            pages = pages.len(),
            envelopes = envelopes.len(),
            seconds = started.elapsed().as_secs_f64(),
            "batch read"
        );
        Ok(true)
    }

    async fn read_page(&self, page: PageRow) -> Result<(Finding, Option<Vec<OcrLine>>), ReadError> {
        let png = self
            .documents
            .get(&page.sha256)
            .await?
            .ok_or_else(|| ReadError::MissingPage(page.sha256.clone()))?;
        let key = self.signing_key.clone();
        let (finding, png) = tokio::task::spawn_blocking(move || {
            let finding = match scan::find_code(&png) {
                None => Finding::NoCode,
                Some(text) => match read_code(&text, &key) {
                    Ok(PageCode::Separator) => Finding::Separator,
                    Ok(PageCode::Form(code)) => Finding::Form(code),
                    Err(CodeProblem::NotOurs) => Finding::NoCode,
                    Err(p) => Finding::Problem(p),
                },
            };
            (finding, png)
        })
        .await
        .map_err(std::io::Error::other)?;
        if !finding.needs_ocr() {
            return Ok((finding, None));
        }
        let text = match scan::ocr(&png).await {
            Ok(lines) => Some(lines),
            Err(e) => {
                tracing::warn!(page = %page.sha256, error = %e, "OCR failed; the page goes to keying without its text");
                None
            }
        };
        Ok((finding, text))
    }
}
