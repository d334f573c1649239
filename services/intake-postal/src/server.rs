//! Start-up and the gRPC face of the postal service.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guichet_dossier::calendar::parse_iso_date;
use guichet_dossier::filing::{RawProvenance, future_date_problem};
use guichet_dossier::postal::{
    self, Confirmation, ConfirmationRefused, EnvelopeAction, EnvelopeState, FORM_VERSION, FormCode,
    PageRole, PostmarkHold, ScannedPage, form_code_text, form_field, separator_code,
};
use guichet_dossier::{Channel, FieldViolation, Violations};
use guichet_intake::{Accepted, Intake, prepare_channel};
use guichet_kit::bus::{POSTAL_LETTERS_QUEUE, Subscription, consume_batches};
use guichet_kit::db::Migrations;
use guichet_kit::documents::{DocumentError, DocumentStore};
use guichet_kit::metrics::StateLabels;
use guichet_kit::service::{Listen, Running, Shared, StartError, Tasks};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, ErrorKind, ServiceError};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::postal_server::{Postal, PostalServer};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::figures::PostalFigures;
use crate::letters::Letters;
use crate::reader::Reader;
use crate::render;
use crate::scan::{self, ScanError};
use crate::settings::MailroomSettings;
use crate::store::{
    EnvelopeEventRow, EnvelopeRow, NewBatch, NewEnvelopeEvent, PageRow, Store, StoreError,
    StoredField,
};

/// Both backends' migrations, in order (the schema parity test compares them).
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&guichet_intake::POSTGRES, &POSTGRES],
    sqlite: &[&guichet_intake::SQLITE, &SQLITE],
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "intake_postal";
/// A stack of scans is large: up to this much in one upload.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;
const MAX_SEPARATORS: u32 = 500;
/// Longest reason an operator gives for a postmark.
const MAX_REASON_CHARS: usize = 500;

pub async fn start(
    config: &Config,
    settings: &MailroomSettings,
    listen: impl Into<Listen>,
    shared: &Shared,
) -> Result<Running, StartError> {
    let channel =
        prepare_channel(config, SCHEMA, &MIGRATIONS, listen, shared, Channel::Postal).await?;
    let documents = DocumentStore::open(config)?;
    let signing_key = Arc::new(
        signing_key(settings.form_signing_key.as_deref(), &config.data_dir).map_err(|e| {
            StartError::Target(
                "GUICHET_FORM_SIGNING_KEY".into(),
                guichet_kit::error::error_chain(&e),
            )
        })?,
    );
    let store = Store::new(channel.db.clone());
    let wake = Arc::new(Notify::new());
    let letters = Letters {
        store: store.clone(),
        documents: documents.clone(),
        metrics: shared.metrics.clone(),
        clock: shared.clock.clone(),
        signing_key: signing_key.clone(),
        keys: Arc::new(
            guichet_kit::seal::KeySet::load_or_create(
                &config.signing_keys_path(),
                shared.clock.now(),
            )
            .map_err(|e| {
                StartError::Target(
                    "GUICHET_SIGNING_KEYS".into(),
                    guichet_kit::error::error_chain(&e),
                )
            })?,
        ),
    };
    let reader = Reader {
        store: store.clone(),
        documents: documents.clone(),
        signing_key: signing_key.clone(),
        metrics: shared.metrics.clone(),
        clock: shared.clock.clone(),
        parallel: settings.postal_readers,
        wake: wake.clone(),
    };
    let service = PostalService {
        intake: channel.intake.clone(),
        store,
        documents,
        signing_key,
        letters: letters.clone(),
        wake,
        postmark_max_age_days: settings.postmark_max_age_days,
    };
    let mut tasks = Tasks::new();
    for _ in 0..settings.postal_batches_at_once.max(1) {
        tasks.spawn("batch reader", reader.clone().run(shared.shutdown.clone()));
    }
    tasks.spawn(
        "figures",
        sample_forever(service.clone(), shared.shutdown.clone()),
    );
    let bus = shared.bus.clone();
    let consume_shutdown = shared.shutdown.clone();
    let prefetch = config.consumer_prefetch.min(64);
    tasks.spawn("consumer", async move {
        consume_batches(
            bus,
            Subscription::one_batch_at_a_time(POSTAL_LETTERS_QUEUE, "intake-postal", prefetch),
            consume_shutdown,
            |batch| {
                let letters = letters.clone();
                async move { letters.handle_batch(&batch).await }
            },
        )
        .await;
    });
    let server = PostalServer::new(service)
        .max_decoding_message_size(MAX_UPLOAD_BYTES)
        .max_encoding_message_size(MAX_UPLOAD_BYTES);
    let routes = tonic::service::Routes::new(server);
    Ok(channel
        .with_relay(&mut tasks, &shared.shutdown)
        .serve_with_limit(
            tasks,
            routes,
            "guichet.v1.Postal",
            MAX_UPLOAD_BYTES,
            &shared.shutdown,
        )
        .await)
}

/// Why the form signing key cannot be had.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("must be at least 32 characters")]
    TooShort,
    #[error("{0}: not a hex key")]
    NotHex(PathBuf, #[source] hex::FromHexError),
    #[error("{0}: cannot be written")]
    Write(PathBuf, #[source] std::io::Error),
}

/// The configured key, or the one made for this installation on first start.
fn signing_key(configured: Option<&str>, data_dir: &Path) -> Result<Vec<u8>, KeyError> {
    if let Some(key) = configured {
        if key.len() < 32 {
            return Err(KeyError::TooShort);
        }
        return Ok(key.as_bytes().to_vec());
    }
    let path = data_dir.join("form-signing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).map_err(|e| KeyError::NotHex(path, e));
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let written = std::fs::create_dir_all(data_dir).and_then(|()| {
        // Readable by the service's user alone: whoever holds it can sign forms.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(hex::encode(key).as_bytes())?;
        file.sync_all()
    });
    written.map_err(|e| KeyError::Write(path, e))?;
    Ok(key.to_vec())
}

/// Refreshes the envelope figures on `/metrics`.
async fn sample_forever(service: PostalService, shutdown: Shutdown) {
    loop {
        if let Ok(counts) = service.store.envelope_counts().await {
            for state in EnvelopeState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                PostalFigures::of(&service.intake.metrics)
                    .envelopes
                    .get_or_create(&StateLabels {
                        state: state.as_str(),
                    })
                    .set(n);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[derive(Clone)]
struct PostalService {
    intake: Intake,
    store: Store,
    documents: DocumentStore,
    signing_key: Arc<Vec<u8>>,
    letters: Letters,
    wake: Arc<Notify>,
    /// `GUICHET_POSTMARK_MAX_AGE_DAYS`: see `postal::postmark_doubt`.
    postmark_max_age_days: u32,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoEnvelope(id) => ServiceError::not_found(format!("no envelope {id}")),
            StoreError::NoBatch(id) => ServiceError::not_found(format!("no batch {id}")),
            StoreError::NoLetter(id) => ServiceError::not_found(format!("no letter {id}")),
            StoreError::WrongState(why) => ServiceError::new(ErrorKind::WrongState, why),
            StoreError::KeyReused => ServiceError::conflict(
                "this idempotency key (or, without one, these same files from this \
                 station on this day) was already used for a different upload; use a \
                 new key for a new batch",
            ),
            StoreError::Unreadable(e) => ServiceError::internal("reading the postal store", &e),
            e @ StoreError::Encode(_) => ServiceError::internal("writing the postal store", &e),
            StoreError::Db(e) => {
                ServiceError::database("the postal service", "the postal store", &e)
            }
        }
    }
}

fn err(e: StoreError) -> Status {
    ServiceError::from(e).into()
}

fn io_err(context: &str, e: std::io::Error) -> Status {
    ServiceError::unavailable(format!("{context}: {e}; try again")).into()
}

/// The store down is worth another try; a digest read from a row that is
/// no digest is damaged data, and fails as such.
fn documents_err(e: DocumentError) -> Status {
    match e {
        DocumentError::BadDigest(_) => ServiceError::internal("a stored digest", &e).into(),
        e => ServiceError::from(e).into(),
    }
}

fn invalid(v: Violations) -> Status {
    ServiceError::invalid(v).into()
}

fn pdf(id: String, content: Vec<u8>) -> Response<pb::PrintedDocument> {
    Response::new(pb::PrintedDocument {
        id,
        media_type: "application/pdf".into(),
        content,
    })
}

impl PostalService {
    /// The filing an envelope's confirmed `fields` make, accepted by
    /// intake. Idempotent under the envelope's key: for an envelope filed
    /// already, the same dossier and receipt.
    async fn accept_envelope(
        &self,
        row: &EnvelopeRow,
        fields: &[StoredField],
        postmark_date: Option<chrono::NaiveDate>,
        reception: chrono::NaiveDate,
    ) -> Result<Accepted, Status> {
        let pages = self.store.pages_of_envelope(&row.id).await.map_err(err)?;
        let scanned = |p: &PageRow| ScannedPage {
            sha256: p.sha256.clone(),
            media_type: p.media_type.clone(),
            size_bytes: p.size_bytes as u64,
        };
        let form: Vec<ScannedPage> = pages
            .iter()
            .filter(|p| *p.role == Some(PageRole::Form))
            .map(scanned)
            .collect();
        let enclosures: Vec<ScannedPage> = pages
            .iter()
            .filter(|p| *p.role != Some(PageRole::Form))
            .map(scanned)
            .collect();
        let values: BTreeMap<String, String> = fields
            .iter()
            .map(|f| (f.key.clone(), f.value.clone()))
            .collect();
        let raw = postal::raw_filing(&values, &form, &enclosures, &row.id);
        let provenance = RawProvenance::Postal {
            station_id: Some(row.station_id.clone()),
            envelope_id: Some(row.id.clone()),
            postmark_date: postal::postmark_to_file(postmark_date, reception)
                .map(|d| d.to_string()),
            reception_date: Some(row.reception_date.clone()),
        };
        Ok(self.intake.accept(&raw, &provenance).await?)
    }

    /// The receipt letter of an envelope filed already, written if the
    /// confirmation that filed it could not write it.
    async fn receipt_letter_again(&self, row: &EnvelopeRow) -> Result<(), Status> {
        // Nearly always made: one read, not the filing built and accepted
        // again.
        if let Some(reference) = &row.reference {
            let made = self
                .letters
                .receipt_made(reference)
                .await
                .map_err(|e| receipt_letter_failed(reference, e))?;
            if made {
                return Ok(());
            }
        }
        let unreadable = |what: &str| {
            Status::from(ServiceError::new(
                ErrorKind::WrongState,
                format!("this filed envelope's {what} is unreadable"),
            ))
        };
        let reception =
            parse_iso_date(&row.reception_date).ok_or_else(|| unreadable("reception date"))?;
        let postmark_date = match row.postmark_date.as_deref() {
            None => None,
            Some(p) => Some(parse_iso_date(p).ok_or_else(|| unreadable("postmark date"))?),
        };
        let accepted = self
            .accept_envelope(row, &row.fields.0, postmark_date, reception)
            .await?;
        self.letters
            .receipt(row, &accepted.receipt)
            .await
            .map_err(|e| receipt_letter_failed(&accepted.receipt.reference, e))
    }

    async fn envelope_pb(&self, row: &EnvelopeRow) -> Result<pb::Envelope, Status> {
        let pages = self.store.pages_of_envelope(&row.id).await.map_err(err)?;
        let history = self.store.history(&row.id).await.map_err(err)?;
        Ok(envelope_to_pb(
            row,
            &pages,
            &history,
            self.postmark_max_age_days,
        ))
    }
}

/// The dossier is filed but its receipt letter is not written: the
/// operator confirms again (which writes it), told so.
fn receipt_letter_failed(reference: &str, e: impl std::fmt::Display) -> Status {
    tracing::warn!(reference, error = %e, "the receipt letter could not be written");
    ServiceError::unavailable(format!(
        "dossier {reference} is filed, but its receipt letter could not be written: confirm the envelope again"
    ))
    .into()
}

/// Why an envelope's postmark needs a second operator, in words, if it does.
fn postmark_doubt_text(row: &EnvelopeRow, max_age_days: u32) -> String {
    let postmark = row.postmark_date.as_deref().and_then(parse_iso_date);
    let reception = parse_iso_date(&row.reception_date);
    match (postmark, reception) {
        (Some(p), Some(r)) => postal::postmark_doubt(p, r, max_age_days)
            .map(|doubt| format!("postmark {p} {doubt}, received {r}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn envelope_to_pb(
    row: &EnvelopeRow,
    pages: &[PageRow],
    history: &[EnvelopeEventRow],
    max_age_days: u32,
) -> pb::Envelope {
    pb::Envelope {
        id: row.id.clone(),
        batch_id: row.batch_id.clone(),
        seq: row.seq as u32,
        page_count: row.page_count as u32,
        state: row.state.as_str().to_string(),
        postmark_date: row.postmark_date.clone().unwrap_or_default(),
        reception_date: row.reception_date.clone(),
        form_id: row.form_id.clone().unwrap_or_default(),
        code_problem: row.code_problem.clone().unwrap_or_default(),
        fields: row
            .fields
            .iter()
            .map(|f| pb::ExtractedField {
                key: f.key.clone(),
                value: f.value.clone(),
                confidence: f.confidence,
                source: f.source.clone(),
            })
            .collect(),
        reference: row.reference.clone().unwrap_or_default(),
        routed_reason: row.routed_reason.clone().unwrap_or_default(),
        routed_to: row.routed_to.clone().unwrap_or_default(),
        page_sha256: pages.iter().map(|p| p.sha256.clone()).collect(),
        ocr_text: pages
            .iter()
            .filter_map(|p| p.ocr_text.clone())
            .collect::<Vec<_>>()
            .join("\n\n"),
        keyed_by: row.keyed_by.clone().unwrap_or_default(),
        postmark_doubt: postmark_doubt_text(row, max_age_days),
        history: history
            .iter()
            .filter(|e| e.envelope_id == row.id)
            .map(|e| pb::EnvelopeEvent {
                kind: e.kind.clone(),
                operator_id: e.operator_id.clone(),
                at: Some(convert::timestamp_to_pb(e.at)),
                postmark_date: e.postmark_date.clone().unwrap_or_default(),
                reason: e.reason.clone(),
                reference: e.reference.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// What became of a page, in words an operator reads.
fn outcome(page: &PageRow, envelope: Option<&EnvelopeRow>) -> String {
    match (*page.role, envelope) {
        (None, _) => "reading".into(),
        (Some(PageRole::Separator), _) => "separator sheet".into(),
        (_, None) => "no envelope".into(),
        (_, Some(e)) => match e.state {
            EnvelopeState::Filed => format!("dossier {}", e.reference.as_deref().unwrap_or("")),
            EnvelopeState::Attached => format!(
                "documents of dossier {}",
                e.reference.as_deref().unwrap_or("")
            ),
            EnvelopeState::Routed => format!(
                "routed to {}: {}",
                e.routed_to.as_deref().unwrap_or(""),
                e.routed_reason.as_deref().unwrap_or("")
            ),
            open => open.as_str().to_string(),
        },
    }
}

fn date_field(v: &mut Violations, field: &str, value: &str) -> Option<chrono::NaiveDate> {
    let d = parse_iso_date(value.trim());
    if d.is_none() {
        v.add(field, "must be a date as YYYY-MM-DD");
    }
    d
}

#[tonic::async_trait]
impl Postal for PostalService {
    async fn print_form(
        &self,
        request: Request<pb::PrintFormRequest>,
    ) -> Result<Response<pb::PrintedDocument>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for (k, value) in r.prefill {
            if form_field(&k).is_none() {
                v.add(format!("prefill.{k}"), "is not a field of the form");
            } else if !value.trim().is_empty() {
                fields.insert(k, value.trim().to_string());
            }
        }
        if !r.procedure.trim().is_empty() {
            if guichet_dossier::Procedure::parse(r.procedure.trim()).is_none() {
                v.add(
                    "procedure",
                    "is not a procedure (renewal, first_application, ...)",
                );
            }
            fields.insert("procedure".into(), r.procedure.trim().to_string());
        }
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let form_id =
            format!("F{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).to_uppercase();
        let code = FormCode {
            form_id: form_id.clone(),
            version: FORM_VERSION,
            fields,
        };
        let text = form_code_text(&code, &self.signing_key);
        let content = render::form_pdf(&text, &form_id, &code.fields)
            .map_err(|e| invalid(Violations::one("prefill", e.to_string())))?;
        Ok(pdf(form_id, content))
    }

    async fn print_separators(
        &self,
        request: Request<pb::PrintSeparatorsRequest>,
    ) -> Result<Response<pb::PrintedDocument>, Status> {
        let count = request.into_inner().count;
        if count == 0 || count > MAX_SEPARATORS {
            return Err(invalid(Violations::one(
                "count",
                format!("must be between 1 and {MAX_SEPARATORS}"),
            )));
        }
        let content = render::separators_pdf(&separator_code(), count)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(pdf(format!("separators-{count}"), content))
    }

    async fn upload_batch(
        &self,
        request: Request<pb::UploadBatchRequest>,
    ) -> Result<Response<pb::UploadBatchResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.station_id.trim().is_empty() {
            v.add("station_id", "is required: the scanning station's id");
        }
        let today = self.intake.clock.today();
        let reception = date_field(&mut v, "reception_date", &r.reception_date);
        if let Some(problem) = reception.and_then(|d| future_date_problem(d, today)) {
            v.add("reception_date", problem);
        }
        // A postmark is taken as the station read it, even one after the
        // reception date or a very old one: the stamp may really say so (a
        // misset machine). Such a postmark is held for a second operator's
        // look when the envelope is confirmed (`postal::postmark_doubt`).
        for (i, p) in r.postmark_dates.iter().enumerate() {
            if !p.trim().is_empty() {
                date_field(&mut v, &format!("postmark_dates[{i}]"), p);
            }
        }
        if r.files.is_empty() {
            v.add("files", "at least one scanned file is required");
        }
        if r.files.len() > scan::MAX_BATCH_PAGES {
            v.add(
                "files",
                format!(
                    "{} files: a batch holds at most {} pages; split the stack",
                    r.files.len(),
                    scan::MAX_BATCH_PAGES
                ),
            );
        }
        if !v.is_empty() {
            return Err(invalid(v));
        }
        // A file in the document store already is named by its digest; one
        // sent in the request, by the digest of its bytes.
        let mut digests: Vec<[u8; 32]> = Vec::with_capacity(r.files.len());
        let mut bad = Violations::new();
        for (i, f) in r.files.iter().enumerate() {
            if f.content.is_empty() && !f.sha256.is_empty() {
                match hex::decode(f.sha256.trim())
                    .ok()
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                {
                    Some(d) => digests.push(d),
                    None => bad.add(format!("files[{i}].sha256"), "is not a sha256 digest"),
                }
            } else {
                digests.push(Sha256::digest(&f.content).into());
            }
        }
        if !bad.is_empty() {
            return Err(invalid(bad));
        }
        // What this upload sent: a key used again for another upload is
        // refused, not answered with the first batch.
        let fingerprint = {
            let mut parts: Vec<&[u8]> = vec![
                r.station_id.trim().as_bytes(),
                r.reception_date.trim().as_bytes(),
            ];
            parts.extend(r.postmark_dates.iter().map(|p| p.trim().as_bytes()));
            for (f, digest) in r.files.iter().zip(&digests) {
                parts.push(f.media_type.trim().as_bytes());
                parts.push(digest);
            }
            guichet_dossier::idempotency::fingerprint(parts)
        };
        // The key: given by the station, or the content itself, so the same
        // upload sent twice makes one batch.
        let key = if r.idempotency_key.trim().is_empty() {
            let mut h = Sha256::new();
            h.update(r.station_id.as_bytes());
            h.update(r.reception_date.as_bytes());
            for digest in &digests {
                h.update(digest);
            }
            format!("content-{}", hex::encode(h.finalize()))
        } else {
            r.idempotency_key.trim().to_string()
        };
        // One file at a time: fetched (when the gateway stored it), split
        // into pages, each page stored as it comes.
        let mut stored = Vec::new();
        for (i, file) in r.files.into_iter().enumerate() {
            let content = if file.content.is_empty() && !file.sha256.is_empty() {
                self.documents
                    .get(file.sha256.trim())
                    .await
                    .map_err(documents_err)?
                    .ok_or_else(|| {
                        invalid(Violations::one(
                            format!("files[{i}].sha256"),
                            "is not in the document store",
                        ))
                    })?
                    .to_vec()
            } else {
                file.content
            };
            let room = scan::MAX_BATCH_PAGES.saturating_sub(stored.len());
            let images = scan::pages_of(i, file.media_type.trim(), content, room)
                .await
                .map_err(|e| match e {
                    ScanError::Unreadable { .. } | ScanError::MediaType { .. } => {
                        invalid(Violations::one(format!("files[{i}]"), e.to_string()))
                    }
                    ScanError::ToolMissing { .. } => {
                        ServiceError::new(ErrorKind::WrongState, e.to_string()).into()
                    }
                    ScanError::Io(e) => io_err("splitting the scan", e),
                })?;
            for png in images {
                let size = png.len() as u64;
                let sha = self.documents.put(png).await.map_err(documents_err)?;
                stored.push((sha, "image/png".to_string(), size));
            }
        }
        let batch = NewBatch {
            idempotency_key: key,
            fingerprint,
            station_id: r.station_id.trim().to_string(),
            reception_date: r.reception_date.trim().to_string(),
            postmark_dates: r
                .postmark_dates
                .iter()
                .map(|d| d.trim().to_string())
                .collect(),
            pages: stored,
        };
        let (batch_id, created) = self
            .store
            .create_batch(&batch, self.intake.clock.now())
            .await
            .map_err(err)?;
        self.wake.notify_one();
        let pages = self.store.pages_of_batch(&batch_id).await.map_err(err)?;
        Ok(Response::new(pb::UploadBatchResponse {
            batch_id,
            pages: pages
                .iter()
                .map(|p| pb::StoredPage {
                    seq: p.seq as u32,
                    sha256: p.sha256.clone(),
                })
                .collect(),
            created,
        }))
    }

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Result<Response<pb::Batch>, Status> {
        let id = request.into_inner().batch_id;
        let batch = self.store.batch(id.trim()).await.map_err(err)?;
        let pages = self.store.pages_of_batch(&batch.id).await.map_err(err)?;
        let envelopes = self
            .store
            .envelopes_of_batch(&batch.id)
            .await
            .map_err(err)?;
        let history = self.store.history_of_batch(&batch.id).await.map_err(err)?;
        let traces = pages
            .iter()
            .map(|p| {
                let envelope = p
                    .envelope_id
                    .as_ref()
                    .and_then(|id| envelopes.iter().find(|e| &e.id == id));
                pb::PageTrace {
                    seq: p.seq as u32,
                    sha256: p.sha256.clone(),
                    role: p.role.map_or_else(String::new, |r| r.as_str().to_string()),
                    envelope_id: p.envelope_id.clone().unwrap_or_default(),
                    code: p.code.clone().unwrap_or_default(),
                    outcome: outcome(p, envelope),
                }
            })
            .collect();
        let envelopes = envelopes
            .iter()
            .map(|e| {
                let own: Vec<PageRow> = pages
                    .iter()
                    .filter(|p| {
                        p.envelope_id.as_deref() == Some(e.id.as_str())
                            && *p.role != Some(PageRole::Separator)
                    })
                    .cloned()
                    .collect();
                envelope_to_pb(e, &own, &history, self.postmark_max_age_days)
            })
            .collect();
        Ok(Response::new(pb::Batch {
            id: batch.id,
            station_id: batch.station_id,
            reception_date: batch.reception_date,
            state: batch.state.as_str().to_string(),
            pages: traces,
            envelopes,
            received_at: Some(convert::timestamp_to_pb(batch.received_at)),
        }))
    }

    async fn list_keying(
        &self,
        request: Request<pb::ListKeyingRequest>,
    ) -> Result<Response<pb::ListKeyingResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n.min(500),
        };
        let rows = self.store.keying(limit).await.map_err(err)?;
        let mut envelopes = Vec::with_capacity(rows.len());
        for row in &rows {
            envelopes.push(self.envelope_pb(row).await?);
        }
        Ok(Response::new(pb::ListKeyingResponse { envelopes }))
    }

    async fn get_envelope(
        &self,
        request: Request<pb::GetEnvelopeRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let id = request.into_inner().envelope_id;
        let row = self.store.envelope(id.trim()).await.map_err(err)?;
        Ok(Response::new(self.envelope_pb(&row).await?))
    }

    async fn confirm_envelope(
        &self,
        request: Request<pb::ConfirmEnvelopeRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.operator_id.trim().is_empty() {
            v.add("operator_id", "is required: who keyed the envelope");
        }
        for k in r.fields.keys() {
            if form_field(k).is_none() {
                v.add(format!("fields.{k}"), "is not a field of the form");
            }
        }
        if !r.postmark_date.trim().is_empty() {
            date_field(&mut v, "postmark_date", &r.postmark_date);
        }
        if r.postmark_reason.chars().count() > MAX_REASON_CHARS {
            v.add(
                "postmark_reason",
                format!("is longer than {MAX_REASON_CHARS} characters"),
            );
        }
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let operator = r.operator_id.trim();
        let row = self
            .store
            .envelope(r.envelope_id.trim())
            .await
            .map_err(err)?;
        if row.state == EnvelopeState::Filed {
            // Confirming again (a retry) answers with the dossier already
            // made, and writes its receipt letter if the first
            // confirmation could not (a letter is kept once per key).
            self.receipt_letter_again(&row).await?;
            return Ok(Response::new(self.envelope_pb(&row).await?));
        }
        // The operator's word replaces what was read.
        let mut fields = row.fields.0.clone();
        for (k, value) in &r.fields {
            fields.retain(|f| &f.key != k);
            fields.push(StoredField {
                key: k.clone(),
                value: value.trim().to_string(),
                confidence: 1.0,
                source: "operator".into(),
            });
        }
        fields.sort_by(|a, b| a.key.cmp(&b.key));
        let postmark = if r.postmark_date.trim().is_empty() {
            row.postmark_date.clone()
        } else {
            Some(r.postmark_date.trim().to_string())
        };
        self.store
            .save_keying(&row.id, &fields, postmark.as_deref())
            .await
            .map_err(err)?;
        if !row.state.is_open() {
            let why = match row.state.after(EnvelopeAction::Confirm) {
                Err(why) => why,
                Ok(_) => "not in keying",
            };
            return Err(ServiceError::new(ErrorKind::WrongState, why).into());
        }

        // The two-operator rule on postmarks.
        let reception = parse_iso_date(&row.reception_date).ok_or_else(|| {
            Status::from(ServiceError::new(
                ErrorKind::WrongState,
                "this envelope's reception date is unreadable: route it",
            ))
        })?;
        let postmark_date = match postmark.as_deref() {
            None => None,
            Some(p) => Some(parse_iso_date(p).ok_or_else(|| {
                invalid(Violations::one(
                    "postmark_date",
                    "the station's postmark is not a date: key it as YYYY-MM-DD",
                ))
            })?),
        };
        let doubt = postmark_date
            .and_then(|p| postal::postmark_doubt(p, reception, self.postmark_max_age_days));
        let held =
            self.store
                .postmark_hold(&row)
                .await
                .map_err(err)?
                .and_then(|(p, operator_id)| {
                    parse_iso_date(&p).map(|postmark| PostmarkHold {
                        postmark,
                        operator_id,
                    })
                });
        let reason = r.postmark_reason.trim();
        let decision = postal::confirmation(doubt, postmark_date, held.as_ref(), operator, reason)
            .map_err(|refused| {
                let kind = match refused {
                    ConfirmationRefused::SameOperator => ErrorKind::WrongState,
                    ConfirmationRefused::ReasonRequired => ErrorKind::InvalidInput,
                };
                Status::from(ServiceError {
                    kind,
                    message: format!("{}: {}", refused.field(), refused.problem()),
                    violations: vec![FieldViolation {
                        field: refused.field().into(),
                        problem: refused.problem().into(),
                    }],
                })
            })?;
        let now = self.intake.clock.now();
        if let Confirmation::Hold(doubt) = decision {
            let mut why = format!(
                "postmark {} {doubt}, received {reception}: a second operator must confirm it",
                postmark.as_deref().unwrap_or_default()
            );
            if !reason.is_empty() {
                why = format!("{why}; {operator}: {reason}");
            }
            let held = self
                .store
                .hold_postmark(
                    &row.id,
                    &NewEnvelopeEvent {
                        kind: "postmark_held",
                        operator_id: operator,
                        postmark_date: postmark.as_deref(),
                        reason: &why,
                        reference: None,
                    },
                    now,
                )
                .await
                .map_err(err)?;
            return Ok(Response::new(self.envelope_pb(&held).await?));
        }

        let accepted = self
            .accept_envelope(&row, &fields, postmark_date, reception)
            .await?;
        let reference = accepted.receipt.reference.clone();
        let mut events = Vec::new();
        if decision == Confirmation::FileConfirmed {
            events.push(NewEnvelopeEvent {
                kind: "postmark_confirmed",
                operator_id: operator,
                postmark_date: postmark.as_deref(),
                reason,
                reference: None,
            });
        }
        events.push(NewEnvelopeEvent {
            kind: "filed",
            operator_id: operator,
            postmark_date: postmark.as_deref(),
            reason: "",
            reference: Some(&reference),
        });
        let closed = match self
            .store
            .close(
                &row.id,
                EnvelopeAction::Confirm,
                operator,
                Some(&reference),
                None,
                &events,
                now,
            )
            .await
        {
            Ok(closed) => closed,
            // A concurrent confirmation filed it first: same dossier.
            Err(StoreError::WrongState(_)) => self.store.envelope(&row.id).await.map_err(err)?,
            Err(e) => return Err(err(e)),
        };
        // The dossier stands either way. Without its letter, the operator is
        // told to confirm again, which writes it (the `Filed` case above):
        // a paper filer's receipt is their only proof of filing.
        self.letters
            .receipt(&closed, &accepted.receipt)
            .await
            .map_err(|e| receipt_letter_failed(&reference, e))?;
        Ok(Response::new(self.envelope_pb(&closed).await?))
    }

    async fn route_envelope(
        &self,
        request: Request<pb::RouteEnvelopeRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.operator_id.trim().is_empty() {
            v.add("operator_id", "is required: who routed the envelope");
        }
        if r.reason.trim().is_empty() {
            v.add("reason", "is required: why this envelope is not a filing");
        }
        if r.destination.trim().is_empty() {
            v.add("destination", "is required: where the envelope was sent");
        }
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let row = self
            .store
            .close(
                r.envelope_id.trim(),
                EnvelopeAction::Route,
                r.operator_id.trim(),
                None,
                Some((r.reason.trim(), r.destination.trim())),
                &[NewEnvelopeEvent {
                    kind: "routed",
                    operator_id: r.operator_id.trim(),
                    postmark_date: None,
                    reason: r.reason.trim(),
                    reference: None,
                }],
                self.intake.clock.now(),
            )
            .await
            .map_err(err)?;
        Ok(Response::new(self.envelope_pb(&row).await?))
    }

    async fn attach_envelope(
        &self,
        request: Request<pb::AttachEnvelopeRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.operator_id.trim().is_empty() {
            v.add("operator_id", "is required: who attached the envelope");
        }
        if guichet_dossier::Reference::parse(r.reference.trim()).is_err() {
            v.add("reference", "is not a dossier reference");
        }
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let reason = format!("documents for dossier {}", r.reference.trim());
        let row = self
            .store
            .close(
                r.envelope_id.trim(),
                EnvelopeAction::Attach,
                r.operator_id.trim(),
                Some(r.reference.trim()),
                None,
                &[NewEnvelopeEvent {
                    kind: "attached",
                    operator_id: r.operator_id.trim(),
                    postmark_date: None,
                    reason: &reason,
                    reference: Some(r.reference.trim()),
                }],
                self.intake.clock.now(),
            )
            .await
            .map_err(err)?;
        Ok(Response::new(self.envelope_pb(&row).await?))
    }

    async fn get_page(
        &self,
        request: Request<pb::GetPageRequest>,
    ) -> Result<Response<pb::PrintedDocument>, Status> {
        let sha = request.into_inner().sha256.trim().to_lowercase();
        if !guichet_dossier::filing::is_sha256(&sha) {
            return Err(invalid(Violations::one(
                "sha256",
                "is a page's sha256, 64 hexadecimal characters",
            )));
        }
        // Pages only: a letter is served by the letters route, as a PDF.
        if !self.store.is_page(&sha).await.map_err(err)? {
            return Err(ServiceError::not_found(format!("no page {sha}")).into());
        }
        let content = match self.documents.get(&sha).await {
            Ok(Some(content)) => content,
            Ok(None) => return Err(ServiceError::not_found(format!("no page {sha}")).into()),
            Err(e @ DocumentError::BadDigest(_)) => {
                return Err(invalid(Violations::one("sha256", e.to_string())));
            }
            Err(e) => return Err(documents_err(e)),
        };
        Ok(Response::new(pb::PrintedDocument {
            id: sha,
            media_type: "image/png".into(),
            content: content.into(),
        }))
    }

    async fn list_letters(
        &self,
        request: Request<pb::ListLettersRequest>,
    ) -> Result<Response<pb::ListLettersResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => n.min(1000),
        };
        let rows = self
            .store
            .letters(r.reference.trim(), limit)
            .await
            .map_err(err)?;
        Ok(Response::new(pb::ListLettersResponse {
            letters: rows.into_iter().map(letter_pb).collect(),
        }))
    }

    async fn mark_letter(
        &self,
        request: Request<pb::MarkLetterRequest>,
    ) -> Result<Response<pb::Letter>, Status> {
        let r = request.into_inner();
        for (field, value) in [("operator_id", &r.operator_id), ("letter_id", &r.letter_id)] {
            if value.trim().is_empty() {
                return Err(invalid(Violations::one(field, "is required")));
            }
        }
        let row = self
            .store
            .mark_letter(
                r.letter_id.trim(),
                r.posted,
                r.operator_id.trim(),
                self.intake.clock.now(),
            )
            .await
            .map_err(err)?;
        Ok(Response::new(letter_pb(row)))
    }

    async fn get_letter(
        &self,
        request: Request<pb::GetLetterRequest>,
    ) -> Result<Response<pb::PrintedDocument>, Status> {
        let id = request.into_inner().letter_id;
        let letter = self.store.letter(id.trim()).await.map_err(err)?;
        let content = self
            .documents
            .get(&letter.sha256)
            .await
            .map_err(documents_err)?
            .ok_or_else(|| {
                Status::from(ServiceError::not_found(format!("letter {id} has no PDF")))
            })?;
        Ok(pdf(letter.id, content.into()))
    }
}

fn letter_pb(l: crate::store::LetterRow) -> pb::Letter {
    pb::Letter {
        id: l.id,
        reference: l.reference,
        envelope_id: l.envelope_id,
        kind: l.kind,
        created_at: Some(convert::timestamp_to_pb(l.created_at)),
        emailed_to: l.emailed_to.unwrap_or_default(),
        sha256: l.sha256,
        printed_at: l.printed_at.map(convert::timestamp_to_pb),
        printed_by: l.printed_by.unwrap_or_default(),
        posted_at: l.posted_at.map(convert::timestamp_to_pb),
        posted_by: l.posted_by.unwrap_or_default(),
    }
}
